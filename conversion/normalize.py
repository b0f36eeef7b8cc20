"""Data-based layer-wise normalization (Rueckauer et al. 2017; Tan et al. 2021).

lambda_l is the p-th percentile of layer l's positive outputs on calibration data,
collected by running the source network epsilon-greedily in its environment. Then
W_l <- W_l * lambda_{l-1} / lambda_l and b_l <- b_l / lambda_l (lambda_0 = 1), so that
almost all activations fit below the firing threshold 1.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from tqdm import tqdm

from conversion.envs import EnvSpec, make_env
from conversion.models.qnet import FeedForwardQ
from conversion.network import Layer


def collect_observations(q: FeedForwardQ, spec: EnvSpec, steps: int, seed: int, epsilon: float) -> np.ndarray:
    """Observations visited by the epsilon-greedy source policy over `steps` env steps."""
    env = make_env(spec)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    episode, out = 0, []
    for _ in tqdm(range(steps), desc="calibration", leave=False, disable=None):
        out.append(obs)
        if rng.random() < epsilon:
            action = int(rng.integers(env.action_space.n))
        else:
            action = int(q.q_values(obs[None])[0].argmax())
        obs, _, term, trunc, _ = env.step(action)
        if term or trunc:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
    env.close()
    return np.asarray(out)          # the env's dtype: uint8 frames stay small


def layer_scales(q: FeedForwardQ, obs: np.ndarray, percentile: float, chunk: int = 256) -> list[float]:
    """lambda_l for every layer: the percentile of its positive outputs (1 if it has none)."""
    positive: list[list[np.ndarray]] = []
    for start in range(0, len(obs), chunk):
        for l, act in enumerate(q.activations(obs[start:start + chunk])):
            if l == len(positive):
                positive.append([])
            positive[l].append(act[act > 0])
    scales = []
    for parts in positive:
        pos = np.concatenate(parts)
        scales.append(float(np.percentile(pos, percentile)) if pos.size else 1.0)
    return scales


def normalize(layers: list[Layer], scales: list[float]) -> list[Layer]:
    """Weights and biases rescaled so that layer l's outputs are in units of lambda_l."""
    prev = [1.0, *scales[:-1]]
    return [replace(l, weight=l.weight * (lp / lam), bias=l.bias / lam)
            for l, lp, lam in zip(layers, prev, scales)]
