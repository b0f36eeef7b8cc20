"""Data-based normalization (Rueckauer et al. 2017; Tan et al. 2021).

lambda_l is the p-th percentile of layer l's positive outputs on calibration data,
collected by running the source network epsilon-greedily in its environment. Then
W_l <- W_l * lambda_{l-1} / lambda_l and b_l <- b_l / lambda_l (lambda_0 = 1), so that
almost all activations fit below the firing threshold 1.

"layer" normalization (the paper's) has one lambda per layer. "channel" normalization
(Kim et al. 2020, Spiking-YOLO) gives every output channel of a convolution its own, so
that weak channels use the whole rate range instead of a few spikes per window; dense
layers keep one lambda, and so does the output layer (its readouts must compare). "neuron"
normalization gives every dense hidden neuron its own lambda too: alone it gains little
(per-neuron percentiles of rarely active neurons come from few samples), but it is the
better start for distillation, which then has every neuron's full range of spike counts to
fit (docs/conversion.md).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from tqdm import tqdm

from lavaloop.conversion.models.qnet import FeedForwardQ
from lavaloop.conversion.network import Layer
from lavaloop.envs import EnvSpec, make_env
from lavaloop.rollout import epsilon_greedy, run_episode


def collect_observations(q: FeedForwardQ, spec: EnvSpec, steps: int, seed: int, epsilon: float) -> np.ndarray:
    """Observations visited by the epsilon-greedy source policy over `steps` env steps."""
    env = make_env(spec)
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    bar = tqdm(total=steps, desc="calibration", leave=False, disable=None)

    def act(obs):
        out.append(obs)
        bar.update(1)
        return epsilon_greedy(rng, q.q_values(obs[None])[0], epsilon)[1]

    try:
        episode = 0
        while len(out) < steps:           # episode k is reset with seed + k
            run_episode(env, seed + episode, act, max_steps=steps - len(out))
            episode += 1
    finally:
        bar.close()
        env.close()
    return np.asarray(out)          # the env's dtype: uint8 frames stay small


def layer_scales(q: FeedForwardQ, obs: np.ndarray, percentile: float, channels: list[int | None] | None = None,
                 chunk: int = 256) -> list[float | list[float]]:
    """lambda_l for every layer: the percentile of its positive outputs (1 if it has none).

    With `channels` (output channels of each layer, None for layer-wise), those hidden layers
    get one lambda per channel instead, from the positive outputs of that channel.
    """
    positive: list[list[list[np.ndarray]]] = []     # layer -> channel -> positive outputs per chunk
    for start in range(0, len(obs), chunk):
        acts = q.activations(obs[start:start + chunk])
        for l, act in enumerate(acts):
            per_channel = channels is not None and channels[l] is not None and l < len(acts) - 1
            rows = (act.reshape(len(act), channels[l], -1).transpose(1, 0, 2).reshape(channels[l], -1)
                    if per_channel else act.reshape(1, -1))
            if l == len(positive):
                positive.append([[] for _ in rows])
            for parts, row in zip(positive[l], rows):
                parts.append(row[row > 0])
    scales = []
    for per_row in positive:
        lam = [_percentile(np.concatenate(parts), percentile) for parts in per_row]
        scales.append(lam if len(lam) > 1 else lam[0])
    return scales


def channel_peaks(q: FeedForwardQ, obs: np.ndarray, layers: list[Layer], chunk: int = 256) -> list[np.ndarray]:
    """Every hidden channel's largest activation on the observations, per hidden layer (0 for a
    channel that never fires; `layer_scales` gives such a channel lambda 1 instead)."""
    peaks = [np.zeros(l.weight.shape[0]) for l in layers[:-1]]
    for start in range(0, len(obs), chunk):
        for p, act in zip(peaks, q.activations(obs[start:start + chunk])):
            np.maximum(p, act.reshape(len(act), len(p), -1).max(axis=(0, 2)), out=p)
    return peaks


def _percentile(pos: np.ndarray, percentile: float) -> float:
    return float(np.percentile(pos, percentile)) if pos.size else 1.0


def normalize(layers: list[Layer], scales: list[float | list[float]]) -> list[Layer]:
    """Weights and biases rescaled so that layer l's outputs are in units of lambda_l
    (per layer, or per output channel where lambda_l is a list)."""
    out, prev = [], np.float64(1.0)
    for l, lam in zip(layers, scales):
        lam = np.asarray(lam, np.float64)
        w_in = prev
        if prev.ndim:   # per-channel input scales: to the weight's input axis
            w_in = (prev.reshape(1, -1, 1, 1) if l.weight.ndim == 4
                    else np.repeat(prev, l.weight.shape[1] // len(prev))[None, :])
        w_out = lam.reshape(-1, *[1] * (l.weight.ndim - 1)) if lam.ndim else lam
        out.append(replace(l, weight=l.weight * w_in / w_out, bias=l.bias / lam))
        prev = lam
    return out


def equalize(layers: list[Layer], scales: list[float], peaks: list[np.ndarray], iterations: int = 1) -> list:
    """Per-channel lambdas that equalize the weight ranges of consecutive layers (cross-layer
    equalization, Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
    Correction", ICCV 2019), for a quantizer with one weight scale per layer.

    ReLU commutes with positive scaling, so hidden channel j may be expressed in units of
    lambda_l / c_j: its row of W_l (and bias) grows by c_j, its column of W_{l+1} shrinks by
    c_j, and the network computes the same function. c_j = sqrt(r2_j / r1_j), with r1_j the
    largest |weight| of row j and r2_j of column j, gives both the same range, so that weak
    rows no longer use a few of the largest row's levels. The c of a layer are then scaled
    together so that its largest calibrated activation is 1 again.

    Parameters
    ----------
    layers: the source layers. scales: their layer-wise lambdas (max-normalization).
    peaks: per hidden layer, every output channel's largest calibrated activation, in units
        of that layer's lambda (<= 1; 0 for a channel that never fires, see `channel_peaks`).
    iterations: equalization sweeps over the layer pairs.

    Returns scales for `normalize`: a list of per-channel lambdas for every hidden layer.
    """
    normed = normalize(layers, scales)
    weights = [np.asarray(l.weight, np.float64) for l in normed]
    factor = [np.ones(w.shape[0]) for w in weights[:-1]]
    for _ in range(iterations):
        for k in range(len(weights) - 1):
            w, nxt = weights[k], weights[k + 1]
            r1 = np.abs(w.reshape(len(w), -1)).max(1)
            r2 = np.abs(nxt.reshape(len(nxt), len(w), -1)).max(axis=(0, 2))
            c = np.where((r1 > 0) & (r2 > 0), np.sqrt(r2 / np.where(r1 > 0, r1, 1.0)), 1.0)
            weights[k] = w * c.reshape(-1, *[1] * (w.ndim - 1))
            weights[k + 1] = (nxt.reshape(len(nxt), len(w), -1) / c[None, :, None]).reshape(nxt.shape)
            factor[k] = factor[k] * c
    out = []
    for k, lam in enumerate(scales):
        if k == len(scales) - 1:
            out.append(lam)
            continue
        c = factor[k] / float(np.max(factor[k] * np.asarray(peaks[k], np.float64)))
        out.append(list(lam / c))
    return out


def centre_readout(layers: list[Layer]) -> list[Layer]:
    """`layers` with the output layer's weights and biases less their mean over actions.

    Every action's value loses the same amount (the value all actions share, a dueling DQN's
    V), so the greedy action is unchanged, and the readout's fixed-point levels go to the
    advantages that decide (in a CartPole DQN ~1/1,000 of the Q-values) instead of that
    shared value.
    """
    out = layers[-1]
    return [*layers[:-1], replace(out, weight=out.weight - out.weight.mean(0, keepdims=True),
                                  bias=out.bias - out.bias.mean())]
