"""Rate-coded integrate-and-fire layers (dense or convolutional synapses) in one Lava process.

An IFStack holds consecutive layers of a network: one process per layer mirrors the chip's
layout, one process for the whole network cuts Lava's messaging. The per-time-step
semantics are the same either way: every layer integrates the spikes its input layer
emitted one step earlier, and layer l (its depth in the network) is active for `timesteps`
consecutive steps of each decision window, starting at step l, where its neurons restart
from `v_init`. So layer l at its k-th active step sees exactly layer l-1's k-th spikes:
the pipeline adds latency, not lag.
"""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class IFStack(AbstractProcess):
    """Consecutive IF layers; sends the last layer's spikes, or its readout values, on `s_out`.

    Parameters
    ----------
    layers: one dict per layer with `weight` (int mantissa: (out, in), or (O, C, kh, kw) for a
        valid convolution with `stride` and `in_shape`), `weight_exp`, `max_input` (the largest
        input magnitude), and per-neuron `bias`, `vth`, `v_init` (state units).
    offset: depth of the first layer in the network; `window`: Lava steps per decision.
    readout: None (send spikes) or a processes.dynamics.readout mode for the output layer.
    plastic: the last layer (dense) is a readout a host trains: its weight mantissa and bias
        are the Vars `w_out`, `b_out` (set them between runs; the layer takes them at its next
        window), and `f_out` sends its input spike counts of the window (the features) along
        with the readout values.
    """

    def __init__(self, *, layers: list[dict], state_bits: int, offset: int, timesteps: int, window: int,
                 readout: str | None = None, plastic: bool = False, name: str | None = None):
        last = layers[-1]
        if plastic and last["weight"].ndim != 2:
            raise ValueError("a plastic readout must be a dense layer")
        super().__init__(layers=layers, state_bits=state_bits, offset=offset, timesteps=timesteps,
                         window=window, readout=readout, plastic=plastic, name=name)
        sizes = [len(l["bias"]) for l in layers]
        w0 = layers[0]["weight"]
        n_in = int(np.prod(layers[0]["in_shape"])) if w0.ndim == 4 else w0.shape[1]
        self.s_in = InPort(shape=(n_in,))
        self.s_out = OutPort(shape=(sizes[-1],))
        self.v = Var(shape=(sum(sizes),), init=np.zeros(sum(sizes), np.int64))   # all layers' potentials
        self.count = Var(shape=(sizes[-1],), init=np.zeros(sizes[-1], np.int64))  # output spikes this window
        self.spikes = Var(shape=(len(layers),), init=np.zeros(len(layers), np.int64))  # totals per layer
        self.synops = Var(shape=(len(layers),), init=np.zeros(len(layers), np.int64))  # received per layer
        w_out = last["weight"] if plastic else np.zeros((1, 1), np.int64)
        self.w_out = Var(shape=w_out.shape, init=w_out.astype(np.int64))
        self.b_out = Var(shape=(sizes[-1],), init=np.asarray(last["bias"], np.int64))
        self.f_out = OutPort(shape=(w_out.shape[1],))
