"""ProcessModel of LIFPopulation (float64 state, integer synaptic multiplicities)."""
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

from lavaloop.processes.dynamics import lif_step
from lavaloop.processes.lif_population.process import LIFPopulation


@implements(proc=LIFPopulation, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLIFPopulationModel(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=1)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    conn: np.ndarray = LavaPyType(np.ndarray, np.float64)
    gain: np.ndarray = LavaPyType(np.ndarray, np.float64)
    a_syn: np.ndarray = LavaPyType(np.ndarray, np.float64)
    a_mem: np.ndarray = LavaPyType(np.ndarray, np.float64)
    b_mem: np.ndarray = LavaPyType(np.ndarray, np.float64)
    vth: np.ndarray = LavaPyType(np.ndarray, np.float64)
    i_syn: np.ndarray = LavaPyType(np.ndarray, np.float64)
    v: np.ndarray = LavaPyType(np.ndarray, np.float64)
    refr: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.rng = np.random.default_rng(proc_params["noise_seed"])

    def run_spk(self):
        s_in = self.s_in.recv()
        p = {"conn": self.conn, "gain": self.gain, "a_syn": self.a_syn, "a_mem": self.a_mem,
             "b_mem": self.b_mem, "vth": self.vth, "refractory": self.proc_params["refractory"]}
        sigma = self.proc_params["noise_sigma"]
        noise = sigma * self.rng.standard_normal(self.v.shape[0]) if sigma > 0 else None
        state = {"i_syn": self.i_syn, "v": self.v, "refr": self.refr}
        s = lif_step(state, s_in, p, noise)
        self.i_syn[:], self.v[:], self.refr[:] = state["i_syn"], state["v"], state["refr"]
        self.s_out.send(s)
