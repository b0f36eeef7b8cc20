"""`run`: an artifact's closed-loop episodes on a backend, measured the same way for every kind."""
from __future__ import annotations

import functools

import numpy as np

from lavaloop.artifact import Artifact
from lavaloop.deploy.results import RunResult, build_result
from lavaloop.envs import EnvSpec, episode_limit, make_env
from lavaloop.kinds import deployment_class
from lavaloop.options import RunSettings
from lavaloop.rollout import evaluate, random_policy

_RANDOM_RETURNS: dict[tuple, np.ndarray] = {}


def random_returns(spec: EnvSpec, seeds: list[int]) -> np.ndarray:
    """Returns of a uniformly random policy on `seeds` (the normalized score's baseline),
    kept per environment and seeds for the process's life."""
    key = (repr(spec), tuple(seeds))
    if key not in _RANDOM_RETURNS:
        env = make_env(spec)
        space = env.action_space
        env.close()
        _RANDOM_RETURNS[key] = evaluate(functools.partial(make_env, spec), list(seeds), random_policy(space),
                                        max_steps=episode_limit(spec))
    return _RANDOM_RETURNS[key].copy()


def run(art: Artifact, settings: RunSettings | None = None, progress: bool = True,
        artifact_path: str | None = None) -> RunResult:
    """Play the artifact's episodes on Lava or the emulator and measure them.

    Parameters
    ----------
    art: an artifact of any registered kind.
    settings: how to run (default RunSettings()); kind-specific settings the kind does not
        take are refused.
    progress: show a progress bar.
    artifact_path: recorded in the result.

    Returns a RunResult: returns beside the float source's and a random policy's on the same
    seeds, decision agreement, spikes, synaptic operations, energy and timing.
    """
    settings = settings or RunSettings()
    dep = deployment_class(art.kind)(art, settings)
    dep.check()
    log = dep.run_lava(progress) if settings.backend == "lava" else dep.run_emulator(progress)
    fid = dep.fidelity(log)
    return build_result(dep, log, fid, dep.source_returns(), random_returns(dep.art.env_spec, dep.seeds),
                        artifact_path)
