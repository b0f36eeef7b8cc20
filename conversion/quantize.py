"""Fixed-point quantization of a normalized network to a chip profile's rules.

A layer's real weights W (threshold 1) become an integer mantissa, a per-layer exponent
and integer thresholds:  W[i] ~ w_mant[i] * 2**exp / vth[i],  |w_mant| <= 2**(bits-1) - 1.
The exponent is chosen so that vth ~ 2**threshold_bits (fine threshold and bias
resolution); biases become integer currents in the same units.

Where the profile allows per-neuron thresholds, every hidden neuron gets its own vth so
that its weight row uses the full mantissa range (per-channel quantization); the output
layer keeps one threshold so its readouts stay comparable. Bias correction (Nagel et al.
2019) then removes the mean error that rounding leaves in each layer's pre-activations
on the calibration data.
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
    vth: np.ndarray         # int64 per neuron (all equal when shared)
    v_init: np.ndarray      # int64 per neuron: membrane potential at the start of each decision

    def effective(self) -> tuple[np.ndarray, np.ndarray]:
        """The real-valued weights and biases (threshold 1) this layer implements."""
        return (self.weight * 2.0 ** self.weight_exp / self.vth[:, None], self.bias / self.vth)


def rel_rms(approx: np.ndarray, exact: np.ndarray) -> float:
    denom = float(np.sqrt(np.mean(exact ** 2)))
    return float(np.sqrt(np.mean((approx - exact) ** 2))) / denom if denom > 0 else 0.0


def quantize_layer(layer: DenseLayer, profile: ChipProfile, per_neuron: bool) -> QuantizedLayer:
    """Mantissa, exponent, thresholds and biases of one layer."""
    mant_max = (1 << (profile.weight_bits - 1)) - 1
    state_max = (1 << (profile.state_bits - 1)) - 1
    w = np.asarray(layer.weight, np.float64)
    w_max = float(np.abs(w).max())
    exp = 0 if w_max == 0 else math.ceil(math.log2(2.0 ** profile.threshold_bits * w_max / mant_max))
    exp = min(max(exp, profile.weight_exp_min), profile.weight_exp_max)
    ref = np.abs(w).max(axis=1) if per_neuron else np.full(len(w), w_max)
    cap = 2.0 ** (profile.state_bits - 3)          # headroom for integration above threshold
    with np.errstate(divide="ignore"):
        scale = np.minimum(mant_max * 2.0 ** exp / ref, cap)
    vth = np.rint(scale).astype(np.int64)
    if vth.min() < 1:
        raise ProfileError(f"layer {layer.name!r}: weights too large for {profile.name}'s "
                           f"{profile.weight_bits}-bit mantissa and exponent <= {profile.weight_exp_max}")
    weight = np.rint(w * (scale / 2.0 ** exp)[:, None]).astype(np.int16)
    bias = np.rint(layer.bias * scale).astype(np.int64)
    if np.abs(bias).max(initial=0) > state_max:
        raise ProfileError(f"layer {layer.name!r}: bias does not fit {profile.name}'s "
                           f"{profile.state_bits}-bit state")
    return QuantizedLayer(layer.name, weight, exp, bias, vth, np.zeros_like(vth))


V_INITS = ("half", "zero")


def quantize(layers: list[DenseLayer], profile: ChipProfile, calib_obs: np.ndarray,
             v_init: str = "half") -> list[QuantizedLayer]:
    """Quantize every layer, then bias-correct each against the float network on calibration data.

    v_init="half" starts every decision with the membranes at half threshold, so that spike
    counts round rates to the nearest count instead of truncating them; "zero" is the
    paper's reset to zero.
    """
    last = len(layers) - 1
    out = [quantize_layer(l, profile, profile.per_neuron_threshold and i < last) for i, l in enumerate(layers)]
    if v_init == "half":
        for q in out:
            q.v_init = q.vth // 2
    x = xq = np.asarray(calib_obs, np.float64).reshape(len(calib_obs), -1)
    for i, (ref, q) in enumerate(zip(layers, out)):
        w_eff, b_eff = q.effective()
        y, yq = x @ ref.weight.T + ref.bias, xq @ w_eff.T + b_eff
        q.bias = q.bias + np.rint((y - yq).mean(axis=0) * q.vth).astype(np.int64)
        yq = xq @ w_eff.T + q.bias / q.vth
        x, xq = (np.maximum(y, 0), np.maximum(yq, 0)) if i < last else (y, yq)
    return out


def quantization_report(q: QuantizedLayer, ref: DenseLayer) -> dict:
    """Relative RMS error of the implemented weights and biases against the normalized float layer."""
    w, b = q.effective()
    return {"layer": q.name, "weight_exp": q.weight_exp,
            "vth_min": int(q.vth.min()), "vth_max": int(q.vth.max()),
            "weight_rel_rms_error": rel_rms(w, ref.weight),
            "bias_rel_rms_error": rel_rms(b, ref.bias),
            "weight_max_abs_error": float(np.abs(w - ref.weight).max())}


def input_scale_bits(obs: np.ndarray, profile: ChipProfile) -> int:
    """Fraction bits f of the input payload round(obs * 2**f): twice the calibration range fits."""
    peak = float(np.abs(obs).max()) if obs.size else 1.0
    limit = (1 << (profile.input_bits - 1)) - 1
    return int(math.floor(math.log2(limit / (2.0 * max(peak, 1e-6)))))
