"""Phase-dithered copies of hidden neurons: K T levels of rate in a T-step window (`--dither K`).

An IF neuron that starts a decision at v0 (in threshold units) and integrates a held current
r per step emits floor(T r + v0) spikes in T steps: the rate is resolved to T levels. K
copies of the neuron, identical but for their starting potentials v0_j = (j + c) / K
(j = 0..K-1; c = 1/2 for `v_init` "half", 0 for "zero"), together emit

    sum_j floor(T r + (j + c) / K) = floor(K T r + c)            (Hermite's identity)

spikes: exactly the count one neuron would emit in a K T-step window. The layer above reads
all copies with its weights divided by K, so the network computes the same function in the
rate limit and, at T steps per layer, the first hidden layer's rates at the resolution of a
K T-step window (deeper layers, whose inputs are spike trains, approximately so). The
latency stays T + depth Lava steps per decision; neurons grow K times, synapses between
hidden layers K^2 times (docs/conversion.md, "Phase-dithered copies").

Copy j of neuron (or convolution channel) i is unit j n + i of its widened layer.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from lavaloop.conversion.network import ConvLayer, DenseLayer, Layer
from lavaloop.conversion.quantize import QuantizedLayer, start_phases, start_potentials


def widen(layers: list[Layer], copies: int) -> list[Layer]:
    """The network with `copies` copies of every hidden neuron (convolution: channel), each
    layer above reading all of them with its weights divided by `copies`.

    Parameters
    ----------
    layers: the (normalized) float layers, ReLU between, the last one the output layer.
    copies: K >= 1.
    """
    if copies == 1:
        return list(layers)
    out = []
    for i, layer in enumerate(layers):
        w, b = np.asarray(layer.weight, np.float64), np.asarray(layer.bias, np.float64)
        if i > 0:                                   # read every copy of the layer below
            below = layers[i - 1]
            if isinstance(layer, ConvLayer):
                w = np.tile(w, (1, copies, 1, 1))
            elif isinstance(below, ConvLayer):      # flattened (C, H, W) input: copies are channel blocks
                w = np.tile(w.reshape(len(w), below.out_shape[0], -1), (1, copies, 1)).reshape(len(w), -1)
            else:
                w = np.tile(w, (1, copies))
            w = w / copies
        if i < len(layers) - 1:                     # copies of every hidden unit
            w, b = np.tile(w, (copies,) + (1,) * (w.ndim - 1)), np.tile(b, copies)
        if isinstance(layer, ConvLayer):
            c, h, wd = layer.in_shape
            in_shape = (c * copies, h, wd) if i > 0 else layer.in_shape
            out.append(replace(layer, weight=w, bias=b, in_shape=in_shape))
        else:
            out.append(DenseLayer(layer.name, w, b))
    return out


def dither(layers: list[QuantizedLayer], copies: int, v_init: str = "half") -> list[QuantizedLayer]:
    """The quantized widened layers with every hidden layer's copies started at their phases
    (`quantize.start_potentials`), in place; returns them."""
    for q in layers[:-1]:
        q.v_init = start_potentials(q.vth, copies, v_init)
    return layers


def unit_phases(layers: list[Layer], copies: int, v_init: str = "half") -> list[np.ndarray]:
    """Every hidden layer's starting potentials per unit of its flattened output (a
    convolution's per channel, repeated over its positions), as `distill.chip_forward` takes them."""
    out = []
    for layer in layers[:-1]:
        channels = layer.out_shape[0] if isinstance(layer, ConvLayer) else layer.out_size
        out.append(np.repeat(start_phases(channels, copies, v_init), layer.out_size // channels))
    return out
