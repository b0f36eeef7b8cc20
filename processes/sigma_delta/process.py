"""A sigma-delta network (graded-spike ReLU layers, dense or convolutional) in one Lava process.

Every layer works on the messages the layer below sent one Lava step earlier (the input
layer on the change of the observation payload since the last step), so a new observation
reaches the output after one step per layer; the readout leaves one step later. Neuron
states persist from decision to decision (only what changed is sent) and are zeroed at an
episode's first decision. The input's last entry is EnvIO's control (processes.envio):
2 restarts the network at the window's first step, 0 (idle) is ignored.
"""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class SigmaDeltaStack(AbstractProcess):
    """Sends the output layer's values (sigma + bias, one per action) on `s_out`.

    Parameters
    ----------
    layers: one dict per layer with `weight` (int mantissa: (out, in), or (O, C, kh, kw) for a
        valid convolution with `stride` and `in_shape`), per-neuron `bias` and a `vth` (state
        units), `msg_shift` (state -> message bits), `weight_exp` 0, `max_input` (the
        largest input message magnitude) and `split_bits` (synapses per connection:
        lavaloop.processes.dynamics.synapse_count).
    window: Lava steps per decision.
    plastic: the output layer (dense) is a readout a host trains: its weights and bias are the
        Vars `w_out`, `b_out`, taken at each restart (an episode's start), and `f_out` sends
        the messages it has received since then (the features) along with the values.
    """

    def __init__(self, *, layers: list[dict], window: int, plastic: bool = False, name: str = "sigma_delta"):
        last = layers[-1]
        if plastic and last["weight"].ndim != 2:
            raise ValueError("a plastic readout must be a dense layer")
        super().__init__(layers=layers, window=window, plastic=plastic, name=name)
        sizes = [len(l["bias"]) for l in layers]
        w0 = layers[0]["weight"]
        n_in = int(np.prod(layers[0]["in_shape"])) if w0.ndim == 4 else w0.shape[1]
        hidden = sum(sizes[:-1])
        self.s_in = InPort(shape=(n_in + 1,))
        self.s_out = OutPort(shape=(sizes[-1],))
        self.sigma = Var(shape=(sum(sizes),), init=np.zeros(sum(sizes), np.int64))   # every layer's sigma
        self.act = Var(shape=(max(hidden, 1),), init=np.zeros(max(hidden, 1), np.int64))      # hidden activations
        self.residue = Var(shape=(max(hidden, 1),), init=np.zeros(max(hidden, 1), np.int64))  # unsent changes
        self.messages = Var(shape=(len(layers),), init=np.zeros(len(layers), np.int64))  # sent into each layer
        self.synops = Var(shape=(len(layers),), init=np.zeros(len(layers), np.int64))    # received per layer
        w_out = last["weight"] if plastic else np.zeros((1, 1), np.int64)
        self.w_out = Var(shape=w_out.shape, init=w_out.astype(np.int64))
        self.b_out = Var(shape=(sizes[-1],), init=np.asarray(last["bias"], np.int64))
        self.f_out = OutPort(shape=(w_out.shape[1],))
