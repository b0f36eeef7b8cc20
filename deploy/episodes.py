"""What a backend returns after running episodes, and the host-side fidelity checks on it."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from conversion.artifact import Artifact
from conversion.envs import EnvSpec, make_env
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


def replay(spec: EnvSpec, seed: int, actions: np.ndarray, expected_return: float) -> tuple[np.ndarray, np.ndarray]:
    """(observations, rewards) of an episode regenerated from its seed and env actions (indices,
    or vectors for a continuous action space), checked by its return."""
    env = make_env(spec)
    obs, _ = env.reset(seed=seed)
    out, rewards = [], []
    for a in actions:
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


def decision_agreement(art: Artifact, log: EpisodeLog) -> tuple[float, list[float]]:
    """Fraction of decisions where argmax Q_source equals the network's argmax, on the
    observations the network itself visited (the paper's "conversion rate")."""
    spec = EnvSpec.from_dict(art.manifest["env"])
    amap = art.manifest["action_map"]
    q = source_network(art)
    per_episode, hits = [], 0
    for seed, acts, greedy, ret in zip(log.seeds, log.actions, log.greedy, log.returns):
        obs = replay_observations(spec, seed, [amap[a] for a in acts], ret)
        agree = q.q_values(obs).argmax(1) == greedy
        per_episode.append(float(agree.mean()))
        hits += int(agree.sum())
    return hits / max(log.decisions, 1), per_episode


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
