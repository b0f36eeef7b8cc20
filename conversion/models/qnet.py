"""The Q-network the project trains and the float reference every conversion is measured against."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class FeedForwardQ(nn.Module):
    """A Q-network whose `network` is a Conv2d/Linear stack with ReLU between (CleanRL's layout).

    Inputs are reshaped to `in_shape` (flat observations are accepted).
    """

    def __init__(self, network: nn.Sequential, in_shape: Sequence[int]):
        super().__init__()
        self.network, self.in_shape = network, tuple(in_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.reshape(len(x), *self.in_shape))

    @classmethod
    def from_layers(cls, layers) -> FeedForwardQ:
        """The float network of conversion.network layers (DenseLayer / ConvLayer)."""
        modules: list[nn.Module] = []
        for i, layer in enumerate(layers):
            w = torch.as_tensor(np.asarray(layer.weight), dtype=torch.float32)
            if w.ndim == 4:
                m = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=layer.stride)
            else:
                if i > 0 and layers[i - 1].weight.ndim == 4:
                    modules.append(nn.Flatten())
                m = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                m.weight.copy_(w)
                m.bias.copy_(torch.as_tensor(np.asarray(layer.bias), dtype=torch.float32))
            modules += [m, nn.ReLU()]
        first = layers[0]
        in_shape = first.in_shape if first.weight.ndim == 4 else (first.weight.shape[1],)
        return cls(nn.Sequential(*modules[:-1]), in_shape).eval()

    @torch.no_grad()
    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q-values for a batch of observations, as a numpy array."""
        return self(torch.as_tensor(np.asarray(obs), dtype=torch.float32)).numpy()

    @torch.no_grad()
    def activations(self, obs: np.ndarray) -> list[np.ndarray]:
        """Per-layer outputs for a batch, flattened per sample: post-ReLU for hidden layers,
        Q-values for the last."""
        x = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        x = x.reshape(len(x), *self.in_shape)
        outs = []
        for module in self.network:
            x = module(x)
            if isinstance(module, nn.ReLU) or module is self.network[-1]:
                outs.append(x.reshape(len(x), -1).numpy())
        return outs


class QNetwork(FeedForwardQ):
    """An MLP Q-network: Linear/ReLU stack, linear output (CleanRL's `network.N` layout)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (256, 256)):
        sizes = [obs_dim, *hidden, n_actions]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(nn.Sequential(*layers), (obs_dim,))


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
