"""The sigma-delta network off Lava (the bit-exact emulator) and on Lava (its process graph).

The emulator keeps one row of neuron state per episode and runs each decision as the
Lava pipeline does: the change of the payload enters the first layer, and every layer
that receives messages takes its one step (a layer without input would not change), with
the very processes.dynamics functions of the Lava model.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from lavaloop.conversion.artifact_sd import SDArtifact
from lavaloop.deploy.episodes import EpisodeLog, play_feedforward
from lavaloop.envs import EnvSpec, make_env
from lavaloop.processes.dynamics import Synapse, delta_encode, rewired, sigma_delta_step, sigma_readout


class SigmaDeltaNetwork:
    """Neuron states of a batch of independent copies of the network (one per episode).

    Parameters
    ----------
    art: the artifact. batch: rows (episodes).
    """

    def __init__(self, art: SDArtifact, batch: int):
        self.layers = art.layer_params()
        self.synapses = [Synapse.from_params(l) for l in self.layers]
        sizes = [len(l["bias"]) for l in self.layers]
        self.sigma = [np.zeros((batch, n), np.int64) for n in sizes]
        self.act = [np.zeros((batch, n), np.int64) for n in sizes[:-1]]
        self.residue = [np.zeros((batch, n), np.int64) for n in sizes[:-1]]
        self.last = np.zeros((batch, art.layers[0].in_size), np.int64)
        self.features = np.zeros((batch, art.layers[-1].in_size), np.int64)   # messages into the output layer
        self.messages = np.zeros(len(sizes), np.int64)
        self.synops = np.zeros(len(sizes), np.int64)
        self.max_message = np.zeros(len(sizes), np.int64)

    def restart(self, rows: np.ndarray) -> None:
        """Zero the state of these rows (an episode starts)."""
        for states in (self.sigma, self.act, self.residue, [self.last, self.features]):
            for s in states:
                s[rows] = 0

    def set_readout(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Replace the output layer's weights and bias (as SigmaDeltaStack's plastic readout
        does); rows take them from their next restart, as the chip does."""
        new = rewired(self.layers[-1], weight, bias)
        if new is not None:
            self.layers[-1], self.synapses[-1] = new

    def decide(self, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Output values (len(rows), |A|) for encoded observations x of these rows."""
        msg = delta_encode(x, self.last[rows])
        self.last[rows] = x
        last = len(self.layers) - 1
        for j, (layer, syn) in enumerate(zip(self.layers, self.synapses)):
            self.messages[j] += np.count_nonzero(msg)
            self.synops[j] += syn.synops(msg)
            self.max_message[j] = max(self.max_message[j], int(np.abs(msg).max(initial=0)))
            a_in = syn.current(msg)
            sigma = self.sigma[j][rows]
            if j == last:
                self.features[rows] += msg
                out = sigma_readout(sigma, a_in, layer["bias"])
                self.sigma[j][rows] = sigma
                return out
            act, res = self.act[j][rows], self.residue[j][rows]
            msg = sigma_delta_step(sigma, act, res, a_in, layer["bias"], layer["vth"], layer["msg_shift"])
            self.sigma[j][rows], self.act[j][rows], self.residue[j][rows] = sigma, act, res
        raise AssertionError("unreachable")


def run_emulator(art: SDArtifact, seeds: list[int], epsilon: float, progress: bool = True) -> EpisodeLog:
    """Run one episode per seed, all episodes batched together."""
    net = SigmaDeltaNetwork(art, len(seeds))
    net.restart(np.arange(len(seeds)))
    played = play_feedforward(art, seeds, net.decide, art.profile.input_bits, epsilon, progress)
    return EpisodeLog.batched(played, seeds, net.messages.tolist(), net.synops.tolist(), art.window,
                              {"max_message": net.max_message.tolist()})


def build_graph(art: SDArtifact, seeds: Sequence[int], epsilon: float, max_steps: int, plastic: bool = False,
                feature_rows: int = 1):
    """(EnvIO, SigmaDeltaStack) for running `len(seeds)` episodes of `art`: the observation is
    held for the whole window of one step per layer plus one, with EnvIO's control entry.
    `plastic`: the output layer is a readout the host trains between episodes (EnvIO keeps
    its features in a ring of `feature_rows` decisions and holds each episode)."""
    from lavaloop.processes.envio.process import EnvIO
    from lavaloop.processes.sigma_delta.process import SigmaDeltaStack

    spec = EnvSpec.from_dict(art.manifest["env"])
    envio = EnvIO(env_fn=functools.partial(make_env, spec), obs_size=art.layers[0].in_size,
                  n_actions=art.manifest["n_actions"], action_map=art.manifest["action_map"],
                  input_scale_bits=art.manifest["input_scale_bits"], input_bits=art.profile.input_bits,
                  timesteps=art.window, latency=0, seeds=seeds, epsilon=epsilon, max_steps=max_steps,
                  control=True, n_features=art.layers[-1].in_size if plastic else 0,
                  feature_rows=feature_rows, gated=plastic)
    stack = SigmaDeltaStack(layers=art.layer_params(), window=art.window, plastic=plastic)
    envio.obs_out.connect(stack.s_in)
    stack.s_out.connect(envio.q_in)
    if plastic:
        stack.f_out.connect(envio.f_in)
    return envio, stack
