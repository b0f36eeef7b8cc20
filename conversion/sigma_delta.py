"""Normalized float layers -> sigma-delta layers in integer units (`--coding sigma-delta`).

The network is the DQN itself, run as Loihi 2 runs ANNs: graded messages carry ReLU
activations (processes.dynamics.sigma_delta). Each layer has two scales: its input
arrives in message units, m_{l-1} per normalized unit (for the first layer the payload's
2**input_scale_bits per observation unit), and its states are in state units, S_l per
normalized unit. The weight mantissa is W * S_l / m_{l-1}, with no exponent (lava-dl netx
writes integer weights only), so S_l = 127 m_{l-1} / max|W| uses the whole 8-bit range.
A hidden layer's messages are its states shifted right by its own `msg_shift` bits (Lava's
SigmaDelta `state_exp`): the smallest shift that keeps m_l = S_l / 2**shift at or below
2**(message_bits - MSG_HEADROOM_BITS) per normalized unit, i.e. the largest calibrated
activation uses the message width but its top MSG_HEADROOM_BITS bits, and the states
stay well inside 24 bits. Biases and thresholds are multiples of 2**msg_shift state
units (whole message units), as Lava's SigmaDelta states them. Bias correction (as for the
rate-coded kind) then removes the mean rounding error per neuron.

Split weights (`weight_split_bits` K > 0): every connection of a layer is two synapses of
the profile's width into the same neuron, w = hi * 2**k + lo with hi = sign(w) (|w| >> k)
(weight exponent k) and lo = w - hi * 2**k (exponent 0, |lo| < 2**k), which Loihi 2 sums
exactly in the neuron's input: weight_bits + k bits, for twice the synaptic memory and the
synaptic operations of both synapses (`processes.dynamics.synapse_count`). The state
scale grows with the weight range, so each layer takes the largest k <= K whose states on
the calibration data stay within half the state width (`split_bits_per_layer`; the step
between two observations receives up to twice a peak).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lavaloop.conversion.network import ConvLayer, Layer
from lavaloop.conversion.quantize import LayerShape, forward, rel_rms
from lavaloop.errors import ProfileError
from lavaloop.fixedpoint import int_max
from lavaloop.profiles import ChipProfile

MSG_HEADROOM_BITS = 4    # message range above the largest calibrated activation: 16x
MIN_MSG_LEVELS = 64      # a narrower message width leaves fewer levels below the largest activation: refused
NETX_SHIFT = 6           # the state_exp lava-dl netx gives every SigmaDelta layer


@dataclass
class SDLayer(LayerShape):
    """A sigma-delta layer: a_in = W_mant @ messages (no exponent); states in state units.

    bias: per neuron (per channel for a convolution), state units, a multiple of 2**msg_shift.
    vth: send threshold, state units, a multiple of 2**msg_shift.
    state_scale: state units per normalized unit (S_l). in_scale: message units per
        normalized unit of the input (m_{l-1}).
    msg_shift: state -> message bits (hidden layers; 0 for the output layer, which sends nothing).
    split_bits: low weight bits carried by a second synapse per connection (0: one synapse).
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray
    vth: int
    state_scale: float
    in_scale: float
    msg_shift: int
    stride: int | None = None
    in_shape: tuple[int, int, int] | None = None
    split_bits: int = 0

    @property
    def msg_scale(self) -> float:
        """Message units per normalized unit of this layer's output (m_l)."""
        return self.state_scale / 2 ** self.msg_shift

    def effective(self) -> tuple[np.ndarray, np.ndarray]:
        """The real-valued weights and biases (normalized units) this layer implements."""
        return self.weight * (self.in_scale / self.state_scale), self.bias / self.state_scale


def state_scales(weights: list[np.ndarray], in_scale: float, profile: ChipProfile,
                 shift: int | None = None, split_bits: list[int] | None = None) -> list[tuple[float, float, int]]:
    """(m_{l-1}, S_l, msg_shift_l) of every layer for normalized weights (activations peak at 1
    on calibration data); see the module docstring. With `shift`, every hidden layer shifts
    messages by that many bits (6: what lava-dl netx builds) and a layer whose full-range
    weights would overflow the message target uses fewer weight levels instead. `split_bits`:
    per layer, the extra weight bits of split synapses (None: none)."""
    target = 2.0 ** (profile.message_bits - MSG_HEADROOM_BITS)
    if target < MIN_MSG_LEVELS:
        raise ProfileError(f"profile {profile.name!r}: {profile.message_bits}-bit graded spikes cannot carry the "
                           f"activations ({target:.0f} levels below the largest with {MSG_HEADROOM_BITS} bits of "
                           f"headroom; need {MIN_MSG_LEVELS}); use a profile with wider messages")
    out, m = [], float(in_scale)
    for i, w in enumerate(weights):
        s = int_max(profile.weight_bits + (split_bits[i] if split_bits else 0)) * m / (float(np.abs(w).max()) or 1.0)
        hidden = i < len(weights) - 1
        if not hidden:
            k = 0
        elif shift is None:
            k = max(0, math.ceil(math.log2(s / target)))
        else:
            k, s = shift, min(s, target * 2 ** shift)
        out.append((m, s, k))
        m = s / 2 ** k
    return out


def _multiple(x: np.ndarray, shift: int) -> np.ndarray:
    """Nearest multiple of 2**shift, int64."""
    return (np.rint(np.asarray(x, np.float64) / 2 ** shift) * 2 ** shift).astype(np.int64)


def state_peaks(layers: list[Layer], obs: np.ndarray, chunk: int = 256) -> list[float]:
    """Per layer, the largest |state| in normalized units on `obs` with the input held: of
    sigma (W x), of sigma + bias, and of the bias alone."""
    peaks = [float(np.abs(l.bias).max(initial=0)) for l in layers]
    for start in range(0, len(obs), chunk):
        x = np.asarray(obs[start:start + chunk], np.float64).reshape(-1, int(np.prod(obs.shape[1:])))
        for i, l in enumerate(layers):
            wx = forward(l, l.weight, np.zeros_like(l.bias), x)
            pre = wx + np.repeat(l.bias, wx.shape[1] // len(l.bias))
            peaks[i] = max(peaks[i], float(np.abs(wx).max()), float(np.abs(pre).max()))
            x = np.maximum(pre, 0.0) if i < len(layers) - 1 else pre
    return peaks


def split_bits_per_layer(layers: list[Layer], profile: ChipProfile, input_scale_bits: int,
                         split_bits: int | list[int], obs: np.ndarray, shift: int | None = None) -> list[int]:
    """Per layer, the largest k <= `split_bits` (one cap, or one per layer) whose states on the calibration observations
    `obs` (`state_peaks`) stay within half the profile's state width: the step between two
    observations receives W (x_new - x_old), up to twice a peak (earlier layers first: a
    layer's k sets the units of the next one's input)."""
    bits = list(split_bits) if isinstance(split_bits, list) else [split_bits] * len(layers)
    if not any(bits):
        return bits
    if max(bits) > profile.weight_bits - 1 or profile.weight_bits + max(bits) > 16:
        raise ProfileError(f"profile {profile.name!r}: {max(bits)} split bits need a low synapse of more than "
                           f"{profile.weight_bits - 1} bits or weights over 16 bits")
    peaks = state_peaks(layers, obs)
    for i in range(len(layers)):
        while bits[i] > 0:
            _, s, _ = state_scales([x.weight for x in layers], 2.0 ** input_scale_bits, profile, shift, bits)[i]
            if 2 * s * peaks[i] <= int_max(profile.state_bits):
                break
            bits[i] -= 1
    return bits


def quantize_sd(layers: list[Layer], profile: ChipProfile, input_scale_bits: int, threshold: float,
                calib_obs: np.ndarray | None = None, max_obs: int = 2_000, shift: int | None = None,
                split_bits: list[int] | None = None) -> list[SDLayer]:
    """Sigma-delta layers of max-normalized float layers (activations peak at 1 on calibration data).

    Parameters
    ----------
    layers: the normalized layers. profile: the chip's rules (weight and message widths).
    input_scale_bits: the payload's fraction bits (first layer's input scale 2**bits).
    threshold: send threshold in normalized units (0: every change is sent).
    calib_obs: calibration observations for bias correction (None: no correction).
    shift: one message shift for every hidden layer (None: per layer; see `state_scales`).
    split_bits: per layer, the extra weight bits of split synapses (`split_bits_per_layer`; None: none).
    """
    split_bits = split_bits or [0] * len(layers)
    scales = state_scales([l.weight for l in layers], 2.0 ** input_scale_bits, profile, shift, split_bits)
    state_max = int_max(profile.state_bits)
    out = []
    for l, (m, s, shift), k in zip(layers, scales, split_bits):
        weight = np.rint(np.asarray(l.weight, np.float64) * (s / m)).astype(np.int16)
        bias = _multiple(l.bias * s, shift)
        if np.abs(bias).max(initial=0) > state_max:
            raise ProfileError(f"layer {l.name!r}: bias does not fit {profile.name}'s {profile.state_bits}-bit state")
        conv = isinstance(l, ConvLayer)
        out.append(SDLayer(l.name, weight, bias, int(_multiple(threshold * s, shift)), s, m, shift,
                           l.stride if conv else None, tuple(l.in_shape) if conv else None, k))
    if calib_obs is not None:
        _correct_biases(layers, out, calib_obs[::max(1, len(calib_obs) // max_obs)])
    return out


def _correct_biases(layers: list[Layer], sd: list[SDLayer], obs: np.ndarray) -> None:
    """Shift every bias by the mean error its layer's rounding leaves on calibration data
    (per channel for a convolution), each layer fed by the corrected layers below."""
    x = xq = np.asarray(obs, np.float64).reshape(len(obs), -1)
    last = len(layers) - 1
    for i, (ref, q) in enumerate(zip(layers, sd)):
        w_eff, b_eff = q.effective()
        y, yq = forward(ref, ref.weight, ref.bias, x), forward(q, w_eff, b_eff, xq)
        error = (y - yq).reshape(len(y), len(q.bias), -1).mean(axis=(0, 2))
        q.bias = q.bias + _multiple(error * q.state_scale, q.msg_shift)
        yq = forward(q, w_eff, q.bias / q.state_scale, xq)
        x, xq = (np.maximum(y, 0), np.maximum(yq, 0)) if i < last else (y, yq)


def sd_report(q: SDLayer, ref: Layer) -> dict:
    """Quantization error of one layer and how much of the mantissa range it uses."""
    w, b = q.effective()
    levels = int(np.abs(q.weight.astype(np.int64)).max(initial=0))
    return {"layer": q.name, "weight_levels": levels, "split_bits": q.split_bits,
            "weight_bits_used": math.ceil(math.log2(levels + 1)) + 1,
            "state_scale": q.state_scale, "msg_scale": q.msg_scale, "msg_shift": q.msg_shift, "vth": q.vth,
            "weight_rel_rms_error": rel_rms(w, ref.weight), "bias_rel_rms_error": rel_rms(b, ref.bias)}
