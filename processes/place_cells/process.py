"""PlaceCells: regular spike generators whose rates encode the shown state bytes and action."""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

from lavaloop.processes.pong_io.game import VIEW_LEN


class PlaceCells(AbstractProcess):
    """views (VIEW_LEN ints) in on `views_in`; one 0/1 spike per generator out on `s_out` every step.

    table (rows, cells): phase increment per state value (see dynamics.place_cell_increments);
    a generator spikes each time its phase (`clock`) reaches `phase_one`. With `restart`, the
    generators restart (dynamics.restart_generators) on every step that brings a new command.
    """

    def __init__(self, *, table: np.ndarray, action_increment: int, phase_one: int, restart: bool = False,
                 name: str = "place_cells"):
        super().__init__(action_increment=action_increment, phase_one=phase_one, restart=restart, name=name)
        n = 8 * table.shape[1] + 3
        self.views_in = InPort(shape=(VIEW_LEN,))
        self.s_out = OutPort(shape=(n,))
        self.table = Var(shape=table.shape, init=table)
        self.clock = Var(shape=(n,), init=np.zeros(n, np.int64))
