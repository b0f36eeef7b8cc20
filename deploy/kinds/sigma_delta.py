"""Deployment of the sigma-delta kind (a DQN run with graded spikes, as Loihi 2 runs ANNs).

Lava: EnvIO -> SigmaDeltaStack -> EnvIO, one window of depth + 1 steps per env step, the
observation held (deploy.sigma_delta). Emulator: the same arithmetic, batched, bit-exact.
Fidelity: as the rate-coded kind's, against the float source on the visited observations.
"""
from __future__ import annotations

import numpy as np

from lavaloop.deploy.episodes import EpisodeLog, recorded_actions, run_envio_episodes
from lavaloop.deploy.kinds.dqn import DQNDeployment
from lavaloop.deploy.sigma_delta import build_graph, run_emulator
from lavaloop.envs import episode_limit
from lavaloop.runtime import LavaRuntime


class SDDeployment(DQNDeployment):
    accepts = ("env", "sticky_actions", "env_params")

    def run_lava(self, progress: bool) -> EpisodeLog:
        envio, stack = build_graph(self.art, self.seeds, self.epsilon, episode_limit(self.art.env_spec))
        with LavaRuntime(envio) as rt:
            steps, wall = run_envio_episodes(rt, envio, len(self.seeds), self.art.window * 25, progress)
            lengths = envio.lengths.get().astype(np.int64)
            actions, greedy = recorded_actions(envio, lengths)
            return EpisodeLog(seeds=self.seeds, returns=envio.returns.get().astype(float), lengths=lengths,
                              actions=actions, greedy=greedy, spikes=stack.messages.get().astype(np.int64).tolist(),
                              synops=stack.synops.get().astype(np.int64).tolist(), steps=steps, wall_s=wall,
                              extra={"compile_s": rt.compile_s})

    def run_emulator(self, progress: bool) -> EpisodeLog:
        return run_emulator(self.art, self.seeds, self.epsilon, progress)

    def ops(self, log: EpisodeLog) -> dict[str, int]:
        """Every synaptic operation multiplies a graded message by a weight (MAC); the neurons of
        a layer update when it receives messages, counted as once per decision."""
        neurons = sum(q.out_size for q in self.art.layers)
        return {"mac": int(sum(log.synops)), "ac": 0, "neuron": neurons * log.decisions}

    def config(self) -> dict:
        return {"coding": "sigma-delta", "steps_per_decision": self.art.window,
                "threshold": self.art.manifest["threshold"]}

    @staticmethod
    def summary_lines(result) -> list[str]:
        d = result.details
        return [f"coding: sigma-delta, {d['steps_per_decision']} Lava steps per decision; graded messages "
                f"into each layer {d['spikes_per_layer']}"]
