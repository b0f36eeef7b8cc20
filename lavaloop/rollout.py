"""The one episode loop (reset, act, step, sum rewards) and the one epsilon-greedy rule.

Trainers' evaluations, calibration, the source and random baselines of a run and the
fidelity replay all run episodes through `run_episode`; every discrete decision, on the
host, in the emulator and inside Lava, goes through `epsilon_greedy`.
"""
from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np


def epsilon_greedy(rng: np.random.Generator, values: np.ndarray, epsilon: float) -> tuple[int, int]:
    """(greedy action, taken action): argmax of `values` (first on ties), random with prob. epsilon.

    Exactly one uniform draw per decision (plus one integer when exploring), so the random
    stream is the same for any policy driven by the same seed.

    Parameters
    ----------
    rng: the episode's generator. values: one value per action. epsilon: exploration probability.
    """
    greedy = int(np.argmax(values))
    if rng.random() < epsilon:
        return greedy, int(rng.integers(len(values)))
    return greedy, greedy


TRAIN_SEED_BASE = 1_000_000


def training_seed(run_seed: int, episode: int) -> int:
    """The env seed of episode `episode` of training run `run_seed`: 10**6 (run_seed + 1) + episode,
    clear of the seeds runs are tested on (0, 1, ...) and trainers evaluate on (10,000+)."""
    return TRAIN_SEED_BASE * (run_seed + 1) + episode


def run_episode(env: gym.Env, seed: int | None, act: Callable, observe: Callable | None = None,
                max_steps: int | None = None) -> tuple[float, int]:
    """Play one episode; returns (return, length).

    Parameters
    ----------
    env: the environment; it is reset with `seed` (None: continue its random stream).
    act: act(obs) -> the env action for this observation.
    observe: optional observe(obs, action, reward, terminated, truncated), called after each
        step with the observation the action was chosen on.
    max_steps: end the episode after this many steps (None: when the env ends it).
    """
    obs, _ = env.reset(seed=seed)
    ret, t, done = 0.0, 0, False
    while not done and (max_steps is None or t < max_steps):
        a = act(obs)
        nxt, r, term, trunc, _ = env.step(a)
        if observe is not None:
            observe(obs, a, float(r), term, trunc)
        obs, ret, t, done = nxt, ret + float(r), t + 1, term or trunc
    return ret, t


def evaluate(make_env: Callable[[], gym.Env], seeds: list[int], policy: Callable[[int], Callable],
             max_steps: int | None = None) -> np.ndarray:
    """Returns of one episode per seed.

    Parameters
    ----------
    make_env: builds the environment (once, reused for every episode).
    seeds: episode seeds (env reset; `policy` receives them too).
    policy: policy(seed) -> act, or (act, observe), for one episode (fresh state and random
        stream per episode); see `run_episode`.
    max_steps: optional per-episode step cap.
    """
    env = make_env()
    returns = []
    try:
        for s in seeds:
            agent = policy(s)
            act, observe = agent if isinstance(agent, tuple) else (agent, None)
            returns.append(run_episode(env, s, act, observe, max_steps)[0])
    finally:
        env.close()
    return np.asarray(returns)


def random_policy(action_space: gym.Space) -> Callable[[int], Callable]:
    """A uniformly random policy for `evaluate`, seeded per episode: the baseline of normalized scores."""
    def policy(seed: int) -> Callable:
        space = action_space
        space.seed(seed)
        return lambda obs: space.sample()
    return policy
