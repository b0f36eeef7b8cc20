"""Mixed-signal chips (DYNAP-SE): regular spike generators and LIF neurons (the dreaming agent's chip).

These run in float64 with per-neuron constants drawn beforehand (mismatch, decay factors),
so every step is elementwise +, * and comparisons (bit-identical for any batch shape) plus
one product of 0/1 spikes with integer multiplicities (exact).
"""
from __future__ import annotations

import numpy as np


def regular_spikes(phase: np.ndarray, increment: np.ndarray, one: int) -> tuple[np.ndarray, np.ndarray]:
    """Regular spike generators (integer phase accumulators): phase += increment; spike on reaching `one`."""
    phase = phase + increment
    s = (phase >= one).astype(np.int64)
    return phase - s * one, s


def synaptic_drive(spikes_in: np.ndarray, conn: np.ndarray) -> np.ndarray:
    """spikes_in @ conn for sparse spikes: the weighted sum of the rows of the spiking inputs.

    spikes_in (in,) or (R, in); conn (in, n) or (R, in, n). Exact: the sums are of integers.
    """
    s = np.atleast_2d(spikes_in)
    c = np.broadcast_to(conn, (s.shape[0], *conn.shape[-2:]))
    drive = np.zeros((s.shape[0], c.shape[-1]))
    for r in range(s.shape[0]):
        idx = np.flatnonzero(s[r])
        if len(idx):
            drive[r] = s[r, idx] @ c[r, idx]
    return drive.reshape(*np.shape(spikes_in)[:-1], c.shape[-1])


def lif_step(state: dict, spikes_in: np.ndarray, p: dict, noise: np.ndarray | None = None) -> np.ndarray:
    """One step of leaky integrate-and-fire neurons with exponential (DPI-like) synapses.

    i_syn <- a_syn * i_syn + gain * (spikes_in @ conn)     conn: integer multiplicities (in, n)
    v     <- a_mem * v + (1 - a_mem) * i_syn (+ noise)     held at 0 while refractory
    spike when v >= vth; then v <- 0 for `refractory` steps.
    `state` (i_syn, v float64; refr int64) is updated in place; returns the 0/1 spikes.
    """
    drive = synaptic_drive(spikes_in, p["conn"])
    state["i_syn"] = p["a_syn"] * state["i_syn"] + p["gain"] * drive
    v = p["a_mem"] * state["v"] + p["b_mem"] * state["i_syn"]
    if noise is not None:
        v = v + noise
    refractory = state["refr"] > 0
    v = np.where(refractory, 0.0, v)
    s = (v >= p["vth"]).astype(np.int64)
    state["v"] = np.where(s == 1, 0.0, v)
    state["refr"] = np.where(s == 1, p["refractory"], np.maximum(state["refr"] - 1, 0))
    return s


def place_cell_increments(views: np.ndarray, table: np.ndarray, action_increment: int) -> np.ndarray:
    """Generator increments for what the place cells show.

    views (..., 9) int: the agent's 4 state bytes, the world model's 4 state bytes and the
    world model's action (-1: none). table (256, cells): increments per byte value.
    Returns (..., 8 * cells + 3): agent cells, world-model cells, action channels.
    """
    views = np.asarray(views, np.int64)
    cells = table[views[..., :8]].reshape(*views.shape[:-1], -1)
    actions = (views[..., 8:9] == np.arange(3)) * action_increment
    return np.concatenate([cells, actions], axis=-1)
