"""The Q-network the project trains and the float reference every conversion is measured against."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn


class QNetwork(nn.Module):
    """An MLP Q-network: Linear/ReLU stack, linear output (CleanRL's `network.N` layout)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        sizes = [obs_dim, *hidden, n_actions]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.network = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    @classmethod
    def from_arrays(cls, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray]) -> "QNetwork":
        """Rebuild the float network from per-layer (out, in) weights and biases."""
        hidden = [w.shape[0] for w in weights[:-1]]
        net = cls(weights[0].shape[1], weights[-1].shape[0], hidden)
        linears = [m for m in net.network if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for lin, w, b in zip(linears, weights, biases):
                lin.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
                lin.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
        return net.eval()

    @torch.no_grad()
    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q-values for a batch of observations, as a numpy array."""
        return self(torch.as_tensor(np.asarray(obs), dtype=torch.float32)).numpy()

    @torch.no_grad()
    def activations(self, obs: np.ndarray) -> list[np.ndarray]:
        """Per-layer outputs for a batch: post-ReLU for hidden layers, Q-values for the last."""
        x = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        outs = []
        for module in self.network:
            x = module(x)
            if not isinstance(module, nn.Linear) or module is self.network[-1]:
                outs.append(x.numpy())
        return outs


class NatureDQN(nn.Module):
    """The Nature DQN (Mnih et al. 2015) in CleanRL's `dqn_atari` layout: uint8 frames / 255."""

    def __init__(self, n_actions: int, frames: int = 4):
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(frames, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(3136, 512), nn.ReLU(),
            nn.Linear(512, n_actions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x / 255.0)
