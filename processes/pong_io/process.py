"""PongIO: a RAM-observed Atari game inside the Lava runtime, driven by host commands."""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

import queue
from collections.abc import Callable, Sequence

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

from lavaloop.processes.envio.process import ERROR_LEN
from lavaloop.processes.pong_io.game import COMMAND_LEN, INFO_LEN, VIEW_LEN


class PongIO(AbstractProcess):
    """An Atari game in the runtime, talking to the host directly: the host's command for a
    step comes in on `cmd_in` (see game.RamGame), what the place cells show goes out on
    `views_out`; the chip's spike counts of the same step come in on `counts_in`, and the host
    gets one message per step on `host_out`: [counts, state, reward, error flag] (state and
    reward are zeros on HOLD steps; the error flag is set on every step once failed).
    `cmd_in` and `host_out` are the host's pipes (`send`, `receive`), so no Injector or
    Extractor process stands between. An exception raised by the game is stored in `error`
    (ASCII codes) and flagged, never raised into the runtime.

    Parameters
    ----------
    env_fn: makes the game's env. env_seed: its seed. ram_index: the RAM bytes of the state.
    action_map: command action -> env action. noop_steps: no-ops after each reset.
    n_counts: neurons whose counts the chip sends.
    """

    def __init__(self, *, env_fn: Callable, env_seed: int, ram_index: Sequence[int],
                 action_map: Sequence[int], noop_steps: int, n_counts: int, name: str = "pong_io"):
        super().__init__(env_fn=env_fn, env_seed=env_seed, ram_index=list(ram_index),
                         action_map=list(action_map), noop_steps=noop_steps, name=name)
        self.cmd_in = InPort(shape=(COMMAND_LEN,))
        self.cmd_in.flag_external_pipe(buffer_size=2)
        self.views_out = OutPort(shape=(VIEW_LEN,))
        self.counts_in = InPort(shape=(n_counts,))
        self.host_out = OutPort(shape=(n_counts + INFO_LEN,))
        self.host_out.flag_external_pipe(buffer_size=2)
        self.error = Var(shape=(ERROR_LEN,), init=0)

    def send(self, command: np.ndarray) -> None:
        """Hand the running graph one step's command (blocks while the pipe is full)."""
        self.cmd_in.external_pipe_csp_send_port.send(np.rint(command).astype(np.int32))

    def wait_message(self, timeout: float) -> bool:
        """Whether a step's message for the host arrives within `timeout` seconds (not taken)."""
        try:
            self.host_out.external_pipe_csp_recv_port._queue.get(timeout=timeout, peek=True)
        except queue.Empty:
            return False
        return True

    def receive(self) -> np.ndarray:
        """The next step's message for the host (blocks until it is there)."""
        return self.host_out.external_pipe_csp_recv_port.recv()
