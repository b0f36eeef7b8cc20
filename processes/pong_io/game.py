"""The game side of PongIO: commands from the host, what the place cells show, what the host hears.

Shared by the Lava model and the emulator, so both step the environment identically.
A command is 11 integers: [op, action, agent view (4), world-model view (4), model action].
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

HOLD, RESET, STEP, SHOW, STEP_SHARED, STEP_AGENT = 0, 1, 2, 3, 4, 5
SILENT = -128      # a view value no place cell responds to (the tables reach down to it: dreaming.pong)
COMMAND_LEN = 11
VIEW_LEN = 10      # agent state (4), world-model state (4), world-model action (-1: none), new command (0/1)
INFO_LEN = 6       # state (4), reward, error flag


def command(op: int, action: int = 0, agent: Sequence[int] = (0,) * 4, model: Sequence[int] = (0,) * 4,
            model_action: int = -1) -> np.ndarray:
    return np.array([op, action, *agent, *model, model_action], np.int64)


class RamGame:
    """A RAM-observed Atari game driven by host commands.

    RESET: reset, then `noop_steps` NOOPs; both views show the state, no action.
    STEP a: the world model is shown (current state, a); the game steps; the agent sees the new state.
    STEP_SHARED a: the game steps; both views show the new state and the model's action
    channel shows a (the authors' chip: one set of place cells for both populations).
    STEP_AGENT a: the game steps; the agent sees the new state, the world model nothing.
    SHOW: both views as given (dreams). HOLD: nothing changes.
    """

    def __init__(self, env_fn: Callable, seed: int, ram_index: Sequence[int], action_map: Sequence[int],
                 noop_steps: int):
        self.env = env_fn().unwrapped   # the bare ALE env: wrappers cost more than the game
        self.env.reset(seed=seed)       # seeds the emulator once; later resets continue its RNG
        self.ram_index, self.action_map, self.noop_steps = list(ram_index), list(action_map), noop_steps
        self.views = np.array([0] * 8 + [-1], np.int64)
        self.state = np.zeros(4, np.int64)

    def observe(self, ram) -> None:
        self.state = np.asarray(ram, np.int64)[self.ram_index]

    def apply(self, cmd: np.ndarray) -> float:
        """Carry out one command; returns the reward it earned."""
        op, reward = int(cmd[0]), 0.0
        if op == RESET:
            ram, _ = self.env.reset()
            for _ in range(self.noop_steps):
                ram, *_ = self.env.step(self.action_map[0])
            self.observe(ram)
            self.views = np.concatenate([self.state, self.state, [-1]])
        elif op == STEP:
            action = int(cmd[1])
            self.views[4:] = np.concatenate([self.state, [action]])
            ram, reward, *_ = self.env.step(self.action_map[action])
            self.observe(ram)
            self.views[:4] = self.state
        elif op == STEP_SHARED:
            action = int(cmd[1])
            ram, reward, *_ = self.env.step(self.action_map[action])
            self.observe(ram)
            self.views = np.concatenate([self.state, self.state, [action]])
        elif op == STEP_AGENT:
            ram, reward, *_ = self.env.step(self.action_map[int(cmd[1])])
            self.observe(ram)
            self.views = np.concatenate([self.state, [SILENT] * 4, [-1]])
        elif op == SHOW:
            self.views = np.asarray(cmd[2:], np.int64).copy()
        return float(reward)

    def shown(self, new_command: bool) -> np.ndarray:
        """What the place cells get this step (VIEW_LEN ints): the views and whether a command
        arrived (generators that restart on every upload restart then)."""
        return np.append(self.views, int(new_command))

    def info(self, reward: float, error: bool = False) -> np.ndarray:
        return np.concatenate([self.state, [reward, float(error)]]).astype(np.float64)

    def get_state(self) -> np.ndarray:
        """The emulator's full state (RNG included) and the views, as bytes."""
        ale = self.env.unwrapped.ale
        blob = np.frombuffer(ale.cloneState(include_rng=True).__getstate__(), np.uint8)
        return np.concatenate([blob, self.views.astype("<i8").view(np.uint8), self.state.astype("<i8").view(np.uint8)])

    def set_state(self, data: np.ndarray) -> None:
        import ale_py

        blob, views, state = data[:-104], data[-104:-32], data[-32:]
        st = ale_py.ALEState.__new__(ale_py.ALEState)
        st.__setstate__(blob.tobytes())
        self.env.unwrapped.ale.restoreState(st)
        self.views = views.view("<i8").astype(np.int64).copy()
        self.state = state.view("<i8").astype(np.int64).copy()
