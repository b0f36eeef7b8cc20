"""Mixed-signal chips (DYNAP-SE): regular spike generators and LIF neurons (the dreaming
agent's chip, and DQNs mapped onto one: `lavaloop.conversion.mixed_signal`).

These run in float64 with per-neuron constants drawn beforehand (mismatch, decay factors),
so every step is elementwise +, * and comparisons (bit-identical for any batch shape) plus
one product of 0/1 spikes with synaptic weights that is exact in any summation order:
integer multiplicities (the dreaming agent), or weights on the grid of `on_grid` (mapped
networks), whose sums need fewer than float64's 53 bits. The neuron update (`_lif_rows`)
and the generators (`_generator_rows`) are compiled with numba (no fast-math: the same
IEEE operations as numpy's); a whole upload window (`population_window`) runs in one call.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _generator_rows(phase, increment, one, spikes):
    """`regular_spikes` on (rows, channels) int64 arrays, phase and spikes updated in place."""
    for r in range(phase.shape[0]):
        for c in range(phase.shape[1]):
            x = phase[r, c] + increment[r, c]
            spikes[r, c] = 1 if x >= one else 0
            phase[r, c] = x - one if x >= one else x


def regular_spikes(phase: np.ndarray, increment: np.ndarray, one: int) -> tuple[np.ndarray, np.ndarray]:
    """Regular spike generators (integer phase accumulators): phase += increment; spike on reaching `one`.

    phase, increment (..., channels) int. Returns (new phase, 0/1 spikes), both int64.
    """
    phase, increment = np.broadcast_arrays(np.asarray(phase, np.int64), np.asarray(increment, np.int64))
    shape = phase.shape
    new = np.array(phase, np.int64).reshape(-1, shape[-1] if shape else 1)
    spikes = np.empty_like(new)
    _generator_rows(new, np.ascontiguousarray(increment).reshape(new.shape), one, spikes)
    return new.reshape(shape), spikes.reshape(shape)


class SparseConn(NamedTuple):
    """A connection matrix (in, n) stored by input row (CSR: input i reaches
    indices[indptr[i]:indptr[i + 1]] with weights data[...]); `sparse_conn` builds it.
    `synaptic_drive` (and so `lif_step`) takes it for `conn`: the same sums, bit for bit, with
    work in proportion to the synapses the spikes reach (the chip's synaptic events) instead of
    to in x n. Mapped networks are sparse: a pruned layer or copies of a network on their own
    cores use a quarter of the entries or fewer."""
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]


def sparse_conn(conn: np.ndarray) -> SparseConn:
    """`conn` (in, n) as a `SparseConn` of its nonzero entries (float64)."""
    conn = np.asarray(conn, np.float64)
    rows, cols = np.nonzero(conn)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=conn.shape[0]))]).astype(np.int64)
    return SparseConn(indptr, cols.astype(np.int64), conn[rows, cols], conn.shape)


@njit(cache=True, nogil=True)
def _sparse_drive_rows(spikes, indptr, indices, data, drive):
    """drive[r] += sum over spiking inputs i of spikes[r, i] x row i of the CSR matrix, in place."""
    for r in range(spikes.shape[0]):
        for i in range(spikes.shape[1]):
            s = spikes[r, i]
            if s != 0:
                for k in range(indptr[i], indptr[i + 1]):
                    drive[r, indices[k]] += s * data[k]


def synaptic_drive(spikes_in: np.ndarray, conn: np.ndarray | SparseConn) -> np.ndarray:
    """spikes_in @ conn for sparse spikes: the weighted sum of the rows of the spiking inputs.

    spikes_in (in,) or (..., in); conn (in, n) or (R, in, n) of integers or of weights on the
    grid of `on_grid`, or a `SparseConn`: the sums are exact, so a batch gives the rows of
    single steps bit for bit, and the sparse and dense forms give the same numbers.
    """
    out_shape = (*np.shape(spikes_in)[:-1], conn.shape[-1])
    if isinstance(conn, SparseConn):
        rows = np.ascontiguousarray(np.reshape(spikes_in, (-1, conn.shape[0])), np.float64)
        drive = np.zeros((len(rows), conn.shape[1]))
        _sparse_drive_rows(rows, conn.indptr, conn.indices, conn.data, drive)
        return drive.reshape(out_shape)
    s = np.atleast_2d(spikes_in)
    if conn.ndim == 2:   # one matrix for every row: one product (exact in any order, see above)
        return (s.astype(np.float64) @ conn).reshape(out_shape)
    c = np.broadcast_to(conn, (s.shape[0], *conn.shape[-2:]))
    drive = np.zeros((s.shape[0], c.shape[-1]))
    for r in range(s.shape[0]):
        idx = np.flatnonzero(s[r])
        if len(idx):
            drive[r] = s[r, idx] @ c[r, idx]
    return drive.reshape(out_shape)


GRID_BITS = 24   # analog weights are kept to multiples of 2**-GRID_BITS (far below any device's precision)


def on_grid(w: np.ndarray) -> np.ndarray:
    """w rounded to a multiple of 2**-GRID_BITS: with |w| < 2**12 and fewer than 2**16 inputs,
    a sum of such weights needs < 53 bits, so `spikes @ w` is exact in any order (any batch,
    any BLAS)."""
    return np.rint(np.asarray(w, np.float64) * 2.0 ** GRID_BITS) / 2.0 ** GRID_BITS


NEURON_CONSTANTS = ("gain", "a_syn", "a_mem", "b_mem", "vth")


@njit(cache=True, nogil=True)
def _lif_rows(i_syn, v, refr, drive, noise, gain, a_syn, a_mem, b_mem, vth, refractory, spikes):
    """`lif_step`'s neuron update on (rows, n) arrays, in place; noise has 0 rows for none, and
    each constant 1 row (shared) or one per row."""
    for r in range(i_syn.shape[0]):
        g, a, am, bm, th = (gain[r % gain.shape[0]], a_syn[r % a_syn.shape[0]], a_mem[r % a_mem.shape[0]],
                            b_mem[r % b_mem.shape[0]], vth[r % vth.shape[0]])
        for j in range(i_syn.shape[1]):
            i = a[j] * i_syn[r, j] + g[j] * drive[r, j]
            x = am[j] * v[r, j] + bm[j] * i
            if noise.shape[0]:
                x = x + noise[r, j]
            if refr[r, j] > 0:
                x = 0.0
            i_syn[r, j] = i
            if x >= th[j]:
                spikes[r, j], v[r, j], refr[r, j] = 1, 0.0, refractory
            else:
                spikes[r, j], v[r, j], refr[r, j] = 0, x, max(refr[r, j] - 1, 0)


def _rows(x, shape: tuple, dtype=np.float64, copy: bool = False) -> np.ndarray:
    """x broadcast to `shape` (..., n), as C-ordered (rows, n) (a view where it can be, unless `copy`)."""
    x = np.asarray(x, dtype)
    if x.shape != shape:
        x = np.broadcast_to(x, shape)
    return (np.array(x, order="C") if copy else np.ascontiguousarray(x)).reshape(-1, shape[-1])


def _constants(p: dict, shape: tuple) -> list[np.ndarray]:
    """The neuron constants of `p` as (1 or rows, n): shared rows stay one row."""
    out = []
    for key in NEURON_CONSTANTS:
        x = np.asarray(p[key], np.float64)
        out.append(x.reshape(1, -1) if x.ndim <= 1 and x.size == shape[-1] else _rows(x, shape))
    return out


def lif_step(state: dict, spikes_in: np.ndarray, p: dict, noise: np.ndarray | None = None) -> np.ndarray:
    """One step of leaky integrate-and-fire neurons with exponential (DPI-like) synapses.

    i_syn <- a_syn * i_syn + gain * (spikes_in @ conn)     conn: integer multiplicities (in, n),
                                                           or weights on the grid of `on_grid`
                                                           (dense, or a `SparseConn`)
    v     <- a_mem * v + (1 - a_mem) * i_syn (+ noise)     held at 0 while refractory
    spike when v >= vth; then v <- 0 for `refractory` steps.
    `state` (i_syn, v float64; refr int64; (..., n)) gets new arrays; returns the 0/1 spikes.
    The batch shape is that of state["v"] and the drive broadcast together; constants and
    noise broadcast to it.
    """
    drive = synaptic_drive(spikes_in, p["conn"])
    shape = np.shape(state["v"])
    if shape != drive.shape:
        shape = np.broadcast_shapes(shape, drive.shape)
    i_syn, v = _rows(state["i_syn"], shape, copy=True), _rows(state["v"], shape, copy=True)
    refr = _rows(state["refr"], shape, np.int64, copy=True)
    noise_rows = np.zeros((0, shape[-1])) if noise is None else _rows(noise, shape)
    spikes = np.empty(refr.shape, np.int64)
    _lif_rows(i_syn, v, refr, _rows(drive, shape), noise_rows, *_constants(p, shape), int(p["refractory"]), spikes)
    state["i_syn"], state["v"], state["refr"] = i_syn.reshape(shape), v.reshape(shape), refr.reshape(shape)
    return spikes.reshape(shape)


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


def fanout(conn: np.ndarray | SparseConn) -> np.ndarray:
    """Synapses every input (row of conn) drives: a spike of input i is fanout[i] synaptic events."""
    if isinstance(conn, SparseConn):
        return np.diff(conn.indptr)
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
    (`lif_step`; `state` gets new arrays).

    phase, increment (..., channels) int64; state (..., neurons); p["conn"] (channels, neurons)
    or (..., channels, neurons); noise: a function giving one step's membrane noise, or None
    (all the window's draws are taken first, in step order). Returns (phase, spike counts of
    the window (..., neurons)).
    """
    shape = np.shape(state["v"])
    n, rows = shape[-1], int(np.prod(shape[:-1], dtype=np.int64))
    channels = np.shape(increment)[-1]
    phase = _rows(restart_generators(increment, one) if restart else phase, (*shape[:-1], channels), np.int64,
                  copy=True)
    increment = _rows(increment, (*shape[:-1], channels), np.int64)
    conn = np.asarray(p["conn"], np.float64)
    conn = conn.reshape(-1, *conn.shape[-2:])
    if conn.shape[1:] != (channels, n) or conn.shape[0] not in (1, rows):
        raise ValueError(f"conn {np.shape(p['conn'])} does not connect {channels} generators to neurons {shape}")
    i_syn, v = _rows(state["i_syn"], shape, copy=True), _rows(state["v"], shape, copy=True)
    refr = _rows(state["refr"], shape, np.int64, copy=True)
    draws = (np.zeros((steps, 0, n)) if noise is None or steps == 0
             else np.stack([_rows(noise(), shape) for _ in range(steps)]))
    counts = np.zeros((rows, n), np.int64)
    _population_rows(phase, increment, conn, one, steps, i_syn, v, refr, draws,
                     *_constants(p, shape), int(p["refractory"]), counts)
    state["i_syn"], state["v"], state["refr"] = i_syn.reshape(shape), v.reshape(shape), refr.reshape(shape)
    return phase.reshape(*shape[:-1], -1), counts.reshape(shape)


@njit(cache=True, nogil=True)
def _population_rows(phase, increment, conn, one, steps, i_syn, v, refr, draws, gain, a_syn, a_mem, b_mem, vth,
                     refractory, counts):
    """`population_window` on (rows, .) arrays, in place; conn (1 or rows, channels, n)."""
    rows, n = i_syn.shape
    s_in = np.empty(phase.shape, np.int64)
    drive = np.empty((rows, n))
    spikes = np.empty((rows, n), np.int64)
    for t in range(steps):
        _generator_rows(phase, increment, one, s_in)
        drive[:] = 0.0
        for r in range(rows):
            c = conn[r % conn.shape[0]]
            for k in range(s_in.shape[1]):
                if s_in[r, k]:
                    for j in range(n):
                        drive[r, j] += c[k, j]
        _lif_rows(i_syn, v, refr, drive, draws[t], gain, a_syn, a_mem, b_mem, vth, refractory, spikes)
        counts += spikes
