"""Fixed-point ProcessModel of GRSNStack; the arithmetic is processes.dynamics."""
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

from lavaloop.processes.dynamics import prepare_stage, run_stage, stage_ops
from lavaloop.processes.envio.process import CONTROL_FIRST, CONTROL_IDLE
from lavaloop.processes.grsn.process import GRSNStack


@implements(proc=GRSNStack, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGRSNStackModel(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    h: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    spikes: np.ndarray = LavaPyType(np.ndarray, np.int64)
    ops: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.stages = [prepare_stage(st) for st in proc_params["stages"]]
        self.window = proc_params["window"]
        self.prev = [np.zeros(0, np.int64) for _ in self.stages]
        batch = proc_params["batch"]
        self.out = np.zeros((() if batch is None else (batch,)) + (len(self.stages[-1]["bias"]),), np.int64)
        self.counting = False

    def run_spk(self):
        self.s_out.send(self.out)                 # last step's output: one-step synaptic delay
        u = self.s_in.recv().astype(np.int64)
        phase = (self.time_step - 1) % self.window
        control = u.flat[u.shape[-1] - 1]          # the (first row's) control entry
        if phase == 0:
            self.counting = control != CONTROL_IDLE
            if control == CONTROL_FIRST:
                self.h[:], self.v[:] = 0, 0
        inputs = [u[..., :-1], *self.prev[:-1]]
        for j, st in enumerate(self.stages):
            if phase != j:
                self.prev[j] = np.zeros(0, np.int64)
                continue
            if self.counting:
                ops = stage_ops(st, inputs[j])
                self.ops[:] += [np.sum(ops["mac"]), np.sum(ops["ac"]), np.sum(ops["neuron"])]
            state = {"h": self.h, "v": self.v}
            self.prev[j] = run_stage(st, inputs[j], state)
            if st["kind"] == "grsn":
                self.h[:], self.v[:] = state["h"], state["v"]
                if self.counting:
                    self.spikes[0] += np.count_nonzero(self.prev[j][..., : len(st["b_f"])])
        self.out = self.prev[-1] if phase == len(self.stages) - 1 else np.zeros_like(self.out)
