"""LIFPopulation: mixed-signal leaky integrate-and-fire neurons (see dynamics.lif_step)."""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class LIFPopulation(AbstractProcess):
    """Input spikes on `s_in` through integer multiplicities `conn` (in, n); spikes out on `s_out`.

    Per-neuron constants (mismatch already drawn): gain, a_syn, a_mem, b_mem, vth.
    Membrane noise: noise_sigma * N(0, 1) per neuron and step, from a generator seeded with
    `noise_seed` (none when noise_sigma is 0).
    """

    def __init__(self, *, conn: np.ndarray, gain: np.ndarray, a_syn: np.ndarray, a_mem: np.ndarray,
                 b_mem: np.ndarray, vth: np.ndarray, refractory: int, noise_sigma: float = 0.0,
                 noise_seed: int = 0, name: str = "lif_population"):
        super().__init__(refractory=refractory, noise_sigma=noise_sigma, noise_seed=noise_seed, name=name)
        n_in, n = conn.shape
        self.s_in = InPort(shape=(n_in,))
        self.s_out = OutPort(shape=(n,))
        self.conn = Var(shape=conn.shape, init=conn)
        for key, value in (("gain", gain), ("a_syn", a_syn), ("a_mem", a_mem), ("b_mem", b_mem), ("vth", vth)):
            setattr(self, key, Var(shape=(n,), init=value))
        self.i_syn = Var(shape=(n,), init=np.zeros(n))
        self.v = Var(shape=(n,), init=np.zeros(n))
        self.refr = Var(shape=(n,), init=np.zeros(n, np.int64))
