"""Fixed-point building blocks: saturation, shifts, input encoding and exact synaptic products."""
from __future__ import annotations

import numpy as np

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
