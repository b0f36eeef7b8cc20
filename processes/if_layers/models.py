"""Fixed-point ProcessModel of IFStack; the arithmetic is processes.dynamics."""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavaloop.processes.dynamics import Synapse, if_step, readout, rewired
from lavaloop.processes.if_layers.process import IFStack


@implements(proc=IFStack, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyIFStackModel(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    count: np.ndarray = LavaPyType(np.ndarray, np.int64)
    spikes: np.ndarray = LavaPyType(np.ndarray, np.int64)
    synops: np.ndarray = LavaPyType(np.ndarray, np.int64)
    w_out: np.ndarray = LavaPyType(np.ndarray, np.int64)
    b_out: np.ndarray = LavaPyType(np.ndarray, np.int64)
    f_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self.layers = list(p["layers"])
        self.plastic = p["plastic"]
        self.synapses = [Synapse.from_params(l) for l in self.layers]
        ends = np.cumsum([len(l["bias"]) for l in self.layers])
        self.slices = [slice(e - len(l["bias"]), e) for e, l in zip(ends, self.layers)]
        self.bits, self.offset = p["state_bits"], p["offset"]
        self.timesteps, self.window, self.mode = p["timesteps"], p["window"], p["readout"]
        self.prev = [np.zeros(len(l["bias"]), np.int64) for l in self.layers]
        self.out = np.zeros(len(self.layers[-1]["bias"]), np.int64)
        n_features = self.layers[-1]["weight"].shape[1] if self.plastic else 1
        self.features = np.zeros(n_features, np.int64)   # the last layer's input counts this window

    def take_readout(self) -> None:
        """Use the readout weights the host left in `w_out`, `b_out` (if they changed)."""
        new = rewired(self.layers[-1], self.w_out, self.b_out)
        if new is not None:
            self.layers[-1], self.synapses[-1] = new

    def run_spk(self):
        self.s_out.send(self.out)                 # last step's output: one-step synaptic delay
        if self.plastic:
            self.f_out.send(self.features)
        inputs = [self.s_in.recv().astype(np.int64), *self.prev[:-1]]
        phase = (self.time_step - 1) % self.window
        last = len(self.layers) - 1
        for j in range(len(self.layers)):
            k = phase - self.offset - j           # this layer's step within its active span
            if k == 0:
                if self.plastic and j == last:
                    self.take_readout()
                    self.features = np.zeros_like(self.features)
                self.v[self.slices[j]] = self.layers[j]["v_init"]
            layer, syn, sl = self.layers[j], self.synapses[j], self.slices[j]
            if 0 <= k < self.timesteps:
                if self.plastic and j == last:
                    self.features = self.features + inputs[j]
                current = syn.current(inputs[j]) + layer["bias"]
                self.v[sl], self.prev[j] = if_step(self.v[sl], current, layer["vth"], self.bits)
                self.spikes[j] += self.prev[j].sum()
                self.synops[j] += syn.synops(inputs[j])
            else:
                self.prev[j] = np.zeros_like(self.prev[j])
        if self.mode is None:
            self.out = self.prev[-1]
            return
        k = phase - self.offset - len(self.layers) + 1
        if k == 0:
            self.count[:] = 0
        if 0 <= k < self.timesteps:
            self.count[:] += self.prev[-1]
            self.out = readout(self.count, self.v[self.slices[-1]], self.layers[-1]["vth"], self.mode)
