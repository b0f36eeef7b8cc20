"""The readout a host trains: float parameters on the host, integers on the chip.

A rate-coded network's output layer with the "robust" readout integrates its input for T
steps; its decision value is the integrated input, R = v_init + sum_t round(W_mant s_t 2**exp)
+ T bias (state units). With features x = spike counts / T of the layer below, the host
models R / (T vth) = W x + b + v_init / (T vth), W = W_mant 2**exp / vth, b = bias / vth:
the layer's `effective()` weights. The source's Q-values are `out_scale` times that (the
conversion's normalization of the last layer). New parameters reach the chip through the
profile's rule at the layer's exponent: mantissas rounded and clipped to the weight width,
biases to the state width.

Rounding alone is not good enough for a readout: a Q-network's values differ between actions
by far less than their common level (CartPole: ~1 %), and independent rounding errors of
hundreds of weights add up to more than that gap (measured on a mismatched chip instance:
a least-squares readout agreeing with the source on 0.89 of held-out decisions fell to 0.71
when rounded, to 0.23 where 1 % of its weights clipped). Given features the readout sees,
`quantize` rounds one weight at a time and moves the not yet rounded ones to cancel the
error on those features (the optimal-brain-quantization update of GPTQ, Frantar et al.
2023), the bias last at its finer step: the same example keeps 0.89.

The exponent is the converted layer's plus `headroom_bits`
(fixed for the run: the chip's layer configuration), so that weights can grow that many
bits beyond the converted network's largest before they clip.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lavaloop.conversion.artifact_if import IFArtifact
from lavaloop.errors import LavaloopError
from lavaloop.fixedpoint import int_max


@dataclass
class Readout:
    """The output layer of a rate-coded artifact as a trainable linear readout.

    Parameters
    ----------
    weight_exp: the readout's weight exponent (fixed for the run).
    vth, v_init: per output neuron, state units.
    weight_bits, state_bits: the profile's widths.
    timesteps: T, the window the features count over.
    out_scale: source Q-values per unit of R / (T vth).
    """

    weight_exp: int
    vth: np.ndarray
    v_init: np.ndarray
    weight_bits: int
    state_bits: int
    timesteps: int
    out_scale: float

    @classmethod
    def of(cls, art: IFArtifact, timesteps: int, headroom_bits: int = 0) -> Readout:
        """The readout of `art` run at T = `timesteps`, its exponent raised by `headroom_bits`
        (within the profile's range); a LavaloopError if it cannot be trained."""
        check_trainable(art)
        q, prof = art.layers[-1], art.profile
        exp = min(q.weight_exp + headroom_bits, prof.weight_exp_max)
        return cls(exp, q.vth.astype(np.int64), q.v_init.astype(np.int64), prof.weight_bits,
                   prof.state_bits, timesteps, float(art.manifest["normalization"]["scales"][-1]))

    def quantize(self, w: np.ndarray, b: np.ndarray, x: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mantissa, bias) of float (W, b) by the profile's rule, clipped to its widths.

        With features x (n, in) the rounding errors are compensated on them (see the module);
        without, each value is rounded on its own.
        """
        m_max, s_max = int_max(self.weight_bits), int_max(self.state_bits)
        steps = np.c_[np.outer(1.0 / self.vth, np.full(w.shape[1], 2.0 ** self.weight_exp)), 1.0 / self.vth]
        limits = np.r_[np.full(w.shape[1], m_max), s_max]
        values = np.c_[w, b]
        if x is None or len(x) == 0:
            q = np.clip(np.rint(values / steps), -limits, limits)
        else:
            q = compensated_rounding(values, steps, limits, np.c_[x, np.ones(len(x))])
        return q[:, :-1].astype(np.int64), q[:, -1].astype(np.int64)

    def features(self, counts: np.ndarray) -> np.ndarray:
        """Spike counts of the layer below (..., in) as rates x in [0, 1]."""
        return np.asarray(counts, np.float64) / self.timesteps

    def q_values(self, w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The host's model of the chip's values, in the source's Q units: (..., out)."""
        return self.out_scale * (x @ w.T + b + self.v_init / (self.timesteps * self.vth))


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
    if art.kind != "if":
        raise LavaloopError(f"adapt trains the readout of rate-coded ('if') artifacts; this one is {art.kind!r}")
    q = art.layers[-1]
    if len(art.layers) < 2 or q.is_conv:
        raise LavaloopError("adapt needs a dense output layer above a hidden layer; "
                            f"this network's output layer is {'a convolution' if q.is_conv else 'its only layer'}")
    if art.manifest["readout"] != "robust":
        raise LavaloopError(f"adapt needs the 'robust' readout (values linear in the features); "
                            f"this artifact uses {art.manifest['readout']!r}")
    fan_in = art.profile.fan_in
    if fan_in is not None and q.in_size > fan_in:
        raise LavaloopError(f"the readout takes {q.in_size} inputs per neuron; profile {art.profile.name!r} "
                            f"allows {fan_in}")
    scales = art.manifest["normalization"]["scales"][-1]
    if not np.isscalar(scales):
        raise LavaloopError("adapt needs one normalization scale for the output layer (layer normalization)")
