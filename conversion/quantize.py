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
import torch
import torch.nn.functional as F

from lavaloop.conversion.network import ConvLayer, Layer, conv_out_shape
from lavaloop.errors import ProfileError
from lavaloop.fixedpoint import int_max
from lavaloop.profiles import ChipProfile


class LayerShape:
    """Shapes of an integer layer with `weight` (out, in) or (O, C, kh, kw), `bias` per neuron
    (per channel for a convolution), and `stride`, `in_shape` for a convolution."""

    @property
    def is_conv(self) -> bool:
        return self.weight.ndim == 4

    @property
    def in_size(self) -> int:
        return int(np.prod(self.in_shape)) if self.is_conv else self.weight.shape[1]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return conv_out_shape(self.weight.shape, self.in_shape, self.stride) if self.is_conv else (len(self.bias),)

    @property
    def out_size(self) -> int:
        return int(np.prod(self.out_shape))

    def per_neuron(self, values: np.ndarray) -> np.ndarray:
        """Per-channel values of a convolution repeated for every neuron (C-major); dense: as is."""
        return np.repeat(values, self.out_size // len(values)) if self.is_conv else values


@dataclass
class QuantizedLayer(LayerShape):
    """An IF layer in integer units: current = (w_mant * x) * 2**weight_exp + bias.

    Dense: weight (out, in). Convolution (valid, strided): weight (O, C, kh, kw) on inputs
    of `in_shape`; bias, vth and v_init are then per output channel (shared by its neurons).
    """

    name: str
    weight: np.ndarray      # int mantissa
    weight_exp: int
    bias: np.ndarray        # int64, state units; per neuron, or per channel for a convolution
    vth: np.ndarray         # int64, same shape as bias (all equal when shared)
    v_init: np.ndarray      # int64, same shape: membrane potential at the start of each decision
    stride: int | None = None                       # convolutions only
    in_shape: tuple[int, int, int] | None = None    # convolutions only

    def effective(self) -> tuple[np.ndarray, np.ndarray]:
        """The real-valued weights and biases (threshold 1) this layer implements."""
        vth = self.vth.reshape(-1, *[1] * (self.weight.ndim - 1))
        return (self.weight * 2.0 ** self.weight_exp / vth, self.bias / self.vth)


def forward(layer: Layer | QuantizedLayer, weight: np.ndarray, bias: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Pre-activations (B, out) of `layer`'s shape with the given weights, in float64."""
    xt, w, b = (torch.as_tensor(np.asarray(a, np.float64)) for a in (x, weight, bias))
    if w.ndim == 4:
        y = F.conv2d(xt.reshape(len(xt), *layer.in_shape), w, b, stride=layer.stride)
        return y.reshape(len(xt), -1).numpy()
    return F.linear(xt.reshape(len(xt), -1), w, b).numpy()


def rel_rms(approx: np.ndarray, exact: np.ndarray) -> float:
    denom = float(np.sqrt(np.mean(exact ** 2)))
    return float(np.sqrt(np.mean((approx - exact) ** 2))) / denom if denom > 0 else 0.0


def weight_scale(w: np.ndarray, profile: ChipProfile, per_neuron: bool) -> tuple[int, np.ndarray]:
    """(exponent, scale per output neuron) of the profile's rule for real weights w (out, ...):
    mantissa = rint(w * scale / 2**exp), threshold = rint(scale), so that w ~ mantissa * 2**exp / vth.

    The exponent puts the largest threshold near 2**threshold_bits; with `per_neuron` every
    row uses the full mantissa range, else all rows share the scale of the largest weight.
    """
    mant_max = int_max(profile.weight_bits)
    w = np.asarray(w, np.float64)
    w_max = float(np.abs(w).max())
    exp = 0 if w_max == 0 else math.ceil(math.log2(2.0 ** profile.threshold_bits * w_max / mant_max))
    exp = min(max(exp, profile.weight_exp_min), profile.weight_exp_max)
    ref = np.abs(w).reshape(len(w), -1).max(axis=1) if per_neuron else np.full(len(w), w_max)
    cap = 2.0 ** (profile.state_bits - 3)          # headroom for integration above threshold
    with np.errstate(divide="ignore"):
        return exp, np.minimum(mant_max * 2.0 ** exp / ref, cap)


def quantize_layer(layer: Layer, profile: ChipProfile, per_neuron: bool) -> QuantizedLayer:
    """Mantissa, exponent, thresholds and biases of one layer."""
    state_max = int_max(profile.state_bits)
    w = np.asarray(layer.weight, np.float64)
    exp, scale = weight_scale(w, profile, per_neuron)
    vth = np.rint(scale).astype(np.int64)
    if vth.min() < 1:
        raise ProfileError(f"layer {layer.name!r}: weights too large for {profile.name}'s "
                           f"{profile.weight_bits}-bit mantissa and exponent <= {profile.weight_exp_max}")
    weight = np.rint(w * (scale / 2.0 ** exp).reshape(-1, *[1] * (w.ndim - 1))).astype(np.int16)
    bias = np.rint(layer.bias * scale).astype(np.int64)
    if np.abs(bias).max(initial=0) > state_max:
        raise ProfileError(f"layer {layer.name!r}: bias does not fit {profile.name}'s "
                           f"{profile.state_bits}-bit state")
    conv = isinstance(layer, ConvLayer)
    return QuantizedLayer(layer.name, weight, exp, bias, vth, np.zeros_like(vth),
                          layer.stride if conv else None, tuple(layer.in_shape) if conv else None)


START_OFFSET = {"half": 0.5, "zero": 0.0}   # a decision's starting potential per v_init, in thresholds


def start_phases(units: int, copies: int = 1, v_init: str = "half") -> np.ndarray:
    """Starting potentials (threshold units) of a layer's `units` neurons at each decision:
    c = 1/2 for v_init "half", 0 for "zero"; with K = `copies` phase-dithered copies of every
    neuron (`conversion.dither`: copy j is the j-th block of units / K), copy j's (j + c) / K."""
    return np.repeat((np.arange(copies) + START_OFFSET[v_init]) / copies, units // copies)


def start_potentials(vth: np.ndarray, copies: int = 1, v_init: str = "half") -> np.ndarray:
    """`start_phases` in the state's integer units of thresholds `vth` (int64), rounded down."""
    return np.floor(vth * start_phases(len(vth), copies, v_init)).astype(np.int64)


def quantize(layers: list[Layer], profile: ChipProfile, calib_obs: np.ndarray,
             v_init: str = "half", max_obs: int = 2_000, bias_correction: bool = True) -> list[QuantizedLayer]:
    """Quantize every layer, then bias-correct each against the float network on calibration data.

    v_init="half" starts every decision with the membranes at half threshold, so that spike
    counts round rates to the nearest count instead of truncating them; "zero" is the
    paper's reset to zero. Bias correction uses up to `max_obs` calibration observations;
    a convolution's correction is one value per channel (its bias is shared). Distilled
    layers (lavaloop.conversion.distill) were trained through this very quantization and
    skip it (`bias_correction=False`).
    """
    last = len(layers) - 1
    out = [quantize_layer(l, profile, profile.per_neuron_threshold and i < last) for i, l in enumerate(layers)]
    for q in out:
        q.v_init = start_potentials(q.vth, 1, v_init)
    if not bias_correction:
        return out
    step = max(1, len(calib_obs) // max_obs)
    x = xq = np.asarray(calib_obs[::step], np.float64).reshape(len(calib_obs[::step]), -1)
    for i, (ref, q) in enumerate(zip(layers, out)):
        w_eff, b_eff = q.effective()
        y, yq = forward(ref, ref.weight, ref.bias, x), forward(q, w_eff, b_eff, xq)
        error = (y - yq).reshape(len(y), len(q.bias), -1).mean(axis=(0, 2))
        q.bias = q.bias + np.rint(error * q.vth).astype(np.int64)
        yq = forward(q, w_eff, q.bias / q.vth, xq)
        x, xq = (np.maximum(y, 0), np.maximum(yq, 0)) if i < last else (y, yq)
    return out


def rate_limit(layers: list[QuantizedLayer], x: np.ndarray, timesteps: int | None = None) -> np.ndarray:
    """Output values (B, |A|) that the IF network's readout approaches as T grows, per step.

    The implemented weights as a ReLU network whose hidden units clip at one spike per step,
    r = clip(W r_below + b, 0, 1): what the rates converge to once rounding to whole spike
    counts no longer matters. `x` (B, n_in) is the observation; the rounding of the input
    payload (`input_scale_bits` fraction bits) is below this limit's resolution and ignored.
    With `timesteps` T, every hidden rate is also rounded to whole spikes in T steps,
    floor(T r + 1/2) / T (a neuron starting at half threshold under constant input): the
    staircase model of a T-step window that distillation trains through.
    """
    for i, q in enumerate(layers):
        w, b = q.effective()
        x = forward(q, w, b, x)
        if i < len(layers) - 1:
            x = np.clip(x, 0.0, 1.0)
            if timesteps is not None:
                x = np.floor(x * timesteps + 0.5) / timesteps
    return x


def quantization_report(q: QuantizedLayer, ref: Layer) -> dict:
    """Relative RMS error of the implemented weights and biases against the normalized float layer."""
    w, b = q.effective()
    return {"layer": q.name, "weight_exp": q.weight_exp,
            "vth_min": int(q.vth.min()), "vth_max": int(q.vth.max()),
            "weight_rel_rms_error": rel_rms(w, ref.weight),
            "bias_rel_rms_error": rel_rms(b, ref.bias),
            "weight_max_abs_error": float(np.abs(w - ref.weight).max())}


def input_scale_bits(obs: np.ndarray, bits: int) -> int:
    """Fraction bits f of the input payload round(obs * 2**f) of `bits` bits: twice the calibration range fits."""
    peak = float(np.abs(obs).max()) if obs.size else 1.0
    limit = int_max(bits)
    return int(math.floor(math.log2(limit / (2.0 * max(peak, 1e-6)))))
