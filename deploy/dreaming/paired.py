"""Our protocol with paired windows (`paired_windows=True`): real steps and dream steps alike.

Every step, real or dreamed, is two windows: the agent's (it sees the state, the world model
sees nothing) and the world model's (it sees the state and the chosen action, the agent sees
nothing). So the world model's readouts meet one time profile, one window of (state, action)
after one window of silence, in real games, where they learn, and in dreams, where they are
used; in the one-window protocol a model input lasts one window in games and two in dreams.
A real step's env step opens the next agent window (STEP_AGENT); the model's readout is the
same as in our one-window protocol.
"""
from __future__ import annotations

import numpy as np

from lavaloop.deploy.dreaming.agent import DreamingAgent
from lavaloop.processes.pong_io.game import RESET, SHOW, SILENT, STEP_AGENT, command

QUIET = (SILENT,) * 4


class PairedAgent(DreamingAgent):
    """DreamingAgent whose steps are (agent window, world-model window) pairs; a game's or a
    dream's first agent window is its reset window."""

    @staticmethod
    def dream_model_window(shown, actions) -> list[np.ndarray]:
        return [command(SHOW, 0, QUIET, s, a) for s, a in zip(shown, actions)]

    @staticmethod
    def dream_agent_window(new, shown, actions) -> list[np.ndarray]:
        return [command(SHOW, 0, n, QUIET) for n in new]

    def play(self, game: int) -> np.ndarray:
        cfg, R = self.cfg, self.runs
        weight = 0.0 if game < cfg.silent_games else 1.0
        self.policy.start_episode(keep_gradient=self.dream_gradient_waits)
        self.model.start_episode()
        self.chip.expect(1 + 2 * cfg.agent_steps)
        agent, _, info = self._window([command(RESET)] * R)
        state = info[:, :4]
        actions = self.policy.act(agent)
        total = np.zeros(R)
        for k in range(cfg.agent_steps):
            self.visited[:, k] = state
            _, model, _ = self._window(self.dream_model_window(state, actions))
            delta_pred, reward_pred = self.model.predict(model, actions)
            agent, _, info = self._window([command(STEP_AGENT, a) for a in actions])
            reward, new_state = info[:, 4], info[:, :4]
            total += reward
            self.policy.reward(reward, weight)
            self.model.learn(delta_pred, reward_pred, new_state - state, reward, actions)
            state = new_state
            if k + 1 < cfg.agent_steps:
                actions = self.policy.act(agent)
        self.policy.update()
        return total
