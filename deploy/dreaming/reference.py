"""The authors' protocol (`protocol="reference"`), as their released code runs it.

Read from blakeyy/neuromorphic_dreaming (train.ipynb cell 7, src/agent.py); the settings that
differ from ours are `agent.REFERENCE`. The window structure is what this class adds:

* One set of place cells shows the same state to both populations (STEP_SHARED, SHOW x, x).
* A real step is an agent upload (`step_policy`) and, with dreaming, a world-model upload of
  (state, action) (`step_model`) before the env steps; the world model learns every step.
* Spike counts accumulate in one buffer per population (`get_latest_spike_rates` adds every
  event, L335-347); reading a population's half clears only that half (L203, L240). So with
  model uploads, the agent counts its spikes of the preceding model upload plus its own, and
  the world model those of the preceding agent upload plus its own (`two_upload_counts`).
  Both halves are cleared at each game's start, not at a dream's.
* A dream: from a real reset + 18 NOOPs, 50 steps of (agent upload, model upload), the state
  moved by the predicted change, the predicted reward as the policy's reward; one policy
  update after the game and one after the dream (`second_adam_step`).

Our chip applies a command at the start of a window, so the env step of a real step opens
the next agent upload; the last step of a game needs one window more than the authors' chip
(its spikes are not counted, as the authors' next read comes after a reset).
"""
from __future__ import annotations

import numpy as np

from lavaloop.deploy.dreaming.agent import DreamingAgent
from lavaloop.processes.pong_io.game import RESET, SHOW, STEP_SHARED, command


class ReferenceAgent(DreamingAgent):
    """DreamingAgent with the authors' uploads, shared place cells and spike buffer."""

    def __init__(self, cfg, chip, first_run: int = 0, runs: int | None = None):
        super().__init__(cfg, chip, first_run, runs)
        self.buffer = np.zeros((self.runs, 2 * self.h), np.int64)   # agent half, world-model half

    def _upload(self, cmds: list[np.ndarray], reader: str | None):
        """One window; `reader` ("agent", "model" or None: uncounted) reads and clears its half.

        Returns (the reader's counts or None, info)."""
        agent, model, info = self._window(cmds)
        if reader is None:
            return None, info
        if not self.cfg.counts_two_uploads:
            self.buffer[:] = 0
        self.buffer[:, :self.h] += agent
        self.buffer[:, self.h:] += model
        half = slice(0, self.h) if reader == "agent" else slice(self.h, 2 * self.h)
        counts = self.buffer[:, half].copy()
        self.buffer[:, half] = 0
        return counts, info

    def play(self, game: int) -> np.ndarray:
        cfg, R = self.cfg, self.runs
        weight = 0.0 if game < cfg.silent_games else 1.0
        self.policy.start_episode(keep_gradient=self.dream_gradient_waits)
        self.model.start_episode()
        self.buffer[:] = 0
        steps = cfg.agent_steps
        self.chip.expect(1 + steps * (2 if cfg.model_windows else 1))
        counts, info = self._upload([command(RESET)] * R, "agent")
        state = info[:, :4]
        actions = self.policy.act(counts)
        total = np.zeros(R)
        for k in range(steps):
            self.visited[:, k] = state
            if cfg.model_windows:
                shown = [command(SHOW, 0, s, s, a) for s, a in zip(state, actions)]
                model_counts, _ = self._upload(shown, "model")
                delta_pred, reward_pred = self.model.predict(model_counts, actions)
            last = k + 1 == steps
            counts, info = self._upload([command(STEP_SHARED, a) for a in actions], None if last else "agent")
            reward, new_state = info[:, 4], info[:, :4]
            total += reward
            self.policy.reward(reward, weight)
            if cfg.model_windows:
                self.model.learn(delta_pred, reward_pred, new_state - state, reward, actions)
            state = new_state
            if not last:
                actions = self.policy.act(counts)
        self.policy.update()
        return total

    def dream_agent_counts(self, cmds):
        return self._upload(cmds, "agent")

    def dream_model_counts(self, cmds):
        return self._upload(cmds, "model")[0]

    @staticmethod
    def dream_agent_window(new, shown, actions):
        """The shared place cells show the new state to both populations; the action channel keeps its last."""
        return [command(SHOW, 0, n, n, a) for n, a in zip(new, actions)]

    def state(self) -> dict:
        return {**super().state(), "reference.buffer": self.buffer}

    def load(self, d: dict) -> None:
        super().load(d)
        self.buffer = d["reference.buffer"]

