"""What the DQN kinds share: the environment override, and fidelity and source returns
measured against the float source network stored in the artifact."""
from __future__ import annotations

import functools

import numpy as np

from lavaloop.conversion.artifact_dqn import ConvertedDQN
from lavaloop.conversion.convert import check_env_fits
from lavaloop.conversion.models.qnet import FeedForwardQ
from lavaloop.conversion.network import SourceNetwork
from lavaloop.deploy.episodes import EpisodeLog, replay
from lavaloop.deploy.kinds.base import Deployment, Fidelity
from lavaloop.envs import EnvSpec, episode_limit, make_env, same_outcome
from lavaloop.errors import ArtifactError
from lavaloop.options import RunSettings
from lavaloop.rollout import epsilon_greedy, evaluate


class DQNDeployment(Deployment):
    """Base of the rate-coded and sigma-delta deployments: the `env`, `sticky_actions` and
    `env_params` settings move the artifact to another version of its environment."""

    def __init__(self, art: ConvertedDQN, settings: RunSettings):
        super().__init__(art, settings)
        if settings.env or settings.sticky_actions is not None or settings.env_params:
            self.art = art.with_env(settings.env, settings.sticky_actions, settings.env_params)

    def check(self) -> None:
        spec = self.art.env_spec
        env = make_env(spec)
        try:
            shape, _ = check_env_fits(SourceNetwork(self.art.source, "artifact", ""), env, spec.id)
        finally:
            env.close()
        if list(shape) != list(self.art.manifest["obs_shape"]):
            raise ArtifactError(f"artifact observation shape {tuple(self.art.manifest['obs_shape'])} does not "
                                f"match {spec.id}'s {tuple(shape)}")


    def fidelity(self, log: EpisodeLog) -> Fidelity:
        """The paper's conversion rate: argmax Q_source equals the network's argmax. For ALE
        games without sticky actions also the fraction where the two actions have the same
        outcome in the emulator, which counts a choice between equivalent actions (Pong's NOOP
        and FIRE) as agreement. With sticky actions an outcome is random, and probing it would
        change the episode (ALE's restored state does not carry the last action that sticks),
        so there is none (None)."""
        spec, amap = self.art.env_spec, self.art.manifest["action_map"]
        outcomes = spec.atari is not None and spec.atari.repeat_action_probability == 0
        q = source_network(self.art)
        per_episode, hits, same = [], 0, 0
        for seed, acts, greedy, ret in zip(log.seeds, log.actions, log.greedy, log.returns):
            env_actions = [amap[a] for a in acts]
            source = q.q_values(replay(spec, seed, env_actions, ret)[0]).argmax(1)
            agree = source == greedy
            per_episode.append(float(agree.mean()) if len(agree) else 1.0)
            hits += int(agree.sum())
            if outcomes:
                differ = {t: (amap[source[t]], amap[greedy[t]]) for t in np.flatnonzero(~agree)}
                same += int(agree.sum()) + equivalent_choices(spec, seed, env_actions, differ, ret)
        n = max(log.decisions, 1)
        return Fidelity(hits / n, per_episode, {"outcome_agreement": same / n if outcomes else None})

    def source_returns(self) -> np.ndarray:
        return source_returns(self.art, self.seeds, self.epsilon)


def equivalent_choices(spec: EnvSpec, seed: int, actions: list[int], pairs: dict[int, tuple[int, int]],
                       expected_return: float) -> int:
    """How many of the decisions {t: (a, b)} of a replayed ALE episode chose between actions
    with the same outcome (lavaloop.envs.same_outcome)."""
    same = []

    def probe(env, t):
        if t in pairs:
            same.append(same_outcome(env, *pairs[t], spec.atari.frame_skip))

    replay(spec, seed, actions, expected_return, probe)
    return sum(same)


def source_network(art: ConvertedDQN) -> FeedForwardQ:
    """The float source network stored in the artifact."""
    return FeedForwardQ.from_layers(art.source)


_SOURCE_RETURNS: dict[tuple, np.ndarray] = {}


def source_returns(art: ConvertedDQN, seeds: list[int], epsilon: float) -> np.ndarray:
    """Returns of the float source network on the same seeds and epsilon draws.

    Kept per (source checkpoint, environment, seeds, epsilon) for the process's life, so a
    sweep over T or percentiles plays the source once.
    """
    key = (art.manifest["source"]["sha256"], repr(art.env_spec), tuple(seeds), epsilon)
    if key not in _SOURCE_RETURNS:
        q, amap = source_network(art), art.manifest["action_map"]

        def policy(seed):
            rng = np.random.default_rng(seed)
            return lambda obs: amap[epsilon_greedy(rng, q.q_values(np.ravel(obs)[None])[0], epsilon)[1]]

        _SOURCE_RETURNS[key] = evaluate(functools.partial(make_env, art.env_spec), list(seeds), policy,
                                        max_steps=episode_limit(art.env_spec))
    return _SOURCE_RETURNS[key].copy()
