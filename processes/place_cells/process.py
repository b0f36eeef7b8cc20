"""PlaceCells: regular spike generators whose rates encode the shown state bytes and action."""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class PlaceCells(AbstractProcess):
    """views (9 ints) in on `views_in`; one 0/1 spike per generator out on `s_out` every step.

    table (256, cells): phase increment per byte value (see dynamics.place_cell_increments);
    a generator spikes each time its phase (`clock`) reaches `phase_one`.
    """

    def __init__(self, *, table: np.ndarray, action_increment: int, phase_one: int, name: str = "place_cells"):
        super().__init__(action_increment=action_increment, phase_one=phase_one, name=name)
        n = 8 * table.shape[1] + 3
        self.views_in = InPort(shape=(9,))
        self.s_out = OutPort(shape=(n,))
        self.table = Var(shape=table.shape, init=table)
        self.clock = Var(shape=(n,), init=np.zeros(n, np.int64))
