"""The readout a host trains: float parameters on the host, integers on the chip.

Rate-coded: the output layer with the "robust" readout integrates its input for T steps;
its decision value is the integrated input, R = v_init + sum_t round(W_mant s_t 2**exp) +
T bias (state units). With features x = spike counts / T of the layer below, the host
models R / (T vth) = W x + b + v_init / (T vth), W = W_mant 2**exp / vth, b = bias / vth.
Sigma-delta: the output layer's value is R = W_mant F + bias, F the messages it received
since the episode began (the last hidden layer's activations, in message units m); with
x = F / m, R / S = W x + b, W = W_mant m / S, b = bias / S (S: its state scale). Either
way these are the layer's `effective()` weights, and the source's Q-values are `out_scale`
times the values (the conversion's normalization of the last layer).

Rounding alone is not good enough for a readout: a Q-network's values differ between actions
by far less than their common level (CartPole: ~1 %), and independent rounding errors of
hundreds of weights add up to more than that gap. Given features the readout sees,
`quantize` rounds one weight at a time and moves the not yet rounded ones to cancel the
error on those features (the optimal-brain-quantization update of GPTQ, Frantar et al.
2023), the bias last at its finer step. docs/adapt.md has the measurements;
tests/test_adapt.py checks the effect. Mantissas are clipped
to the profile's weight width, biases to its state width.

`headroom_bits` makes room for weights to grow that many bits beyond the converted
network's largest before they clip, at as much coarser resolution: the rate-coded layer's
exponent is raised, the sigma-delta layer's state scale lowered (it has no exponent). Both
are the chip's layer configuration, fixed for a run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lavaloop.errors import LavaloopError
from lavaloop.fixedpoint import int_max


@dataclass
class Readout:
    """The output layer of a converted DQN as a trainable linear readout: decision values
    W x + b + offset (normalized units) of features x; the chip stores W as mantissas of
    `w_step` and b as integers of `b_step`.

    Parameters
    ----------
    w_step, b_step: per output neuron, the normalized weight of one mantissa unit and the
        normalized bias of one state unit.
    x_scale: feature counts per normalized unit (T for spike counts; the message scale of
        the last hidden layer for sigma-delta).
    offset: per output neuron, a constant in the values (the rate code's v_init / (T vth)).
    weight_bits, state_bits: the widths (weights: the profile's plus the layer's split bits).
    out_scale: source Q-values per normalized unit.
    chip: what the output layer's configuration becomes for the run (`with_readout`):
        {"weight_exp": e} (rate-coded) or {"state_scale": s} (sigma-delta).
    """

    w_step: np.ndarray
    b_step: np.ndarray
    x_scale: float
    offset: np.ndarray
    weight_bits: int
    state_bits: int
    out_scale: float
    chip: dict

    @classmethod
    def of(cls, art, timesteps: int | None = None, headroom_bits: int = 0) -> Readout:
        """The readout of `art` (rate-coded: run at T = `timesteps`), with `headroom_bits` of
        room for its weights to grow; a LavaloopError if it cannot be trained."""
        check_trainable(art)
        q, prof = art.layers[-1], art.profile
        out_scale = float(art.manifest["normalization"]["scales"][-1])
        if art.kind == "sigma-delta":     # no exponent: coarser output states make the room
            state_scale = q.state_scale / 2 ** headroom_bits
            n = len(q.bias)
            return cls(np.full(n, q.in_scale / state_scale), np.full(n, 1 / state_scale), q.in_scale, np.zeros(n),
                       prof.weight_bits + q.split_bits, prof.state_bits, out_scale, {"state_scale": state_scale})
        exp = min(q.weight_exp + headroom_bits, prof.weight_exp_max)
        vth = q.vth.astype(np.float64)
        return cls(2.0 ** exp / vth, 1 / vth, float(timesteps), q.v_init / (timesteps * vth), prof.weight_bits,
                   prof.state_bits, out_scale, {"weight_exp": exp})

    def quantize(self, w: np.ndarray, b: np.ndarray, x: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mantissa, bias) of float (W, b) by the profile's rule, clipped to its widths.

        With features x (n, in) the rounding errors are compensated on them (see the module);
        without, each value is rounded on its own.
        """
        m_max, s_max = int_max(self.weight_bits), int_max(self.state_bits)
        steps = np.c_[np.repeat(self.w_step[:, None], w.shape[1], axis=1), self.b_step]
        limits = np.r_[np.full(w.shape[1], m_max), s_max]
        values = np.c_[w, b]
        if x is None or len(x) == 0:
            q = np.clip(np.rint(values / steps), -limits, limits)
        else:
            q = compensated_rounding(values, steps, limits, np.c_[x, np.ones(len(x))])
        return q[:, :-1].astype(np.int64), q[:, -1].astype(np.int64)

    def features(self, counts: np.ndarray) -> np.ndarray:
        """What the readout received (..., in) in normalized units."""
        return np.asarray(counts, np.float64) / self.x_scale

    def q_values(self, w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The host's model of the chip's values, in the source's Q units: (..., out)."""
        return self.out_scale * (x @ w.T + b + self.offset)


def compensated_rounding(values: np.ndarray, steps: np.ndarray, limits: np.ndarray, a: np.ndarray,
                         damp: float = 0.01) -> np.ndarray:
    """Integers q (rows x cols) with q * steps close to `values` on the inputs `a` (n, cols):
    column by column, round (and clip to +-limits), then spread the error over the later
    columns along the inverse Hessian's Cholesky factor (GPTQ; `damp` regularizes the Hessian
    a^T a / n by that fraction of its mean diagonal)."""
    h = a.T @ a / len(a)
    h += damp * np.mean(np.diag(h)) * np.eye(len(h))
    u = np.linalg.cholesky(np.linalg.inv(h)).T          # upper triangular, h^-1 = u^T u
    v = np.array(values, np.float64)
    q = np.zeros_like(v)
    for i in range(v.shape[1]):
        q[:, i] = np.clip(np.rint(v[:, i] / steps[:, i]), -limits[i], limits[i])
        err = (v[:, i] - q[:, i] * steps[:, i]) / u[i, i]
        v[:, i + 1:] -= err[:, None] * u[i, i + 1:]
    return q


def check_trainable(art) -> None:
    """Raise a LavaloopError (one line) unless `art`'s output layer can be trained as a readout."""
    if art.kind not in ("if", "sigma-delta"):
        raise LavaloopError(f"adapt trains the readout of converted DQNs (rate-coded 'if' or 'sigma-delta' "
                            f"artifacts); this one is {art.kind!r}")
    q = art.layers[-1]
    if len(art.layers) < 2 or q.is_conv:
        raise LavaloopError("adapt needs a dense output layer above a hidden layer; "
                            f"this network's output layer is {'a convolution' if q.is_conv else 'its only layer'}")
    if art.kind == "if" and art.manifest["readout"] != "robust":
        raise LavaloopError(f"adapt needs the 'robust' readout (values linear in the features); "
                            f"this artifact uses {art.manifest['readout']!r}")
    fan_in = art.profile.fan_in
    if fan_in is not None and q.in_size > fan_in:
        raise LavaloopError(f"the readout takes {q.in_size} inputs per neuron; profile {art.profile.name!r} "
                            f"allows {fan_in}")
    scales = art.manifest["normalization"]["scales"][-1]
    if not np.isscalar(scales):
        raise LavaloopError("adapt needs one normalization scale for the output layer (layer normalization)")
