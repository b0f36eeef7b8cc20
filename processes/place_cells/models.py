"""ProcessModel of PlaceCells."""
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

from lavaloop.processes.dynamics import place_cell_increments, regular_spikes, restart_generators
from lavaloop.processes.place_cells.process import PlaceCells


@implements(proc=PlaceCells, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPlaceCellsModel(PyLoihiProcessModel):
    views_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    table: np.ndarray = LavaPyType(np.ndarray, np.int64)
    clock: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self):
        views = np.rint(self.views_in.recv()).astype(np.int64)
        p = self.proc_params
        inc = place_cell_increments(views, self.table, p["action_increment"])
        if p["restart"] and views[-1]:
            self.clock[:] = restart_generators(inc, p["phase_one"])
        phase, s = regular_spikes(self.clock, inc, p["phase_one"])
        self.clock[:] = phase
        self.s_out.send(s)
