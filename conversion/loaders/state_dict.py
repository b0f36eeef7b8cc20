"""Infer a Conv2d/Linear/ReLU stack from a state dict's tensor names and shapes.

Convolutions must be the Nature DQN's (Mnih et al. 2015): kernel 8, 4, 3 with strides
4, 2, 1 on 84x84 frames, no padding (the stable-baselines3 and CleanRL layouts); strides
are not stored in a state dict, so other conv stacks are refused. Image networks take
uint8 frames scaled by 1/255 (as every supported trainer does); the scale is folded into
the first layer's weights.
"""
from __future__ import annotations

import numpy as np
import torch

from lavaloop.conversion.network import ConvLayer, DenseLayer
from lavaloop.errors import CheckpointError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "q_network")
NATURE_STRIDES = {8: 4, 4: 2, 3: 1}       # kernel size -> stride of the Nature DQN
SCREEN = 84
PIXEL_SCALE = 1 / 255


def unwrap(obj: object, what: str) -> dict:
    """The state dict itself, also when saved inside a dict under a usual key."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                return unwrap(obj[key], what)
    raise CheckpointError(f"{what}: not a state dict of tensors (found {type(obj).__name__})")


def parse_state_dict(obj: object, what: str, prefix: str = "", pixel_scale: float = PIXEL_SCALE) -> list:
    """Layers of the network stored in `obj`, in registration order; keys outside `prefix` are
    ignored. A first conv layer gets `pixel_scale` folded into its weights."""
    sd = unwrap(obj, what)
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in sd.items():
        if not key.startswith(prefix):
            continue
        module, _, param = key[len(prefix):].rpartition(".")
        modules.setdefault(module, {})[param] = tensor
    if not modules:
        raise CheckpointError(f"{what}: no parameters found" + (f" under {prefix!r}" if prefix else ""))
    layers = []
    for module, params in modules.items():
        name = prefix + module
        extra = sorted(set(params) - {"weight", "bias"})
        if extra or "weight" not in params:
            raise CheckpointError(
                f"{what}: unsupported layer {name!r} (parameters {sorted(params)}); "
                "only Linear layers with ReLU between them are supported")
        w = params["weight"]
        if w.ndim not in (2, 4):
            raise CheckpointError(
                f"{what}: unsupported layer {name!r} ({w.ndim}-D weight {tuple(w.shape)}); "
                "only Linear and Conv2d layers are supported")
        b = params.get("bias", torch.zeros(w.shape[0]))
        if tuple(b.shape) != (w.shape[0],):
            raise CheckpointError(f"{what}: layer {name!r} bias shape {tuple(b.shape)} "
                                  f"does not match weight {tuple(w.shape)}")
        w, b = w.detach().float().numpy().copy(), b.detach().float().numpy().copy()
        layers.append(conv_layer(name, w, b, layers, what) if w.ndim == 4 else DenseLayer(name, w, b))
    if isinstance(layers[-1], ConvLayer):
        raise CheckpointError(f"{what}: the output layer {layers[-1].name!r} is a convolution; "
                              "a Q-network ends with a Linear layer")
    for prev, nxt in zip(layers, layers[1:]):
        if isinstance(nxt, DenseLayer) and nxt.in_size != prev.out_size:
            raise CheckpointError(
                f"{what}: layer {nxt.name!r} expects {nxt.in_size} inputs but "
                f"{prev.name!r} has {prev.out_size} outputs")
    if isinstance(layers[0], ConvLayer):
        layers[0].weight *= pixel_scale
    if any(not np.isfinite(l.weight).all() or not np.isfinite(l.bias).all() for l in layers):
        raise CheckpointError(f"{what}: non-finite weights")
    return layers


def conv_layer(name: str, w: np.ndarray, b: np.ndarray, before: list, what: str) -> ConvLayer:
    """A Nature-DQN convolution, its stride and input shape inferred from its place in the stack."""
    o, c, kh, kw = w.shape
    if kh != kw or kh not in NATURE_STRIDES:
        raise CheckpointError(f"{what}: conv layer {name!r} has a {kh}x{kw} kernel; only the Nature "
                              "DQN's convolutions (8x8/4, 4x4/2, 3x3/1) are supported")
    if before and not isinstance(before[-1], ConvLayer):
        raise CheckpointError(f"{what}: conv layer {name!r} follows a Linear layer")
    in_shape = before[-1].out_shape if before else (c, SCREEN, SCREEN)
    if in_shape[0] != c:
        raise CheckpointError(f"{what}: conv layer {name!r} expects {c} channels but "
                              f"{before[-1].name!r} has {in_shape[0]}")
    layer = ConvLayer(name, w, b, NATURE_STRIDES[kh], tuple(in_shape))
    if min(layer.out_shape[1:]) < 1:
        raise CheckpointError(f"{what}: conv layer {name!r} does not fit its {in_shape} input")
    return layer
