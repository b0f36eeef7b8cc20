"""PopulationChip: the dreaming agent's chip — input generators and fixed LIF populations — one
upload window per Lava step."""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

from lavaloop.processes.pong_io.game import VIEW_LEN


class PopulationChip(AbstractProcess):
    """What the place cells show (VIEW_LEN ints) in on `views_in`; the window's spike counts per
    neuron out on `counts_out`. One Lava step is one window of `window` chip steps
    (dynamics.population_window): the generators and neurons step at the chip's dt inside it,
    as on the chip, and the host exchanges one message per window.

    table (rows, cells): generator phase increments per state value (see
    dynamics.place_cell_increments); a generator spikes when its phase (`clock`) reaches
    `phase_one`; with `restart`, the generators restart at every window. conn (channels, n):
    integer synaptic multiplicities; per-neuron constants (mismatch already drawn): gain,
    a_syn, a_mem, b_mem, vth. Membrane noise: noise_sigma * N(0, 1) per neuron and chip step,
    from a generator seeded with `noise_seed` (none when noise_sigma is 0).
    """

    def __init__(self, *, table: np.ndarray, action_increment: int, phase_one: int, window: int,
                 conn: np.ndarray, gain: np.ndarray, a_syn: np.ndarray, a_mem: np.ndarray, b_mem: np.ndarray,
                 vth: np.ndarray, refractory: int, restart: bool = False, noise_sigma: float = 0.0,
                 noise_seed: int = 0, name: str = "population_chip"):
        super().__init__(action_increment=action_increment, phase_one=phase_one, window=window, restart=restart,
                         refractory=refractory, noise_sigma=noise_sigma, noise_seed=noise_seed, name=name)
        channels, n = conn.shape
        self.views_in = InPort(shape=(VIEW_LEN,))
        self.counts_out = OutPort(shape=(n,))
        self.table = Var(shape=table.shape, init=table)
        self.clock = Var(shape=(channels,), init=np.zeros(channels, np.int64))
        self.conn = Var(shape=conn.shape, init=conn)
        for key, value in (("gain", gain), ("a_syn", a_syn), ("a_mem", a_mem), ("b_mem", b_mem), ("vth", vth)):
            setattr(self, key, Var(shape=(n,), init=value))
        self.i_syn = Var(shape=(n,), init=np.zeros(n))
        self.v = Var(shape=(n,), init=np.zeros(n))
        self.refr = Var(shape=(n,), init=np.zeros(n, np.int64))
