"""Deployment of the rate-coded IF kind (a converted DQN; Tan et al.).

Lava: EnvIO -> IFStack(s) -> EnvIO, one decision window of T + depth steps per env step
(deploy.build). Emulator: deploy.emulator, bit-exact. Fidelity: the paper's conversion rate
(argmax of the float DQN on the visited observations); for ALE games also the fraction of
decisions whose two actions have the same outcome in the emulator.
"""
from __future__ import annotations

import functools

import numpy as np

from lavaloop.conversion.artifact_if import IFArtifact
from lavaloop.conversion.convert import check_env_fits
from lavaloop.conversion.models.qnet import FeedForwardQ
from lavaloop.conversion.network import SourceNetwork
from lavaloop.deploy.emulator import run_emulator
from lavaloop.deploy.episodes import EpisodeLog, recorded_actions, replay, run_envio_episodes
from lavaloop.deploy.kinds.base import Deployment, Fidelity
from lavaloop.envs import EnvSpec, episode_limit, make_env, same_outcome
from lavaloop.errors import ArtifactError, LavaloopError
from lavaloop.options import RunSettings
from lavaloop.rollout import epsilon_greedy, evaluate
from lavaloop.runtime import LavaRuntime


class IFDeployment(Deployment):
    accepts = ("timesteps", "readout", "per_layer_processes", "env", "sticky_actions")

    def __init__(self, art: IFArtifact, settings: RunSettings):
        super().__init__(art, settings)
        if settings.per_layer_processes and settings.backend != "lava":
            raise LavaloopError("--per-layer-processes applies to the lava backend only")
        if settings.env or settings.sticky_actions is not None:
            self.art = art = art.with_env(settings.env, settings.sticky_actions)
        self.timesteps = settings.timesteps or art.timesteps
        self.readout = settings.readout or art.manifest["readout"]

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

    def run_lava(self, progress: bool) -> EpisodeLog:
        from lavaloop.deploy.build import build_graph

        g = build_graph(self.art, self.seeds, self.timesteps, self.readout, self.epsilon,
                        episode_limit(self.art.env_spec), fuse=not self.settings.per_layer_processes)
        with LavaRuntime(g.envio) as rt:
            steps, wall = run_envio_episodes(rt, g.envio, len(self.seeds), g.window * 25, progress)
            lengths = g.envio.lengths.get().astype(np.int64)
            spikes, synops = idle_corrected_counters(rt, g, idle_windows=steps // g.window - int(lengths.sum()))
            actions, greedy = recorded_actions(g.envio, lengths)
            return EpisodeLog(seeds=self.seeds, returns=g.envio.returns.get().astype(float), lengths=lengths,
                              actions=actions, greedy=greedy, spikes=spikes, synops=synops, steps=steps,
                              wall_s=wall, extra={"compile_s": rt.compile_s})

    def run_emulator(self, progress: bool) -> EpisodeLog:
        return run_emulator(self.art, self.seeds, self.timesteps, self.readout, self.epsilon, progress)

    def fidelity(self, log: EpisodeLog) -> Fidelity:
        """The paper's conversion rate: argmax Q_source equals the network's argmax. For ALE
        games also the fraction where the two actions have the same outcome in the emulator,
        which counts a choice between equivalent actions (Pong's NOOP and FIRE) as agreement."""
        spec, amap = self.art.env_spec, self.art.manifest["action_map"]
        q = source_network(self.art)
        per_episode, hits, same = [], 0, 0
        for seed, acts, greedy, ret in zip(log.seeds, log.actions, log.greedy, log.returns):
            env_actions = [amap[a] for a in acts]
            source = q.q_values(replay(spec, seed, env_actions, ret)[0]).argmax(1)
            agree = source == greedy
            per_episode.append(float(agree.mean()) if len(agree) else 1.0)
            hits += int(agree.sum())
            if spec.atari is not None:
                differ = {t: (amap[source[t]], amap[greedy[t]]) for t in np.flatnonzero(~agree)}
                same += int(agree.sum()) + equivalent_choices(spec, seed, env_actions, differ, ret)
        n = max(log.decisions, 1)
        return Fidelity(hits / n, per_episode, {"outcome_agreement": same / n if spec.atari is not None else None})

    def source_returns(self) -> np.ndarray:
        return source_returns(self.art, self.seeds, self.epsilon)

    def ops(self, log: EpisodeLog) -> dict[str, int]:
        """The input layer's synapses are driven by graded payloads (MAC), the others by spikes
        (AC); every neuron updates on each of the T steps of a decision."""
        neurons = sum(q.out_size for q in self.art.layers)
        return {"mac": int(log.synops[0]), "ac": int(sum(log.synops[1:])),
                "neuron": neurons * self.timesteps * log.decisions}

    def config(self) -> dict:
        return {"timesteps": self.timesteps, "readout": self.readout,
                "per_layer_processes": self.settings.per_layer_processes,
                "normalization_percentile": self.art.manifest["normalization"]["percentile"]}

    @staticmethod
    def summary_lines(result) -> list[str]:
        d = result.details
        same = d["outcome_agreement"]
        return [f"coding: T={d['timesteps']}, readout={d['readout']}; spikes per layer {d['spikes_per_layer']}"] + (
            [] if same is None else [f"same outcome in the emulator (ALE): {same:.4f} of decisions"])


def idle_corrected_counters(rt: LavaRuntime, g, idle_windows: int) -> tuple[list[int], list[int]]:
    """Spike and synop totals of the decision windows only.

    The last chunk runs past the last decision; those idle windows (zero input, fresh
    state) are all alike, so one more window measures what each of them added.
    """
    def read():
        return (np.concatenate([s.spikes.get() for s in g.stacks]).astype(np.int64),
                np.concatenate([s.synops.get() for s in g.stacks]).astype(np.int64))

    spikes, synops = read()
    rt.run(g.window)
    spikes2, synops2 = read()
    return ((spikes - idle_windows * (spikes2 - spikes)).tolist(),
            (synops - idle_windows * (synops2 - synops)).tolist())


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


def source_network(art: IFArtifact) -> FeedForwardQ:
    """The float source network stored in the artifact."""
    return FeedForwardQ.from_layers(art.source)


_SOURCE_RETURNS: dict[tuple, np.ndarray] = {}


def source_returns(art: IFArtifact, seeds: list[int], epsilon: float) -> np.ndarray:
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
