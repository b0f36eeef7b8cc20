"""The canonical description of a source network, whatever checkpoint it came from."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lavaloop.conversion.models.qnet import FeedForwardQ


@dataclass
class DenseLayer:
    """A fully connected layer y = W x + b; W is (out, in). ReLU follows every layer but the last."""

    name: str
    weight: np.ndarray
    bias: np.ndarray

    @property
    def in_size(self) -> int:
        return self.weight.shape[1]

    @property
    def out_size(self) -> int:
        return self.weight.shape[0]


def conv_out_shape(weight_shape: tuple, in_shape: tuple, stride: int) -> tuple[int, int, int]:
    """(O, Ho, Wo) of a valid (unpadded) strided convolution with weights (O, C, kh, kw)."""
    o, _, kh, kw = weight_shape
    _, h, w = in_shape
    return (o, (h - kh) // stride + 1, (w - kw) // stride + 1)


@dataclass
class ConvLayer:
    """A valid (unpadded) strided 2-D convolution; W is (O, C, kh, kw), inputs (C, H, W)."""

    name: str
    weight: np.ndarray
    bias: np.ndarray
    stride: int
    in_shape: tuple[int, int, int]

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return conv_out_shape(self.weight.shape, self.in_shape, self.stride)

    @property
    def in_size(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def out_size(self) -> int:
        return int(np.prod(self.out_shape))


Layer = DenseLayer | ConvLayer


@dataclass
class SourceNetwork:
    """A feed-forward Q-network: conv and linear layers with ReLU between, linear output.

    Its input is the environment's observation as the env emits it (e.g. uint8 frames);
    a scale the checkpoint's forward applied (CleanRL's x / 255) is folded into layer 0.
    """

    layers: list[Layer]
    format: str                      # "state_dict", "sb3" or "cleanrl"
    sha256: str                      # of the checkpoint file
    meta: dict = field(default_factory=dict)

    @property
    def in_shape(self) -> tuple[int, ...]:
        first = self.layers[0]
        return tuple(first.in_shape) if isinstance(first, ConvLayer) else (first.in_size,)

    @property
    def in_features(self) -> int:
        return self.layers[0].in_size

    @property
    def n_actions(self) -> int:
        return self.layers[-1].out_size

    def to_torch(self) -> FeedForwardQ:
        """The float reference network with these weights."""
        return FeedForwardQ.from_layers(self.layers)
