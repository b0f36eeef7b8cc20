"""Rate-coded integrate-and-fire layers: dense synapses and IF neurons in one process.

Each layer is active for `timesteps` consecutive steps of every decision window,
starting at `offset` (its depth in the network) and resetting its neurons (to `v_init`) then. Because
every layer sends its spikes one step after computing them, layer l at its k-th active
step sees exactly layer l-1's k-th spikes: the pipeline adds latency, not lag.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class AbstractIFLayer(AbstractProcess):
    """current = (weight @ s_in) * 2**weight_exp + bias; IF neurons, reset by subtraction."""

    def __init__(self, *, weight: np.ndarray, weight_exp: int, bias: np.ndarray, vth: np.ndarray,
                 v_init: np.ndarray, state_bits: int, offset: int, timesteps: int, window: int, name: str | None = None,
                 **params):
        super().__init__(weight_exp=weight_exp, state_bits=state_bits, offset=offset,
                         timesteps=timesteps, window=window, name=name, **params)
        n_out, n_in = weight.shape
        self.s_in = InPort(shape=(n_in,))
        self.weight = Var(shape=weight.shape, init=weight)
        self.bias = Var(shape=(n_out,), init=bias)
        self.vth = Var(shape=(n_out,), init=vth)
        self.v_init = Var(shape=(n_out,), init=v_init)
        self.v = Var(shape=(n_out,), init=0)
        self.spikes = Var(shape=(1,), init=0)     # total spikes emitted
        self.synops = Var(shape=(1,), init=0)     # total synaptic operations received


class IFLayer(AbstractIFLayer):
    """A hidden layer: sends its spikes on `s_out`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.s_out = OutPort(shape=(self.v.shape[0],))


class ReadoutLayer(AbstractIFLayer):
    """The output layer: sends the decision values (see dynamics.readout) on `q_out`."""

    def __init__(self, *, readout: str, **kwargs):
        super().__init__(readout=readout, **kwargs)
        self.q_out = OutPort(shape=(self.v.shape[0],))
        self.count = Var(shape=(self.v.shape[0],), init=0)
