"""Pong from RAM as the dreaming agent sees it: 4 state bytes, 3 actions, place-cell coding."""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from lavaloop.deploy.dreaming import portable
from lavaloop.processes.pong_io.game import SILENT

RAM_INDEX = (49, 54, 21, 51)               # ball_x, ball_y, cpu_paddle_y, player_paddle_y
STATE_NAMES = ("ball_x", "ball_y", "cpu_paddle_y", "player_paddle_y")
ACTIONS = (0, 2, 3)                        # ALE NOOP, UP (RIGHT), DOWN (LEFT)
N_VARS, CELLS_PER_VAR = len(RAM_INDEX), 10
PHASE_ONE = 1 << 20                        # a generator spikes when its phase reaches this
VIEW_MARGIN = -SILENT                      # place-cell tables cover values -128..383 (dreams leave 0..255)
PATTERN_MS = 1000 / 33                     # the authors' generator pattern: int(rate / 33) spikes per 30.3 ms


def make_env(sticky: float = 0.25, frameskip: int = 4):
    """ALE Pong v5 with RAM observations, difficulty 0, the minimal action set."""
    import ale_py

    gym.register_envs(ale_py)
    return gym.make("ALE/Pong-v5", obs_type="ram", frameskip=frameskip,
                    repeat_action_probability=sticky, difficulty=0, full_action_space=False)


def state_of(ram: np.ndarray) -> np.ndarray:
    return np.asarray(ram, np.int64)[list(RAM_INDEX)]


def place_cell_rates(rate_scale: float = 7000.0, sigma: float = 20.0, spacing: float = 26.6,
                     offset: float = -10.0) -> np.ndarray:
    """Firing rate (Hz) of place cell i for every value x: rate_scale * N(x; spacing*i + offset, sigma).

    Shape (256 + 2 VIEW_MARGIN, 10): row x + VIEW_MARGIN holds the 10 cells of one state
    variable at value x (see processes.dynamics.place_cell_increments).
    """
    x = np.arange(-VIEW_MARGIN, 256 + VIEW_MARGIN, dtype=np.float64)[:, None]
    mu = spacing * np.arange(CELLS_PER_VAR) + offset
    return rate_scale * portable.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))


def increments(rates_hz: np.ndarray, dt_ms: float) -> np.ndarray:
    """Integer phase increments per time step of regular generators firing at `rates_hz`."""
    return np.rint(rates_hz * dt_ms * 1e-3 * PHASE_ONE).astype(np.int64)


def restart_increments(rates_hz: np.ndarray, dt_ms: float) -> np.ndarray:
    """Increments of the authors' FPGA generators, restarted at every upload.

    A generator at rate f gets n = int(f / 33) spikes spread evenly over one 30.3 ms pattern,
    the first at the pattern's start (src/agent.py, set_fpga_spike_gen_rate): n = 0 is silent,
    otherwise it spikes at the restart and then every 30.3 / max(n - 1, 1) ms. With a restart
    (processes.dynamics.restart_generators) at each window, a 10 ms window sees one spike per
    active generator and an 18 ms window one or two.
    """
    n = np.floor(np.asarray(rates_hz, np.float64) / 33.0)
    period_ms = PATTERN_MS / np.maximum(n - 1, 1)
    return np.where(n >= 1, np.rint(dt_ms / period_ms * PHASE_ONE), 0).astype(np.int64)
