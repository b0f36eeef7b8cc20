"""Fixed-point quantization of a normalized network to a chip profile's rules.

A layer's real weights W (threshold 1) become an integer mantissa, a per-layer exponent
and an integer threshold:  W ~ w_mant * 2**exp / vth,  with |w_mant| <= 2**(bits-1) - 1.
The exponent is chosen so that vth ~ 2**threshold_bits (fine threshold and bias
resolution); biases become integer currents in the same units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from conversion.errors import ProfileError
from conversion.network import DenseLayer
from conversion.profiles import ChipProfile


@dataclass
class QuantizedLayer:
    """An IF layer in integer units: current = (w_mant @ x) * 2**weight_exp + bias."""

    name: str
    weight: np.ndarray      # int mantissa, (out, in)
    weight_exp: int
    bias: np.ndarray        # int64, state units
    vth: int

    def effective(self) -> tuple[np.ndarray, np.ndarray]:
        """The real-valued weights and biases (threshold 1) this layer implements."""
        return (self.weight * 2.0 ** self.weight_exp / self.vth, self.bias / self.vth)


def rel_rms(approx: np.ndarray, exact: np.ndarray) -> float:
    denom = float(np.sqrt(np.mean(exact ** 2)))
    return float(np.sqrt(np.mean((approx - exact) ** 2))) / denom if denom > 0 else 0.0


def quantize_layer(layer: DenseLayer, profile: ChipProfile) -> QuantizedLayer:
    mant_max = (1 << (profile.weight_bits - 1)) - 1
    w_max = float(np.abs(layer.weight).max())
    if w_max == 0.0:
        exp = 0
    else:
        exp = math.ceil(math.log2(2.0 ** profile.threshold_bits * w_max / mant_max))
        exp = min(max(exp, profile.weight_exp_min), profile.weight_exp_max)
    scale = mant_max * 2.0 ** exp / w_max if w_max > 0 else 2.0 ** profile.threshold_bits
    vth = int(round(scale))
    state_max = (1 << (profile.state_bits - 1)) - 1
    if not 1 <= vth <= state_max:
        raise ProfileError(f"layer {layer.name!r}: threshold {vth} does not fit "
                           f"{profile.name}'s {profile.state_bits}-bit state")
    weight = np.rint(layer.weight * (mant_max / w_max if w_max > 0 else 0)).astype(np.int16)
    bias = np.rint(layer.bias * scale).astype(np.int64)
    if np.abs(bias).max(initial=0) > state_max:
        raise ProfileError(f"layer {layer.name!r}: bias does not fit {profile.name}'s "
                           f"{profile.state_bits}-bit state")
    return QuantizedLayer(layer.name, weight, exp, bias, vth)


def quantization_report(q: QuantizedLayer, ref: DenseLayer) -> dict:
    """Relative RMS error of the implemented weights and biases against the normalized float layer."""
    w, b = q.effective()
    return {"layer": q.name, "weight_exp": q.weight_exp, "vth": q.vth,
            "weight_rel_rms_error": rel_rms(w, ref.weight),
            "bias_rel_rms_error": rel_rms(b, ref.bias),
            "weight_max_abs_error": float(np.abs(w - ref.weight).max())}


def input_scale_bits(obs: np.ndarray, profile: ChipProfile) -> int:
    """Fraction bits f of the input payload round(obs * 2**f): twice the calibration range fits."""
    peak = float(np.abs(obs).max()) if obs.size else 1.0
    limit = (1 << (profile.input_bits - 1)) - 1
    return int(math.floor(math.log2(limit / (2.0 * max(peak, 1e-6)))))
