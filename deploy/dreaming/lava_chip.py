"""The dreaming agent's chip on the Lava runtime: one run, one runtime for all its games.

    host ──Injector──▶ PongIO ──views──▶ PopulationChip
                         ◀──counts──┘
                         └──[counts, info]──▶ Extractor ──▶ host

One Lava step is one upload window: the host sends one command, PongIO applies it, and the
chip (generators and populations, fused as the chip holds them) runs the window's steps at
its dt and sends the spike counts, which PongIO sends on to the host with the game's
state and reward: four processes, one message each way per window. The Injector blocks
until the command arrives, so the chip never runs ahead of the host.
"""
from __future__ import annotations

import queue

import numpy as np

from lavaloop.deploy.dreaming.chip import ChipSetup
from lavaloop.processes.envio.process import decode_error
from lavaloop.processes.pong_io.game import COMMAND_LEN, INFO_LEN
from lavaloop.runtime import HANG_TIMEOUT_S, LavaRuntime, LavaRuntimeError, RuntimeHung, lava_config


class LavaChip:
    """A chip backend (see EmulatedChip) for a single run on Lava's CPU simulator."""

    def __init__(self, setup: ChipSetup):
        import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

        # isort: split
        from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
        from lava.proc.io.injector import Injector, PyLoihiInjectorModel

        from lavaloop.processes.pong_io.process import PongIO
        from lavaloop.processes.population_chip.process import PopulationChip

        s, p = setup, setup.network.params
        self.injector = Injector(shape=(COMMAND_LEN,), buffer_size=4)
        self.io = PongIO(env_fn=s.env_fn, env_seed=s.env_seed, ram_index=s.ram_index, action_map=s.action_map,
                         noop_steps=s.noop_steps, n_counts=setup.network.size)
        self.chip = PopulationChip(table=s.table, action_increment=s.action_increment, phase_one=s.phase_one,
                                   window=s.window, restart=s.restart, conn=p["conn"], gain=p["gain"],
                                   a_syn=p["a_syn"], a_mem=p["a_mem"], b_mem=p["b_mem"], vth=p["vth"],
                                   refractory=p["refractory"], noise_sigma=s.noise_sigma, noise_seed=s.noise_seed)
        self.host = Extractor(shape=(setup.network.size + INFO_LEN,), buffer_size=4)
        self.injector.out_port.connect(self.io.cmd_in)
        self.io.views_out.connect(self.chip.views_in)
        self.chip.counts_out.connect(self.io.counts_in)
        self.io.host_out.connect(self.host.in_port)
        self.runtime = LavaRuntime(self.io, lava_config({Injector: PyLoihiInjectorModel,
                                                         Extractor: PyLoihiExtractorModel}))
        self.hold = np.zeros(COMMAND_LEN)
        self.windows_left = 0
        try:
            self.runtime.start()
        except Exception as exc:
            self.close()
            raise LavaRuntimeError(f"could not start the Lava runtime: {exc}") from exc

    def expect(self, windows: int) -> None:
        """Start a non-blocking run of exactly `windows` windows (the next game or dream)."""
        self.runtime.run_async(windows)
        self.windows_left = windows

    def window(self, commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.windows_left <= 0:
            raise RuntimeError("LavaChip.window called outside an expected run")
        self.injector.send(np.asarray(commands[0], np.float64))
        msg = self._receive()
        counts, info = msg[:-INFO_LEN], msg[-INFO_LEN:]
        self.windows_left -= 1
        if self.windows_left == 0:
            self.io.wait()
        if info[-1] > 0:
            raise LavaRuntimeError(f"the game failed inside the Lava runtime: {self._error()}")
        return np.rint(counts).astype(np.int64)[None], info[None]

    def _receive(self) -> np.ndarray:
        """One window's message; never waits forever on a dead runtime."""
        try:   # sleeps on the port's queue until the message is there (a peek: receive() takes it)
            self.host.out_port.external_pipe_csp_recv_port._queue.get(timeout=HANG_TIMEOUT_S, peek=True)
        except queue.Empty:
            self.runtime.kill()
            raise RuntimeHung(f"the Lava runtime sent nothing for {HANG_TIMEOUT_S:.0f} s "
                              "(a process model probably failed); its processes were terminated") from None
        return self.host.receive()

    def _error(self) -> str:
        """The game's error message, after running out the current run on HOLDs."""
        for _ in range(self.windows_left):
            self.injector.send(self.hold)
            self._receive()
        if self.windows_left:
            self.io.wait()
        self.windows_left = 0
        return decode_error(self.io.error.get()) or "unknown error"

    def close(self, interrupted: bool = False) -> None:
        """Stop the runtime; after an interrupt, end its processes without the stop handshake."""
        if interrupted:
            self.runtime.kill()
        else:
            self.runtime.stop()
