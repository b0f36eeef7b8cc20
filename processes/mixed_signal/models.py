"""ProcessModel of MixedSignalStack; the arithmetic is processes.dynamics (float64 analog states)."""
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

from lavaloop.processes.dynamics import fanout, generator_increments, mapped_layer_step, regular_spikes, sparse_conn
from lavaloop.processes.mixed_signal.process import MixedSignalStack


@implements(proc=MixedSignalStack, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMixedSignalStackModel(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    spikes: np.ndarray = LavaPyType(np.ndarray, np.int64)
    synops: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self.layers = [{**l, "conn": sparse_conn(l["conn"])} for l in p["layers"]]   # event-driven drive
        self.gain, self.one = p["input_gain"], p["one"]
        self.w_ro, self.b_ro = p["readout_weight"], p["readout_bias"]
        self.timesteps, self.window = p["timesteps"], p["window"]
        self.gen_phase = np.zeros(2 * len(self.gain) + 1, np.int64)
        self.fanout = [fanout(l["conn"]) for l in self.layers]
        self.states = [None] * len(self.layers)
        self.prev = [np.zeros(l["conn"].shape[1], np.int64) for l in self.layers]
        self.count = np.zeros(self.w_ro.shape[1], np.int64)
        self.out = np.zeros(len(self.b_ro), np.int64)

    def run_spk(self):
        self.s_out.send(self.out)                   # last step's values: one-step delay
        payload = self.s_in.recv()
        phase = (self.time_step - 1) % self.window
        trains = None
        if phase < self.timesteps:                  # the generators
            if phase == 0:
                self.gen_phase[:] = self.one // 2
            inc = generator_increments(payload.astype(np.int64), self.gain, self.one)
            self.gen_phase, s = regular_spikes(self.gen_phase, inc, self.one)
            trains = s[:-1]
            self.spikes[0] += trains.sum()
        inputs = [trains, *self.prev[:-1]]
        last = self.prev[-1]
        for j, p in enumerate(self.layers):
            k = phase - j
            if k == 0:
                n = p["conn"].shape[1]
                self.states[j] = {"i_syn": np.zeros(n), "v": np.zeros(n), "refr": np.zeros(n, np.int64)}
            if 0 <= k < self.timesteps:
                self.prev[j] = mapped_layer_step(self.states[j], inputs[j], p)
                self.synops[j] += inputs[j] @ self.fanout[j][:-1] + self.fanout[j][-1]
                self.spikes[j + 1] += self.prev[j].sum()
            else:
                self.prev[j] = np.zeros_like(self.prev[j])
        k = phase - len(self.layers)                # the readout counts the last layer's spikes
        if k == 0:
            self.count[:] = 0
        if 0 <= k < self.timesteps:
            self.count += last
            if k == self.timesteps - 1:
                self.out = self.count @ self.w_ro.T + self.b_ro
