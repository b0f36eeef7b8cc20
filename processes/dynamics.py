"""The integer arithmetic of every neuron and synapse: one source of truth.

Lava ProcessModels call these functions in `run_spk`; the fast emulator calls the very
same functions on batches. States and currents are int64; spike inputs are summed in the
narrowest exact integer type, graded inputs in an exact float product; a leading batch
dimension is allowed everywhere. The hot loops are compiled with numba.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from lavaloop.fixedpoint import int_max


def saturate(x: np.ndarray, bits: int) -> np.ndarray:
    """Clip to the range of a signed `bits`-bit integer."""
    hi = int_max(bits)
    return np.clip(x, -hi - 1, hi)


def shift(x: np.ndarray, exp) -> np.ndarray:
    """Multiply by 2**exp: left shift, or right shift rounding half up; `exp` may be per neuron."""
    if np.ndim(exp) == 0:
        if exp >= 0:
            return x << exp
        return (x + (1 << (-exp - 1))) >> -exp
    exp = np.asarray(exp, np.int64)
    left, right = np.maximum(exp, 0), np.maximum(-exp, 0)
    return np.where(exp >= 0, x << left, (x + ((1 << right) >> 1)) >> right)


def encode_input(obs: np.ndarray, scale: int, bits: int) -> np.ndarray:
    """Analog observation -> graded-spike payload round(obs * scale), saturated to `bits`."""
    return saturate(np.rint(np.asarray(obs, np.float64) * scale).astype(np.int64), bits)


def exact_float(weight: np.ndarray, max_input: int) -> np.dtype:
    """The narrowest float type in which weight @ x is exact for |x| <= max_input.

    Every partial sum of integers below 2**24 (float32) or 2**53 (float64) is exact.
    """
    fan_in = int(np.prod(weight.shape[1:]))
    bound = int(np.abs(weight.astype(np.int64)).max(initial=0)) * int(max_input) * fan_in
    if bound < 1 << 24:
        return np.dtype(np.float32)
    if bound < 1 << 53:
        return np.dtype(np.float64)
    raise ValueError(f"weights x inputs reach {bound}: beyond exact float arithmetic")


def exact_int(weight: np.ndarray) -> np.dtype:
    """The narrowest integer type that holds every sum of `weight`'s fan-in (spike inputs)."""
    fan_in = int(np.prod(weight.shape[1:]))
    bound = int(np.abs(weight.astype(np.int64)).max(initial=0)) * fan_in
    return np.dtype(np.int32 if bound < 1 << 31 else np.int64)


def dense(weight: np.ndarray, x: np.ndarray, exp: int) -> np.ndarray:
    """Synaptic current of a dense layer: (W_mant @ x) * 2**exp; W is (out, in).

    The product runs in float BLAS in W's dtype (integer W: float64). Exact when that
    dtype is `exact_float(W, max|x|)`; pass W already in it to avoid a copy per call.
    """
    w = weight if weight.dtype.kind == "f" else weight.astype(np.float64)
    return _to_int(np.asarray(x, w.dtype) @ w.T, exp)


def _to_int(acc: np.ndarray, exp: int) -> np.ndarray:
    """An exact float accumulator as C-ordered int64 (one pass), times 2**exp."""
    return shift(acc.astype(np.int64, order="C"), exp)


def conv2d(weight: np.ndarray, x: np.ndarray, stride: int, exp: int) -> np.ndarray:
    """Synaptic current of a valid (unpadded) strided convolution, (W_mant * x) * 2**exp.

    W is (O, C, kh, kw) as in PyTorch; x is (..., C, H, W); returns (..., O, Ho, Wo).
    The product is an im2col matrix product in W's dtype, exact under the same rule as
    `dense`; the patches are gathered channels-last, so every copied run is contiguous.
    """
    o, c, kh, kw = weight.shape
    w = weight.transpose(0, 2, 3, 1).reshape(o, -1)                  # columns ordered (ky, kx, c)
    dtype = w.dtype if w.dtype.kind == "f" else np.float64
    xl = np.moveaxis(x, -3, -1).astype(dtype, order="C")             # channels-last, one pass
    win = np.lib.stride_tricks.sliding_window_view(xl, (kh, kw), axis=(-3, -2))[..., ::stride, ::stride, :, :, :]
    cols = np.moveaxis(win, -3, -1)                                   # (..., Ho, Wo, kh, kw, C)
    cols = cols.reshape(*cols.shape[:-3], kh * kw * c)
    return _to_int(np.moveaxis(cols @ w.astype(dtype, copy=False).T, -1, -3), exp)


def conv_fanout(nonzero: np.ndarray, in_shape: tuple[int, int, int], stride: int) -> np.ndarray:
    """Outgoing synapses of every input of a valid strided convolution; nonzero (O, C, kh, kw) bool."""
    _, _, kh, kw = nonzero.shape
    c, h, w = in_shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    per_tap = nonzero.sum(axis=0)                             # (C, kh, kw): output channels per tap
    fanout = np.zeros(in_shape, np.int64)
    for ky in range(kh):
        for kx in range(kw):
            fanout[:, ky:ky + stride * ho:stride, kx:kx + stride * wo:stride] += per_tap[:, ky, kx, None, None]
    return fanout.ravel()


@njit(cache=True, nogil=True)
def _spike_dense(x, wt, out):
    """out[r] += sum of x[r, i] * wt[i] over the inputs i that spiked (x is 0/1; wt is W transposed)."""
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            if x[r, i] != 0:
                for o in range(wt.shape[1]):   # 2-D indexing: row views would not vectorize
                    out[r, o] += wt[i, o]


@njit(cache=True, nogil=True)
def _spike_conv(x, wt, hw, reach, out):
    """Convolution of 0/1 spikes, input by input: every x[r, c * hw + q] that spiked adds
    kernel tap wt[c, k] (wt is (C, kh*kw, O)) to output position p, for each (p, k) in
    reach[q] (ended by p = -1); out is (R, Ho*Wo, O), channels last."""
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            if x[r, i] == 0:
                continue
            c, q = i // hw, i % hw
            for j in range(reach.shape[1]):
                p, k = reach[q, j, 0], reach[q, j, 1]
                if p < 0:
                    break
                for o in range(wt.shape[2]):
                    out[r, p, o] += wt[c, k, o]


@njit(cache=True, nogil=True)
def _event_ops(x, fanout):
    """Sum of fanout[i] over every nonzero x[r, i]: the synaptic operations the inputs trigger."""
    ops = 0
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            if x[r, i] != 0:
                ops += fanout[i]
    return ops


def conv_reach(in_hw: tuple[int, int], kernel: tuple[int, int], stride: int) -> np.ndarray:
    """(H*W, n, 2): the (output position oy * Wo + ox, tap ky * kw + kx) pairs through which
    input position (y, x) reaches the output of a valid strided convolution, padded with -1."""
    (h, w), (kh, kw) = in_hw, kernel
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    pairs = [[(((y - ky) // stride) * wo + (x - kx) // stride, ky * kw + kx)
              for ky in range(kh) for kx in range(kw)
              if 0 <= y - ky < stride * ho and 0 <= x - kx < stride * wo
              and (y - ky) % stride == 0 and (x - kx) % stride == 0]
             for y in range(h) for x in range(w)]
    reach = np.full((h * w, max(map(len, pairs)), 2), -1, np.int64)
    for q, pq in enumerate(pairs):
        if pq:   # inputs beyond the last stride reach nothing
            reach[q, :len(pq)] = pq
    return reach


class Synapse:
    """The synapses of one layer, dense or convolutional, on flat inputs and outputs.

    `current(x)` maps x (..., n_in) to (..., n_out) (for a convolution: C*H*W -> O*Ho*Wo in
    C-major order, as torch.flatten). Spike inputs (`max_input` 1) are summed event by
    event, in integers: only the inputs that spiked cost anything. Graded inputs go through
    a float product in `exact_float(W, max_input)`; the last of them and its current are
    kept, so an input held for many steps costs one product.
    """

    def __init__(self, weight: np.ndarray, exp: int, max_input: int, stride: int | None = None,
                 in_shape: tuple[int, int, int] | None = None):
        self.exp, self.stride, self.in_shape = exp, stride, in_shape
        self.conv = weight.ndim == 4
        self.spikes = max_input == 1
        if self.spikes:   # each input's outgoing weights contiguous: (C, kh*kw, O) or (in, out)
            wt = weight.transpose(1, 2, 3, 0).reshape(weight.shape[1], -1, weight.shape[0]) if self.conv else weight.T
            self.weight = np.ascontiguousarray(wt, exact_int(weight))
        else:
            self.weight = weight.astype(exact_float(weight, max_input))
        nonzero = weight != 0
        self.fanout = conv_fanout(nonzero, in_shape, stride) if self.conv else nonzero.sum(axis=0)
        if self.conv:
            _, h, w = in_shape
            kh, kw = weight.shape[2:]
            self.out_hw = ((h - kh) // stride + 1, (w - kw) // stride + 1)
            self.reach = conv_reach((h, w), (kh, kw), stride)
        self.n_out = weight.shape[0] * (int(np.prod(self.out_hw)) if self.conv else 1)
        self._last = (None, None)

    @classmethod
    def from_params(cls, p: dict) -> Synapse:
        """From an IFStack layer dict (see processes.if_layers.process.IFStack)."""
        return cls(p["weight"], p["weight_exp"], p["max_input"], p.get("stride"), p.get("in_shape"))

    def current(self, x: np.ndarray) -> np.ndarray:
        if self.spikes:
            return self._spike_current(x)
        last_x, last_a = self._last
        if last_x is not None and last_x.shape == x.shape and np.array_equal(last_x, x):
            return last_a
        if self.conv:
            a = conv2d(self.weight, x.reshape(*x.shape[:-1], *self.in_shape), self.stride, self.exp)
            a = a.reshape(*x.shape[:-1], -1)
        else:
            a = dense(self.weight, x, self.exp)
        self._last = (x.copy(), a)
        return a

    def _spike_current(self, x: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(x.reshape(-1, x.shape[-1]), np.int8)
        if self.conv:
            acc = np.zeros((len(rows), self.out_hw[0] * self.out_hw[1], self.weight.shape[-1]), self.weight.dtype)
            _spike_conv(rows, self.weight, self.in_shape[1] * self.in_shape[2], self.reach, acc)
            acc = acc.transpose(0, 2, 1)                  # to C-major (O, Ho*Wo)
        else:
            acc = np.zeros((len(rows), self.n_out), self.weight.dtype)
            _spike_dense(rows, self.weight, acc)
        wide = np.array(acc, np.int64, order="C")         # reordered and widened in one pass
        return shift(wide.reshape(*x.shape[:-1], self.n_out), self.exp)

    def synops(self, x: np.ndarray) -> int:
        """Synaptic operations triggered by all the inputs x (..., n_in), summed."""
        return int(_event_ops(np.ascontiguousarray(x.reshape(-1, x.shape[-1])), self.fanout))


@njit(cache=True, nogil=True)
def _if_run(v, current, vth, lo, hi, spikes):
    """IF steps in place: v (N,); current (steps, N), or (1, N) held; spikes (steps, N) out."""
    held = current.shape[0] == 1
    for t in range(spikes.shape[0]):
        a = current[0] if held else current[t]
        for n in range(v.shape[0]):
            x = min(max(v[n] + a[n], lo), hi)
            fire = x >= vth[n]
            spikes[t, n] = fire
            v[n] = x - vth[n] if fire else x


def if_steps(v: np.ndarray, current: np.ndarray, vth, bits: int, steps: int | None = None) -> np.ndarray:
    """`steps` integrate-and-fire steps, no leak, reset by subtraction, states saturating to
    `bits`: v += a; s = v >= vth; v -= s * vth.

    v (int64, C order) is updated in place; current is (steps, *v.shape), or v.shape for one
    current held for `steps` steps; vth is a scalar or one threshold per neuron. Returns the
    0/1 spikes, (steps, *v.shape) int8.
    """
    if v.dtype != np.int64 or not v.flags.c_contiguous:
        raise TypeError("if_steps updates v in place: it must be C-ordered int64")
    held = steps is not None
    cur = np.ascontiguousarray(current, np.int64).reshape(1 if held else -1, v.size)
    spikes = np.empty((steps if held else len(cur), v.size), np.int8)
    hi = int_max(bits)
    _if_run(v.reshape(-1), cur, np.ascontiguousarray(np.broadcast_to(vth, v.shape), np.int64).reshape(-1),
            -hi - 1, hi, spikes)
    return spikes.reshape(len(spikes), *v.shape)


def if_step(v: np.ndarray, a_in: np.ndarray, vth, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """One step of `if_steps`: returns the new v (int64) and the 0/1 spikes (int8)."""
    v = np.array(v, np.int64)
    return v, if_steps(v, np.broadcast_to(a_in, v.shape), vth, bits, steps=1)[0]


def readout(count: np.ndarray, v: np.ndarray, vth: np.ndarray, mode: str) -> np.ndarray:
    """Decision values of output neurons that share one threshold, in membrane-state units.

    "robust": spike count * vth + residual potential (the total integrated input);
    "spike_count": the spike count alone.
    """
    if mode == "robust":
        return count * vth + v
    if mode == "spike_count":
        return count
    raise ValueError(f"unknown readout mode {mode!r}")


def continuous_action(rng: np.random.Generator, values: np.ndarray, frac_bits: int,
                      epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """(greedy, taken) actions in [-1, 1] of a continuous policy's readout: tanh of the
    fixed-point means (`frac_bits` fraction bits); with probability epsilon a uniform random
    action is taken. One uniform draw per decision, as in `lavaloop.rollout.epsilon_greedy`."""
    greedy = np.tanh(np.asarray(values, np.float64) * 2.0 ** -frac_bits)
    if rng.random() < epsilon:
        return greedy, rng.uniform(-1, 1, len(greedy))
    return greedy, greedy


# --- Mixed-signal chips (DYNAP-SE): regular spike generators and LIF neurons --------------
#
# These run in float64 with per-neuron constants drawn beforehand (mismatch, decay factors),
# so every step is elementwise +, * and comparisons (bit-identical for any batch shape) plus
# one product of 0/1 spikes with integer multiplicities (exact).

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


# --- Graded-spike layers and gated recurrent spiking neurons (GRSN) -----------------------
#
# Graded activations are integers with a power-of-two scale per tensor: value = n * 2**-f.
# A layer's accumulator W_mant @ x + b is in units 2**(weight_exp - f_in); `out_shift`
# moves it to the output's scale (the Lava models and the emulator receive it precomputed).

def graded_dense(weight: np.ndarray, x: np.ndarray, bias: np.ndarray, out_shift: int, bits: int,
                 relu: bool) -> np.ndarray:
    """Graded output of a dense layer: saturate(relu?(shift(W_mant @ x + b, out_shift)), bits)."""
    acc = dense(weight, x, 0) + bias
    out = shift(acc, out_shift)
    return saturate(np.maximum(out, 0) if relu else out, bits)


def sigmoid_lookup(table: np.ndarray, z: np.ndarray) -> np.ndarray:
    """sigmoid of fixed-point z (units of the table's input scale), clamped to the table's range."""
    half = len(table) // 2
    return table[np.clip(z, -half, half - 1) + half]


def grsn_step(h: np.ndarray, v: np.ndarray, gate: np.ndarray, cand: np.ndarray, gate_bits: int,
              tau_shift: int, vth: int, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One GRSN step in fixed point (state units: threshold = vth).

    h <- F h + (1 - F) C with F = gate * 2**-gate_bits (rounded); v <- v + (h - v) * 2**-tau_shift;
    spike s = v >= vth; soft reset v <- v - s * vth. States saturate to `bits`.
    """
    mix = gate * h + ((1 << gate_bits) - gate) * cand
    h = saturate(shift(mix, -gate_bits), bits)
    v = saturate(v + shift(h - v, -tau_shift), bits)
    s = (v >= vth).astype(np.int64)
    return h, v - s * vth, s


def grsn_gates(p: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forget gate (LUT sigmoid, units 2**-gate_bits) and candidate current (state units) from input x."""
    z = shift(dense(p["w_f"], x, 0) + p["b_f"], p["shift_f"])
    cand = shift(dense(p["w_c"], x, 0) + p["b_c"], p["shift_c"])
    return sigmoid_lookup(p["table"], z), saturate(np.maximum(cand, 0), p["bits"])


def prepare_stage(p: dict) -> dict:
    """A stage (an artifact's dict) ready to run, done once at build time: weights in the
    float type in which their products are exact (`exact_float`), and each input's fan-out."""
    names = ("weight",) if p["kind"] == "dense" else ("w_f", "w_c")
    q = {**p, **{k: p[k].astype(exact_float(p[k], p["max_input"])) for k in names}}
    q["fanout"] = sum((p[k] != 0).sum(axis=0) for k in names)
    return q


def run_stage(p: dict, x: np.ndarray, state: dict) -> np.ndarray:
    """One stage of a graded/GRSN network on its input x (..., n_in); GRSN state is updated in `state`.

    "dense": graded_dense. "grsn": the first `n_in` inputs drive the GRSN gates, the rest
    pass through; the output is [spikes * payload, passthrough] (the spikes as graded
    spikes in the passthrough's scale, so the next layer reads one format).
    """
    if p["kind"] == "dense":
        return graded_dense(p["weight"], x, p["bias"], p["out_shift"], p["bits"], p["relu"])
    n = p["n_in"]
    gate, cand = grsn_gates(p, x[..., :n])
    state["h"], state["v"], s = grsn_step(state["h"], state["v"], gate, cand, p["gate_bits"],
                                          p["tau_shift"], p["vth"], p["bits"])
    return np.concatenate([s * p["payload"], x[..., n:]], axis=-1)


def stage_ops(p: dict, x: np.ndarray) -> dict[str, np.ndarray]:
    """Operations of one prepared stage on input x (..., n_in): multiply-accumulates driven by
    graded inputs, accumulates driven by binary spikes (the first `spike_inputs` inputs of a
    dense stage), and neuron updates. Zero inputs cost nothing (event-driven)."""
    nz, fan = x != 0, p["fanout"]
    if p["kind"] == "dense":
        k = p.get("spike_inputs", 0)
        ac = nz[..., :k] @ fan[:k]
        mac = nz[..., k:] @ fan[k:]
        return {"mac": mac, "ac": ac, "neuron": np.full(ac.shape, len(p["bias"]))}
    n, hidden = p["n_in"], len(p["b_f"])
    mac = nz[..., :n] @ fan + 2 * hidden          # gate synapses, then F*h and (1-F)*C
    return {"mac": mac, "ac": np.zeros_like(mac), "neuron": np.full(mac.shape, hidden)}
