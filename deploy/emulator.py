"""The fast emulator: the artifact's fixed-point network, vectorized over episodes, no Lava.

It calls the same processes.dynamics functions as the Lava ProcessModels and runs each
decision as the Lava pipeline does (every layer integrates `timesteps` steps of the
layer below, neurons reset per decision), so it is bit-exact with the Lava backend; a
test checks it on recorded runs.
"""
from __future__ import annotations

import numpy as np

from lavaloop.conversion.artifact_if import IFArtifact
from lavaloop.deploy.episodes import EpisodeLog, play_feedforward
from lavaloop.processes.dynamics import Synapse, if_steps, readout, rewired


class FixedPointNetwork:
    """Batched fixed-point forward pass of one decision window.

    Layers are computed one after the other over a chunk of time steps: a layer's synaptic
    currents depend only on the spikes of the layer below, so those of `chunk` steps are
    one matrix product (the input layer's, held for the whole window, just one), and only
    the IF update runs step by step. Chunks of ~64 rows (steps x batch) keep the products
    in cache. Same arithmetic, same order per neuron: bit-exact with the step-by-step
    Lava pipeline.
    """

    def __init__(self, art: IFArtifact, timesteps: int, readout_mode: str, chunk: int | None = None):
        self.layers = art.layer_params()
        self.synapses = [Synapse.from_params(l) for l in self.layers]
        self.bits = art.profile.state_bits
        self.timesteps, self.mode, self.chunk = timesteps, readout_mode, chunk
        self.spikes = np.zeros(len(self.layers), np.int64)
        self.synops = np.zeros(len(self.layers), np.int64)
        self.features: np.ndarray | None = None   # the output layer's input spike counts, last decision

    def set_readout(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Replace the output layer's weight mantissa and bias (as IFStack's plastic readout does)."""
        new = rewired(self.layers[-1], weight, bias)
        if new is not None:
            self.layers[-1], self.synapses[-1] = new

    def decide(self, x: np.ndarray) -> np.ndarray:
        """Readout values for a batch of encoded observations x (B, n_in); `features` keeps the
        spike counts the output layer received (B, its n_in) (hidden networks only)."""
        v = [np.repeat(l["v_init"][None], len(x), axis=0).astype(np.int64) for l in self.layers]
        count = np.zeros_like(v[-1])
        last = len(self.layers) - 1
        features = np.zeros((len(x), self.synapses[-1].fanout.size), np.int64) if last else None
        held = self.synapses[0].current(x) + self.layers[0]["bias"]   # the observation is held:
        self.synops[0] += self.timesteps * self.synapses[0].synops(x)  # one current for every step
        chunk = self.chunk or max(4, 64 // len(x))
        for start in range(0, self.timesteps, chunk):
            steps = min(chunk, self.timesteps - start)
            inp = None
            for i, (l, syn) in enumerate(zip(self.layers, self.synapses)):
                if i == 0:
                    out = if_steps(v[0], held, l["vth"], self.bits, steps=steps)
                else:
                    if i == last:
                        features += inp.sum(axis=0, dtype=np.int64)
                    flat = inp.reshape(-1, inp.shape[-1])
                    current = (syn.current(flat) + l["bias"]).reshape(steps, *v[i].shape)
                    out = if_steps(v[i], current, l["vth"], self.bits)
                    self.synops[i] += syn.synops(flat)
                self.spikes[i] += np.count_nonzero(out)
                inp = out
            count += inp.sum(axis=0, dtype=np.int64)
        self.features = features
        return readout(count, v[-1], self.layers[-1]["vth"], self.mode)


def run_emulator(art: IFArtifact, seeds: list[int], timesteps: int, readout_mode: str,
                 epsilon: float, progress: bool = True) -> EpisodeLog:
    """Run one episode per seed, all episodes batched together."""
    net = FixedPointNetwork(art, timesteps, readout_mode)
    played = play_feedforward(art, seeds, lambda active, x: net.decide(x), art.profile.input_bits, epsilon, progress)
    return EpisodeLog.batched(played, seeds, net.spikes.tolist(), net.synops.tolist(), timesteps + len(art.layers))
