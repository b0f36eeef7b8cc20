"""A DQN mapped onto a mixed-signal chip, off Lava (the bit-exact emulator) and on Lava (its process graph).

Every decision is a window of T steps from rest: the generators' phases restart at half a
spike and every neuron at zero. Layer j at its k-th step takes the spikes layer j - 1 sent
at its k-th step, so the emulator runs the layers one after the other over the whole
window, with the very processes.dynamics functions of the Lava model: bit-exact with it.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from threadpoolctl import threadpool_limits

from lavaloop.conversion.artifact_ms import MixedSignalArtifact
from lavaloop.conversion.mixed_signal import ONE
from lavaloop.conversion.readout_fit import calibrated_readout, integer_readout, least_squares_readout
from lavaloop.deploy.episodes import EpisodeLog, play_feedforward
from lavaloop.envs import EnvSpec, make_env
from lavaloop.processes.dynamics import (
                                          encode_input,
                                          fanout,
                                          generator_increments,
                                          mapped_layer_step,
                                          regular_spikes,
                                          sparse_conn,
)


class MixedSignalNetwork:
    """One chip instance's network on a batch of encoded observations.

    Parameters
    ----------
    art: the artifact. instance: `art.instance(seed, sigma)`, the chip's parameters.
    """

    def __init__(self, art: MixedSignalArtifact, instance: list[dict]):
        self.params = [{**p, "conn": sparse_conn(p["conn"])} for p in instance]   # event-driven drive
        self.timesteps = art.timesteps
        self.gain = art.mapped.input_gain
        self.w_ro, self.b_ro = art.mapped.readout_weight, art.mapped.readout_bias
        self.fanout = [fanout(p["conn"]) for p in self.params]
        self.spikes = np.zeros(len(instance) + 1, np.int64)    # generators, then every chip layer
        self.synops = np.zeros(len(instance), np.int64)          # synaptic events into every chip layer

    def decide(self, payload: np.ndarray) -> np.ndarray:
        """Readout values (B, |A|) for encoded observations (B, n_obs)."""
        return self.counts(payload) @ self.w_ro.T + self.b_ro

    def counts(self, payload: np.ndarray) -> np.ndarray:
        """The last chip layer's spike counts (B, n) in the decision window of encoded observations (B, n_obs)."""
        return self.layer_counts(payload)[-1]

    def layer_counts(self, payload: np.ndarray) -> list[np.ndarray]:
        """Every chip layer's spike counts (B, n_j) in the decision window of encoded observations (B, n_obs)."""
        inc = generator_increments(payload, self.gain, ONE)
        phase = np.full(inc.shape, ONE // 2, np.int64)
        trains = np.empty((self.timesteps, *inc.shape[:-1], inc.shape[-1] - 1), np.int64)
        for k in range(self.timesteps):
            phase, s = regular_spikes(phase, inc, ONE)
            trains[k] = s[..., :-1]            # the bias generator is every layer's last input
        self.spikes[0] += int(trains.sum())
        counts = []
        for j, (p, fan) in enumerate(zip(self.params, self.fanout)):
            self.synops[j] += int(trains.sum(axis=(0, 1)) @ fan[:-1]) + self.timesteps * len(payload) * int(fan[-1])
            n = p["conn"].shape[1]
            state = {"i_syn": np.zeros((len(payload), n)), "v": np.zeros((len(payload), n)),
                     "refr": np.zeros((len(payload), n), np.int64)}
            out = np.empty((self.timesteps, len(payload), n), np.int64)
            for k in range(self.timesteps):
                out[k] = mapped_layer_step(state, trains[k], p)
            self.spikes[j + 1] += int(out.sum())
            counts.append(out.sum(axis=0))
            trains = out
        return counts


CALIBRATION_OBSERVATIONS = 2000   # decision windows a chip instance's readout calibration records


def calibrate_instance(art: MixedSignalArtifact, instance: list[dict], fit: str = "fixed", chunk: int = 500
                       ) -> MixedSignalArtifact:
    """The artifact with its host readout fitted to one chip instance, as a host would calibrate
    each chip once before deploying on it: the ridge fit of the source's advantages on this
    chip's spike counts for the first CALIBRATION_OBSERVATIONS of the artifact's calibration
    observations (regenerated from the source and the recorded calibration settings), its
    strength fixed (fit "fixed": 1e-3 per window on raw counts, nearly unpenalized,
    `least_squares_readout`) or chosen by cross-validated decision agreement (fit "cv":
    `calibrated_readout`). The mapping report's "instance_readout" records the fit."""
    from lavaloop.conversion.mismatch_training import advantages
    from lavaloop.conversion.normalize import collect_observations
    from lavaloop.deploy.kinds.dqn import source_network

    n = art.manifest["normalization"]
    source = source_network(art)
    obs = collect_observations(source, art.env_spec, min(n["calib_steps"], CALIBRATION_OBSERVATIONS),
                               n["calib_seed"], n["calib_epsilon"])
    net = MixedSignalNetwork(art, instance)
    payload = encode_input(obs.reshape(len(obs), -1), 1 << int(art.manifest["input_scale_bits"]),
                           art.manifest["input_bits"])
    with threadpool_limits(limits=1, user_api="blas"):
        counts = np.concatenate([net.counts(payload[i:i + chunk]) for i in range(0, len(obs), chunk)])
    target = advantages(source, obs)[0]
    if fit == "cv":
        weight, bias, info = calibrated_readout(counts, target)
    else:
        (weight, bias), info = least_squares_readout(counts, target), {}
    w, b, _ = integer_readout(weight, bias)
    report = {**art.mapped.report, "instance_readout": {"fit": fit, **info, "windows": len(obs)}}
    return replace(art, mapped=replace(art.mapped, readout_weight=w, readout_bias=b, report=report))


def run_emulator(art: MixedSignalArtifact, instance: list[dict], seeds: list[int], epsilon: float,
                 progress: bool = True) -> EpisodeLog:
    """Run one episode per seed on one chip instance, all episodes batched together."""
    net = MixedSignalNetwork(art, instance)
    played = play_feedforward(art, seeds, lambda active, x: net.decide(x), art.manifest["input_bits"], epsilon,
                              progress)
    return EpisodeLog.batched(played, seeds, net.spikes.tolist(), net.synops.tolist(), art.window)


def build_graph(art: MixedSignalArtifact, instance: list[dict], seeds: Sequence[int], epsilon: float,
                max_steps: int):
    """(EnvIO, MixedSignalStack) for running `len(seeds)` episodes of `art` on one chip instance:
    the payload is sent for T steps; the readout arrives after the chip layers' latency."""
    from lavaloop.processes.envio.process import EnvIO
    from lavaloop.processes.mixed_signal.process import MixedSignalStack

    spec = EnvSpec.from_dict(art.manifest["env"])
    timesteps = art.timesteps
    envio = EnvIO(env_fn=functools.partial(make_env, spec), obs_size=len(art.mapped.input_gain),
                  n_actions=art.manifest["n_actions"], action_map=art.manifest["action_map"],
                  input_scale_bits=art.manifest["input_scale_bits"], input_bits=art.manifest["input_bits"],
                  timesteps=timesteps, latency=art.window - timesteps, seeds=seeds, epsilon=epsilon,
                  max_steps=max_steps)
    stack = MixedSignalStack(layers=instance, input_gain=art.mapped.input_gain, one=ONE,
                             readout_weight=art.mapped.readout_weight, readout_bias=art.mapped.readout_bias,
                             timesteps=timesteps, window=art.window)
    envio.obs_out.connect(stack.s_in)
    stack.s_out.connect(envio.q_in)
    return envio, stack
