"""Deployment of the rate-coded IF kind (a converted DQN; Tan et al.).

Lava: EnvIO -> IFStack(s) -> EnvIO, one decision window of T + depth steps per env step
(deploy.build). Emulator: deploy.emulator, bit-exact. Fidelity: the paper's conversion rate
(argmax of the float DQN on the visited observations); for ALE games also the fraction of
decisions whose two actions have the same outcome in the emulator.
"""
from __future__ import annotations

import numpy as np

from lavaloop.conversion.artifact_if import IFArtifact
from lavaloop.deploy.emulator import run_emulator
from lavaloop.deploy.episodes import EpisodeLog, idle_corrected_counters, recorded_actions, run_envio_episodes
from lavaloop.deploy.kinds.dqn import DQNDeployment
from lavaloop.envs import episode_limit
from lavaloop.errors import LavaloopError
from lavaloop.options import RunSettings
from lavaloop.runtime import LavaRuntime


class IFDeployment(DQNDeployment):
    accepts = ("timesteps", "readout", "per_layer_processes", "env", "sticky_actions", "env_params")

    def __init__(self, art: IFArtifact, settings: RunSettings):
        super().__init__(art, settings)
        if settings.per_layer_processes and settings.backend != "lava":
            raise LavaloopError("--per-layer-processes applies to the lava backend only")
        art = self.art
        self.timesteps = settings.timesteps or art.timesteps
        self.readout = settings.readout or art.manifest["readout"]

    def run_lava(self, progress: bool) -> EpisodeLog:
        from lavaloop.deploy.build import build_graph

        g = build_graph(self.art, self.seeds, self.timesteps, self.readout, self.epsilon,
                        episode_limit(self.art.env_spec), fuse=not self.settings.per_layer_processes)
        with LavaRuntime(g.envio) as rt:
            steps, wall = run_envio_episodes(rt, g.envio, len(self.seeds), g.window * 25, progress)
            lengths = g.envio.lengths.get().astype(np.int64)
            spikes, synops = idle_corrected_counters(rt, g.stacks, g.window, steps // g.window - int(lengths.sum()))
            actions, greedy = recorded_actions(g.envio, lengths)
            return EpisodeLog(seeds=self.seeds, returns=g.envio.returns.get().astype(float), lengths=lengths,
                              actions=actions, greedy=greedy, spikes=spikes, synops=synops, steps=steps,
                              wall_s=wall, extra={"compile_s": rt.compile_s})

    def run_emulator(self, progress: bool) -> EpisodeLog:
        return run_emulator(self.art, self.seeds, self.timesteps, self.readout, self.epsilon, progress)

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

