"""lavaloop: trained RL policies as spiking networks on Intel's Lava, in closed loop.

    import lavaloop
    art = lavaloop.convert("checkpoints/cartpole_dqn.pt", env="CartPole-v1")
    art.save("cartpole.h5")
    result = lavaloop.run(art, episodes=10, backend="lava")
    print(result.summary())

Public API: `convert`, `load_artifact`, `run`, `adapt`, `dream`, `sweep`; the option types `ConvertOptions`,
`GRSNConvertOptions`, `RunSettings`, `AdaptConfig`, `DreamConfig`; the records `Artifact` and `RunResult`;
the errors (`LavaloopError` and its subclasses). Heavy modules (torch, Lava) load on first use.
"""
from importlib.metadata import PackageNotFoundError, version

from lavaloop.api import adapt, convert, dream, load_artifact, run, sweep
from lavaloop.errors import ArtifactError, CheckpointError, LavaloopError, ProfileError, ShapeMismatchError
from lavaloop.options import ConvertOptions, GRSNConvertOptions, RunSettings

try:
    __version__ = version("lavaloop")
except PackageNotFoundError:   # running from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {"Artifact": "lavaloop.artifact", "RunResult": "lavaloop.deploy.results",
         "DreamConfig": "lavaloop.deploy.dreaming.agent",
         "AdaptConfig": "lavaloop.deploy.adapt.rules", "LavaRuntimeError": "lavaloop.runtime",
         "UnknownEnvError": "lavaloop.envs"}

__all__ = ["convert", "load_artifact", "run", "adapt", "dream", "sweep",
           "ConvertOptions", "GRSNConvertOptions", "RunSettings",
           "LavaloopError", "ArtifactError", "CheckpointError", "ProfileError", "ShapeMismatchError",
           "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lavaloop' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
