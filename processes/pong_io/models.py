"""ProcessModel of PongIO (async: every window waits for its messages; see deploy/dreaming/lava_chip.py)."""
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

from lavaloop.processes.envio.process import encode_error
from lavaloop.processes.pong_io.game import HOLD, INFO_LEN, RamGame
from lavaloop.processes.pong_io.process import PongIO


@implements(proc=PongIO, protocol=AsyncProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPongIOModel(PyAsyncProcessModel):
    cmd_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    views_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    counts_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    host_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    error: np.ndarray = LavaPyType(np.ndarray, np.int32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.game = None
        self.failed = False

    def fail(self, exc: Exception) -> None:
        msg = encode_error(exc, len(self.error))
        self.error[: len(msg)] = msg
        self.failed = True

    def run_async(self):
        for _ in range(self.num_steps):
            self.window()

    def window(self):
        cmd = np.rint(self.cmd_in.recv()).astype(np.int64)
        reward = 0.0
        if not self.failed:
            try:   # an exception must not reach the runtime: Lava would hang
                if self.game is None:
                    p = self.proc_params
                    self.game = RamGame(p["env_fn"], p["env_seed"], p["ram_index"], p["action_map"],
                                        p["noop_steps"])
                if cmd[0] != HOLD:
                    reward = self.game.apply(cmd)
            except Exception as exc:  # noqa: BLE001
                self.fail(exc)
        if self.failed:
            self.views_out.send(np.zeros(self.views_out.shape))
            info = np.r_[np.zeros(INFO_LEN - 1), 1.0]
        else:
            self.views_out.send(self.game.shown(cmd[0] != HOLD))
            info = self.game.info(reward) if cmd[0] != HOLD else np.zeros(INFO_LEN)
        self.host_out.send(np.r_[self.counts_in.recv(), info])   # the chip answers within the step
