"""Rate-coded integrate-and-fire neurons and their event-driven dense/convolutional synapses
(the converted DQNs: IFStack and the IF emulator)."""
from __future__ import annotations

import numpy as np
from numba import njit

from lavaloop.fixedpoint import int_max
from lavaloop.processes.dynamics.fixed import conv2d, dense, exact_float, exact_int, shift


def synapse_count(weight: np.ndarray, split_bits: int = 0) -> np.ndarray:
    """Synapses per connection: 1 where the weight is nonzero; with `split_bits` k, the
    connection's two synapses hi = sign(w) (|w| >> k) and lo = w - hi 2**k, each counted
    where nonzero (lavaloop.conversion.sigma_delta, split weights)."""
    w = np.asarray(weight, np.int64)
    if not split_bits:
        return (w != 0).astype(np.int64)
    hi = np.sign(w) * (np.abs(w) >> split_bits)
    return (hi != 0).astype(np.int64) + (w - (hi << split_bits) != 0)


def conv_fanout(synapses: np.ndarray, in_shape: tuple[int, int, int], stride: int) -> np.ndarray:
    """Outgoing synapses of every input of a valid strided convolution; synapses (O, C, kh, kw):
    per weight (`synapse_count`)."""
    _, _, kh, kw = synapses.shape
    c, h, w = in_shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    per_tap = synapses.sum(axis=0)                            # (C, kh, kw): output channels per tap
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
                 in_shape: tuple[int, int, int] | None = None, split_bits: int = 0):
        self.exp, self.stride, self.in_shape = exp, stride, in_shape
        self.conv = weight.ndim == 4
        self.spikes = max_input == 1
        if self.spikes:   # each input's outgoing weights contiguous: (C, kh*kw, O) or (in, out)
            wt = weight.transpose(1, 2, 3, 0).reshape(weight.shape[1], -1, weight.shape[0]) if self.conv else weight.T
            self.weight = np.ascontiguousarray(wt, exact_int(weight))
        else:
            self.weight = weight.astype(exact_float(weight, max_input))
        count = synapse_count(weight, split_bits)
        self.fanout = conv_fanout(count, in_shape, stride) if self.conv else count.sum(axis=0)
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
        return cls(p["weight"], p["weight_exp"], p["max_input"], p.get("stride"), p.get("in_shape"),
                   p.get("split_bits", 0))

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


def rewired(layer: dict, weight: np.ndarray, bias: np.ndarray) -> tuple[dict, Synapse] | None:
    """A layer dict and its Synapse with `weight` (mantissas) and `bias` replaced, or None if
    they are what the layer has: how a plastic readout (IFStack, SigmaDeltaStack and their
    emulators) takes the weights a host wrote."""
    if np.array_equal(weight, layer["weight"]) and np.array_equal(bias, layer["bias"]):
        return None
    new = {**layer, "weight": np.array(weight), "bias": np.array(bias)}
    return new, Synapse.from_params(new)


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
