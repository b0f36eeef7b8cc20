"""The dreaming agent's chip on the Lava runtime: one run, one runtime for all its games.

    host ──command──▶ PongIO ──views──▶ PopulationChip
    host ◀──[counts, info]──┘ ◀──counts──┘

One Lava step is one upload window: the host sends one command, PongIO applies it, and the
chip (generators and populations, fused as the chip holds them) runs the window's steps at
its dt and sends the spike counts, which PongIO sends on to the host with the game's
state and reward: two processes, four messages per window.

Both ProcessModels are asynchronous (Lava's AsyncProtocol): each window waits for its
messages (PongIO for the host's command, the chip for the views, PongIO for the counts),
so the order of events is set by the data, exactly as under the Loihi protocol, without
the runtime's per-step handshake with every process (two messages per process and step).
The graph never runs ahead of the host: PongIO blocks until the command arrives.
"""
from __future__ import annotations

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
        from lavaloop.processes.pong_io.process import PongIO
        from lavaloop.processes.population_chip.process import PopulationChip

        s, p = setup, setup.network.params
        self.io = PongIO(env_fn=s.env_fn, env_seed=s.env_seed, ram_index=s.ram_index, action_map=s.action_map,
                         noop_steps=s.noop_steps, n_counts=setup.network.size)
        self.chip = PopulationChip(table=s.table, action_increment=s.action_increment, phase_one=s.phase_one,
                                   window=s.window, restart=s.restart, conn=p["conn"], gain=p["gain"],
                                   a_syn=p["a_syn"], a_mem=p["a_mem"], b_mem=p["b_mem"], vth=p["vth"],
                                   refractory=p["refractory"], noise_sigma=s.noise_sigma, noise_seed=s.noise_seed)
        self.io.views_out.connect(self.chip.views_in)
        self.chip.counts_out.connect(self.io.counts_in)
        self.runtime = LavaRuntime(self.io, lava_config())
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
        self.io.send(commands[0])
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
        if not self.io.wait_message(HANG_TIMEOUT_S):
            self.runtime.kill()
            raise RuntimeHung(f"the Lava runtime sent nothing for {HANG_TIMEOUT_S:.0f} s "
                              "(a process model probably failed); its processes were terminated")
        return self.io.receive()

    def _error(self) -> str:
        """The game's error message, after running out the current run on HOLDs."""
        for _ in range(self.windows_left):
            self.io.send(self.hold)
            self._receive()
        if self.windows_left:
            self.io.wait()
        self.windows_left = 0
        return decode_error(self.io.error.get()) or "unknown error"

    def close(self, interrupted: bool = False) -> None:
        """Stop the runtime; after an interrupt, or in the middle of a run (its processes wait
        for the host's next command and would not hear a stop), end its processes without the
        stop handshake."""
        if interrupted or self.windows_left > 0:
            self.runtime.kill()
        else:
            self.runtime.stop()
