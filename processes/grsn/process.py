"""A GRSN policy network (graded-spike layers around gated recurrent spiking neurons) in one Lava process.

Stages (see conversion.grsn): embedding, GRSN neurons, head layers. Like IFStack, every
stage works on what the stage below emitted one Lava step earlier, and stage j is active
at step j of each decision window (one window per env step), so the values for env step
t depend on observation t and on the GRSN state carried from step t-1, exactly as in the
float policy (TAP: one GRSN step per env step). The input's last entry is EnvIO's control
(processes.envio): the GRSN state is zeroed at an episode's first decision, and idle
windows (control 0) are not counted.

With `batch`, one process holds that many copies of the network (a team's agents sharing
one chip): inputs, outputs and states gain a leading batch axis, and the first row's
control entry governs all rows (the agents of one episode decide together).
"""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class GRSNStack(AbstractProcess):
    """Sends the last stage's values (one per action) on `s_out`.

    Parameters
    ----------
    stages: the artifact's stage dicts (processes.dynamics.run_stage).
    window: Lava steps per decision (at least the number of stages + 1).
    batch: copies of the network (None: one, without a batch axis).
    """

    def __init__(self, *, stages: list[dict], window: int, batch: int | None = None, name: str = "grsn_policy"):
        super().__init__(stages=stages, window=window, batch=batch, name=name)
        lead = () if batch is None else (batch,)
        n_in = stages[0]["weight"].shape[1] + 1
        hidden = lead + (len(stages[1]["b_f"]),)
        self.s_in = InPort(shape=lead + (n_in,))
        self.s_out = OutPort(shape=lead + (len(stages[-1]["bias"]),))
        self.h = Var(shape=hidden, init=np.zeros(hidden, np.int64))         # gated recurrent current
        self.v = Var(shape=hidden, init=np.zeros(hidden, np.int64))         # membrane potential
        self.spikes = Var(shape=(1,), init=np.zeros(1, np.int64))           # GRSN spikes, all decisions
        self.ops = Var(shape=(3,), init=np.zeros(3, np.int64))              # MACs, ACs, neuron updates
