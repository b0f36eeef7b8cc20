"""The interface every network kind's deployment implements (see docs/architecture.md)."""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from lavaloop.artifact import Artifact
from lavaloop.deploy.episodes import EpisodeLog
from lavaloop.envs import EnvSpec, episode_limit, make_env
from lavaloop.errors import LavaloopError
from lavaloop.options import RunSettings
from lavaloop.rollout import evaluate, random_policy

_RANDOM_RETURNS: dict[tuple, np.ndarray] = {}


def random_returns(spec: EnvSpec, seeds: list[int]) -> np.ndarray:
    """Returns of a uniformly random policy on `seeds`, kept per environment and seeds for
    the process's life."""
    key = (repr(spec), tuple(seeds))
    if key not in _RANDOM_RETURNS:
        env = make_env(spec)
        space = env.action_space
        env.close()
        _RANDOM_RETURNS[key] = evaluate(functools.partial(make_env, spec), list(seeds), random_policy(space),
                                        max_steps=episode_limit(spec))
    return _RANDOM_RETURNS[key].copy()


@dataclass
class Fidelity:
    """The deployed network's decisions against the source's, on the observations it visited.

    agreement: fraction of decisions where the source's greedy action is the network's.
    per_episode: the same per episode. details: kind-specific measures (nested in RunResult).
    """

    agreement: float
    per_episode: list[float]
    details: dict = field(default_factory=dict)


class Deployment(ABC):
    """How one network kind runs: its Lava graph, its emulator, its fidelity replay.

    Parameters
    ----------
    art: the artifact. settings: the run's settings; kind-specific settings the kind does
        not honour (`accepts`) are refused with one line.
    """

    accepts: ClassVar[tuple[str, ...]] = ()   # RunSettings.overrides() this kind honours

    def __init__(self, art: Artifact, settings: RunSettings):
        refused = [name for name in settings.overrides() if name not in self.accepts]
        if refused:
            flags = ", ".join("--" + name.replace("_", "-") for name in refused)
            raise LavaloopError(f"a {art.kind!r} artifact does not take {flags} "
                                f"(it takes: {', '.join(self.accepts) or 'no kind-specific settings'})")
        self.art, self.settings = art, settings
        self.epsilon = float(art.manifest["epsilon"] if settings.epsilon is None else settings.epsilon)

    @property
    def seeds(self) -> list[int]:
        return self.settings.seeds

    @abstractmethod
    def check(self) -> None:
        """The environment exists and fits the network; raise a LavaloopError saying why not."""

    @abstractmethod
    def run_lava(self, progress: bool) -> EpisodeLog:
        """The episodes inside one Lava runtime (lavaloop.runtime.LavaRuntime)."""

    @abstractmethod
    def run_emulator(self, progress: bool) -> EpisodeLog:
        """The episodes on the vectorized emulator, bit-exact with `run_lava`."""

    @abstractmethod
    def fidelity(self, log: EpisodeLog) -> Fidelity:
        """Replay the run's episodes through the float source and compare decisions."""

    @abstractmethod
    def source_returns(self) -> np.ndarray:
        """Returns of the float source on the same seeds and epsilon draws."""

    def random_returns(self) -> np.ndarray:
        """Returns of a uniformly random policy on the run's seeds (the normalized score's baseline)."""
        return random_returns(self.art.env_spec, self.seeds)

    @abstractmethod
    def ops(self, log: EpisodeLog) -> dict[str, int]:
        """Operation totals of the run for the energy estimate: {"mac", "ac", "neuron"}."""

    def config(self) -> dict:
        """Kind-specific run configuration (nested in RunResult.details)."""
        return {}

    @staticmethod
    def summary_lines(result) -> list[str]:
        """Kind-specific lines for RunResult.summary()."""
        return []
