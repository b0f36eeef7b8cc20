"""The canonical description of a source network, whatever checkpoint it came from."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from conversion.models.qnet import QNetwork


@dataclass
class DenseLayer:
    """A fully connected layer y = W x + b; W is (out, in). ReLU follows every layer but the last."""

    name: str
    weight: np.ndarray
    bias: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.weight.shape


@dataclass
class SourceNetwork:
    """A feed-forward Q-network: Linear/ReLU stack with a linear output layer."""

    layers: list[DenseLayer]
    format: str                      # "state_dict" or "sb3"
    sha256: str                      # of the checkpoint file
    meta: dict = field(default_factory=dict)

    @property
    def in_features(self) -> int:
        return self.layers[0].weight.shape[1]

    @property
    def n_actions(self) -> int:
        return self.layers[-1].weight.shape[0]

    def to_torch(self) -> QNetwork:
        """The float reference network with these weights."""
        return QNetwork.from_arrays([l.weight for l in self.layers], [l.bias for l in self.layers])
