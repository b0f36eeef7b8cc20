"""The chip without Lava: every run's game, generators and populations, stepped as one batch.

It calls the same functions as the Lava models (processes.dynamics, processes.pong_io.game),
so a run here is bit-exact with the same run on Lava.
"""
from __future__ import annotations

import numpy as np

from lavaloop.deploy.dreaming.chip import ChipSetup
from lavaloop.processes.dynamics import place_cell_increments, population_window
from lavaloop.processes.pong_io.game import RamGame


class EmulatedChip:
    """R independent runs (networks, chip instances, games) in lockstep."""

    def __init__(self, setups: list[ChipSetup]):
        self.setups = setups
        s0 = setups[0]
        self.window_steps, self.one, self.restart = s0.window, s0.phase_one, s0.restart
        self.table, self.action_increment = s0.table, s0.action_increment
        self.games = [RamGame(s.env_fn, s.env_seed, s.ram_index, s.action_map, s.noop_steps) for s in setups]
        keys = ("conn", "gain", "a_syn", "a_mem", "b_mem", "vth")
        self.params = {k: np.stack([s.network.params[k] for s in setups]) for k in keys}
        self.params["refractory"] = s0.network.params["refractory"]
        n, runs = s0.network.size, len(setups)
        self.state = {"i_syn": np.zeros((runs, n)), "v": np.zeros((runs, n)), "refr": np.zeros((runs, n), np.int64)}
        self.phase = np.zeros((runs, len(self.table[0]) * 8 + 3), np.int64)
        self.noise = [np.random.default_rng(s.noise_seed) for s in setups]
        self.noise_sigma = s0.noise_sigma

    def expect(self, windows: int) -> None:
        """Lava needs to know how many windows come next; the emulator does not."""

    def window(self, commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply one command per run, run one window; (spike counts (R, N), info (R, INFO_LEN))."""
        rewards = [game.apply(cmd) for game, cmd in zip(self.games, commands)]
        inc = place_cell_increments(np.stack([g.views for g in self.games]), self.table, self.action_increment)
        self.phase, counts = population_window(self.state, self.phase, inc, self.params, self.window_steps, self.one,
                                               self.restart, self.noise_step if self.noise_sigma > 0 else None)
        return counts, np.stack([g.info(r) for g, r in zip(self.games, rewards)])

    def noise_step(self) -> np.ndarray:
        """Membrane noise of one chip step, per run from its own generator (as each Lava chip draws it)."""
        return np.stack([self.noise_sigma * rng.standard_normal(self.state["v"].shape[1]) for rng in self.noise])

    def get_state(self) -> dict:
        return {"chip.i_syn": self.state["i_syn"], "chip.v": self.state["v"], "chip.refr": self.state["refr"],
                "chip.phase": self.phase, **{f"chip.game{r}": g.get_state() for r, g in enumerate(self.games)}}

    def noise_states(self) -> list[dict]:
        return [rng.bit_generator.state for rng in self.noise]

    def set_state(self, d: dict, noise_states: list[dict]) -> None:
        self.state = {"i_syn": d["chip.i_syn"], "v": d["chip.v"], "refr": d["chip.refr"]}
        self.phase = d["chip.phase"]
        for r, game in enumerate(self.games):
            game.set_state(d[f"chip.game{r}"])
        for rng, st in zip(self.noise, noise_states):
            rng.bit_generator.state = st

    def close(self) -> None:
        for g in self.games:
            g.env.close()
