"""Data-based normalization (Rueckauer et al. 2017; Tan et al. 2021).

lambda_l is the p-th percentile of layer l's positive outputs on calibration data,
collected by running the source network epsilon-greedily in its environment. Then
W_l <- W_l * lambda_{l-1} / lambda_l and b_l <- b_l / lambda_l (lambda_0 = 1), so that
almost all activations fit below the firing threshold 1.

"layer" normalization (the paper's) has one lambda per layer. "channel" normalization
(Kim et al. 2020, Spiking-YOLO) gives every output channel of a convolution its own, so
that weak channels use the whole rate range instead of a few spikes per window; dense
layers keep one lambda (per-neuron percentiles of rarely active neurons, from few samples,
clip more than they gain), and so does the output layer (its readouts must compare).
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
