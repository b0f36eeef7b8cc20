"""ProcessModel of PopulationChip (float64 neuron state, integer phases and multiplicities)."""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyAsyncProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.async_protocol import AsyncProtocol

from lavaloop.processes.dynamics import place_cell_increments, population_window
from lavaloop.processes.population_chip.process import PopulationChip


@implements(proc=PopulationChip, protocol=AsyncProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPopulationChipModel(PyAsyncProcessModel):
    views_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    counts_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    table: np.ndarray = LavaPyType(np.ndarray, np.int64)
    clock: np.ndarray = LavaPyType(np.ndarray, np.int64)
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

    def noise(self) -> np.ndarray:
        return self.proc_params["noise_sigma"] * self.rng.standard_normal(self.v.shape[0])

    def run_async(self):
        for _ in range(self.num_steps):
            self.window()

    def window(self):
        pp = self.proc_params
        views = np.rint(self.views_in.recv()).astype(np.int64)
        inc = place_cell_increments(views, self.table, pp["action_increment"])
        p = {"conn": self.conn, "gain": self.gain, "a_syn": self.a_syn, "a_mem": self.a_mem,
             "b_mem": self.b_mem, "vth": self.vth, "refractory": pp["refractory"]}
        state = {"i_syn": self.i_syn, "v": self.v, "refr": self.refr}
        phase, counts = population_window(state, self.clock, inc, p, pp["window"], pp["phase_one"],
                                          restart=pp["restart"] and bool(views[-1]),
                                          noise=self.noise if pp["noise_sigma"] > 0 else None)
        self.clock[:] = phase
        self.i_syn[:], self.v[:], self.refr[:] = state["i_syn"], state["v"], state["refr"]
        self.counts_out.send(counts)
