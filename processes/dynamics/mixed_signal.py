"""Mixed-signal chips (DYNAP-SE): regular spike generators and LIF neurons (the dreaming
agent's chip, and DQNs mapped onto one: `lavaloop.conversion.mixed_signal`).

These run in float64 with per-neuron constants drawn beforehand (mismatch, decay factors),
so every step is elementwise +, * and comparisons (bit-identical for any batch shape) plus
one product of 0/1 spikes with synaptic weights that is exact in any summation order:
integer multiplicities (the dreaming agent), or weights on the grid of `on_grid` (mapped
networks), whose sums need fewer than float64's 53 bits.
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

    spikes_in (in,) or (R, in); conn (in, n) or (R, in, n) of integers or of weights on the
    grid of `on_grid`: the sums are exact, so a batch gives the rows of single steps bit for bit.
    """
    s = np.atleast_2d(spikes_in)
    if conn.ndim == 2:   # one matrix for every row: one product (exact in any order, see above)
        return (s.astype(np.float64) @ conn).reshape(*np.shape(spikes_in)[:-1], conn.shape[-1])
    c = np.broadcast_to(conn, (s.shape[0], *conn.shape[-2:]))
    drive = np.zeros((s.shape[0], c.shape[-1]))
    for r in range(s.shape[0]):
        idx = np.flatnonzero(s[r])
        if len(idx):
            drive[r] = s[r, idx] @ c[r, idx]
    return drive.reshape(*np.shape(spikes_in)[:-1], c.shape[-1])


GRID_BITS = 24   # analog weights are kept to multiples of 2**-GRID_BITS (far below any device's precision)


def on_grid(w: np.ndarray) -> np.ndarray:
    """w rounded to a multiple of 2**-GRID_BITS: with |w| < 2**12 and fewer than 2**16 inputs,
    a sum of such weights needs < 53 bits, so `spikes @ w` is exact in any order (any batch,
    any BLAS)."""
    return np.rint(np.asarray(w, np.float64) * 2.0 ** GRID_BITS) / 2.0 ** GRID_BITS


def lif_step(state: dict, spikes_in: np.ndarray, p: dict, noise: np.ndarray | None = None) -> np.ndarray:
    """One step of leaky integrate-and-fire neurons with exponential (DPI-like) synapses.

    i_syn <- a_syn * i_syn + gain * (spikes_in @ conn)     conn: integer multiplicities (in, n),
                                                           or weights on the grid of `on_grid`
    v     <- a_mem * v + (1 - a_mem) * i_syn (+ noise)     held at 0 while refractory
    spike when v >= vth; then v <- 0 for `refractory` steps.
    `state` (i_syn, v float64; refr int64) is updated in place; returns the 0/1 spikes.
    """
    state["i_syn"] = p["a_syn"] * state["i_syn"] + p["gain"] * synaptic_drive(spikes_in, p["conn"])
    v = p["a_mem"] * state["v"] + p["b_mem"] * state["i_syn"]
    if noise is not None:
        v = v + noise
    refractory = state["refr"] > 0
    v = np.where(refractory, 0.0, v)
    s = (v >= p["vth"]).astype(np.int64)
    state["v"] = np.where(s == 1, 0.0, v)
    state["refr"] = np.where(s == 1, p["refractory"], np.maximum(state["refr"] - 1, 0))
    return s


def generator_increments(payload: np.ndarray, gain: np.ndarray, one: int) -> np.ndarray:
    """Increments of the input spike generators of a mapped network (see `regular_spikes`).

    payload (..., n) int: the encoded observation. Each entry drives an ON generator at
    rint(payload * gain) / `one` spikes per step and an OFF generator at the negative part,
    both clipped to one spike per step; a last, bias generator spikes every step.
    Returns (..., 2 n + 1) int64.
    """
    x = np.rint(np.asarray(payload, np.float64) * gain)
    bias = np.full((*x.shape[:-1], 1), float(one))
    return np.concatenate([np.clip(x, 0, one), np.clip(-x, 0, one), bias], axis=-1).astype(np.int64)


def fanout(conn: np.ndarray) -> np.ndarray:
    """Synapses every input (row of conn) drives: a spike of input i is fanout[i] synaptic events."""
    return np.count_nonzero(conn, axis=1).astype(np.int64)


def mapped_layer_step(state: dict, spikes_below: np.ndarray, p: dict) -> np.ndarray:
    """One step of a mapped network's LIF layer (`lif_step`) whose last input is the bias
    generator, which spikes every step: spikes_below (..., n_in) 0/1, p["conn"] (n_in + 1, n)."""
    ones = np.ones((*np.shape(spikes_below)[:-1], 1), np.int64)
    return lif_step(state, np.concatenate([np.asarray(spikes_below, np.int64), ones], axis=-1), p)


def place_cell_increments(views: np.ndarray, table: np.ndarray, action_increment: int) -> np.ndarray:
    """Generator increments for what the place cells show.

    views (..., 9 or more) int: the agent's 4 state values, the world model's 4 state values
    and the world model's action (-1: none); further entries are ignored. table (rows, cells):
    increments per state value, row 0 being value -(rows - 256) // 2, so that dreamed states
    beyond the byte range still address it; values past the table's ends are clipped to them.
    Returns (..., 8 * cells + 3): agent cells, world-model cells, action channels.
    """
    views = np.asarray(views, np.int64)
    offset = (table.shape[0] - 256) // 2
    rows = np.clip(views[..., :8] + offset, 0, table.shape[0] - 1)
    cells = table[rows].reshape(*views.shape[:-1], -1)
    actions = (views[..., 8:9] == np.arange(3)) * action_increment
    return np.concatenate([cells, actions], axis=-1)


def restart_generators(increment: np.ndarray, one: int) -> np.ndarray:
    """Phases of generators whose spike trains restart now: each active generator (increment > 0)
    spikes on the next step, as a re-uploaded spike pattern starts with a spike (see
    `lavaloop.deploy.dreaming.pong.restart_increments`)."""
    return np.where(increment > 0, one, 0).astype(np.int64)


def population_window(state: dict, phase: np.ndarray, increment: np.ndarray, p: dict, steps: int, one: int,
                      restart: bool = False, noise=None) -> tuple[np.ndarray, np.ndarray]:
    """One upload window of the dreaming agent's chip: `steps` steps (dt each) of the input
    generators (`regular_spikes`, restarted first if `restart`) driving the LIF populations
    (`lif_step`; `state` updated in place).

    phase, increment (..., channels) int64; noise: a function giving one step's membrane noise,
    or None. Returns (phase, spike counts of the window (..., neurons)).
    """
    if restart:
        phase = restart_generators(increment, one)
    counts = np.zeros(np.shape(state["refr"]), np.int64)
    for _ in range(steps):
        phase, s_in = regular_spikes(phase, increment, one)
        counts += lif_step(state, s_in, p, None if noise is None else noise())
    return phase, counts
