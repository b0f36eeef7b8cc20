"""What a backend returns after running episodes, and the host-side fidelity checks on it."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from conversion.artifact import Artifact
from conversion.envs import EnvSpec, make_env, same_outcome
from conversion.errors import LavaloopError
from conversion.models.qnet import FeedForwardQ
from processes.dynamics import epsilon_greedy


@dataclass
class EpisodeLog:
    """Per-episode outcome of a backend run plus activity counters (totals over the run)."""

    seeds: list[int]
    returns: np.ndarray
    lengths: np.ndarray
    actions: list[np.ndarray]         # taken actions per episode
    greedy: list[np.ndarray]          # the network's argmax per decision
    spikes: list[int]                 # per layer
    synops: list[int]                 # per layer
    steps: int                        # backend time steps executed
    wall_s: float
    extra: dict = field(default_factory=dict)

    @property
    def decisions(self) -> int:
        return int(self.lengths.sum())


def replay(spec: EnvSpec, seed: int, actions: np.ndarray, expected_return: float,
           before_step=None) -> tuple[np.ndarray, np.ndarray]:
    """(observations, rewards) of an episode regenerated from its seed and env actions (indices,
    or vectors for a continuous action space), checked by its return; `before_step(env, t)`
    may probe the env before step t, provided it leaves it as it was."""
    env = make_env(spec)
    obs, _ = env.reset(seed=seed)
    out, rewards = [], []
    for t, a in enumerate(actions):
        if before_step is not None:
            before_step(env, t)
        out.append(np.asarray(obs, np.float32).ravel())
        obs, r, _, _, _ = env.step(a if np.ndim(a) else int(a))
        rewards.append(float(r))
    env.close()
    if not np.isclose(sum(rewards), expected_return):
        raise LavaloopError(f"replay of seed {seed} gave return {sum(rewards)}, the run {expected_return}: "
                            "the environment is not deterministic under its seed")
    return np.asarray(out), np.asarray(rewards)


def replay_observations(spec: EnvSpec, seed: int, actions: np.ndarray, expected_return: float) -> np.ndarray:
    """Observations of an episode regenerated from its seed and actions (checked by its return)."""
    return replay(spec, seed, actions, expected_return)[0]


@dataclass
class Agreement:
    """The converted network's decisions against the source network's, on the observations
    the converted network visited."""

    rate: float                      # the paper's conversion rate: same argmax
    per_episode: list[float]
    outcome_rate: float | None       # ALE: argmax or an action with the same outcome (same_outcome)


def decision_agreement(art: Artifact, log: EpisodeLog) -> Agreement:
    """Fraction of decisions where argmax Q_source equals the network's argmax (the paper's
    "conversion rate"); for ALE games also the fraction where the two actions have the same
    outcome in the emulator, which counts a choice between equivalent actions (Pong's NOOP
    and FIRE) as agreement."""
    spec = EnvSpec.from_dict(art.manifest["env"])
    amap = art.manifest["action_map"]
    q = source_network(art)
    per_episode, hits, same = [], 0, 0
    for seed, acts, greedy, ret in zip(log.seeds, log.actions, log.greedy, log.returns):
        env_actions = [amap[a] for a in acts]
        obs = replay_observations(spec, seed, env_actions, ret)
        source = q.q_values(obs).argmax(1)
        agree = source == greedy
        per_episode.append(float(agree.mean()))
        hits += int(agree.sum())
        if spec.atari is not None:
            differ = {t: (amap[source[t]], amap[greedy[t]]) for t in np.flatnonzero(~agree)}
            same += int(agree.sum()) + equivalent_choices(spec, seed, env_actions, differ, ret)
    n = max(log.decisions, 1)
    return Agreement(hits / n, per_episode, same / n if spec.atari is not None else None)


def equivalent_choices(spec: EnvSpec, seed: int, actions: list[int], pairs: dict[int, tuple[int, int]],
                       expected_return: float) -> int:
    """How many of the decisions {t: (a, b)} of a replayed ALE episode chose between actions
    with the same outcome (conversion.envs.same_outcome)."""
    same = []

    def probe(env, t):
        if t in pairs:
            same.append(same_outcome(env, *pairs[t], spec.atari.frame_skip))

    replay(spec, seed, actions, expected_return, probe)
    return sum(same)


def source_network(art: Artifact) -> FeedForwardQ:
    """The float source network stored in the artifact."""
    return FeedForwardQ.from_layers(art.source)


def source_returns(art: Artifact, seeds: list[int], epsilon: float) -> np.ndarray:
    """Returns of the float source network on the same seeds and epsilon draws."""
    spec = EnvSpec.from_dict(art.manifest["env"])
    amap = art.manifest["action_map"]
    q = source_network(art)
    env = make_env(spec)
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        obs, _ = env.reset(seed=seed)
        done, ret = False, 0.0
        while not done:
            _, a = epsilon_greedy(rng, q.q_values(np.ravel(obs)[None])[0], epsilon)
            obs, r, term, trunc, _ = env.step(amap[a])
            ret += float(r)
            done = term or trunc
        out.append(ret)
    env.close()
    return np.asarray(out)
