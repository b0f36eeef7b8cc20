"""MixedSignalStack: a DQN mapped onto a mixed-signal chip, one chip instance, in one Lava process."""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class MixedSignalStack(AbstractProcess):
    """Input generators, LIF layers and the host readout (see lavaloop.conversion.mixed_signal).

    Every decision window starts from rest. The payload arriving on `s_in` during the first
    `timesteps` steps drives the ON/OFF and bias generators; layer j is active for
    `timesteps` steps from step j and integrates what layer j - 1 sent one step earlier
    (the generators feed layer 0 in the same step); the readout counts the last layer's
    spikes over its own `timesteps` steps and sends its values on `s_out` one step later,
    the window's last.

    Parameters
    ----------
    layers: per chip layer, the `processes.dynamics.mapped_layer_step` parameters of one chip
        instance (conn (n_in + 1, n) on the analog grid, gain, a_syn, a_mem, b_mem, vth,
        refractory).
    input_gain, one: generator increments per payload unit, and the phase of one spike.
    readout_weight, readout_bias: the host's integer readout of the last layer's counts.
    timesteps: T. window: Lava steps per decision (T + layers + 1).
    """

    def __init__(self, *, layers: list[dict], input_gain: np.ndarray, one: int, readout_weight: np.ndarray,
                 readout_bias: np.ndarray, timesteps: int, window: int, name: str = "chip"):
        super().__init__(layers=layers, input_gain=input_gain, one=one, readout_weight=readout_weight,
                         readout_bias=readout_bias, timesteps=timesteps, window=window, name=name)
        self.s_in = InPort(shape=(len(input_gain),))
        self.s_out = OutPort(shape=(len(readout_bias),))
        self.spikes = Var(shape=(len(layers) + 1,), init=np.zeros(len(layers) + 1, np.int64))  # generators, layers
        self.synops = Var(shape=(len(layers),), init=np.zeros(len(layers), np.int64))  # synaptic events per layer
