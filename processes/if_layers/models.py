"""Fixed-point ProcessModels of the IF layers; the arithmetic is processes.dynamics."""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from processes.dynamics import dense, if_step, readout, synops
from processes.if_layers.process import IFLayer, ReadoutLayer


class AbstractPyIFLayerModel(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int16, precision=8)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v_init: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    spikes: np.ndarray = LavaPyType(np.ndarray, np.int64)
    synops: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self.exp, self.bits = p["weight_exp"], p["state_bits"]
        self.offset, self.timesteps, self.window = p["offset"], p["timesteps"], p["window"]
        self.fanout = None
        self.out = None

    def local_step(self) -> int:
        """Index of this step in the layer's active span (outside [0, timesteps) when idle)."""
        return (self.time_step - 1) % self.window - self.offset

    def integrate(self, x: np.ndarray) -> np.ndarray:
        """One IF update on input `x`; returns the spikes and updates the counters."""
        if self.fanout is None:  # weights are static: derive what the arithmetic needs once
            self.fanout = np.count_nonzero(self.weight, axis=0)
            self.weight_f64 = self.weight.astype(np.float64)
        x = x.astype(np.int64)
        v, s = if_step(self.v, dense(self.weight_f64, x, self.exp) + self.bias, self.vth, self.bits)
        self.v[:] = v
        self.spikes[0] += s.sum()
        self.synops[0] += synops(self.fanout, x)
        return s


@implements(proc=IFLayer, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyIFLayerModel(AbstractPyIFLayerModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)

    def run_spk(self):
        if self.out is None:
            self.out = np.zeros(self.v.shape, np.int64)
        self.s_out.send(self.out)            # spikes of the previous step: one-step synaptic delay
        x = self.s_in.recv()
        k = self.local_step()
        if k == 0:
            self.v[:] = self.v_init
        self.out = self.integrate(x) if 0 <= k < self.timesteps else np.zeros_like(self.out)


@implements(proc=ReadoutLayer, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyReadoutLayerModel(AbstractPyIFLayerModel):
    q_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    count: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self):
        if self.out is None:
            self.out = np.zeros(self.v.shape, np.int64)
        self.q_out.send(self.out)
        x = self.s_in.recv()
        k = self.local_step()
        if k == 0:
            self.v[:] = self.v_init
            self.count[:] = 0
        if 0 <= k < self.timesteps:
            self.count[:] += self.integrate(x)
            self.out = readout(self.count, self.v, self.vth, self.proc_params["readout"])
