"""Infer a Linear/ReLU stack from a state dict's tensor names and shapes."""
from __future__ import annotations

import numpy as np
import torch

from conversion.errors import CheckpointError
from conversion.network import DenseLayer

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "q_network")


def unwrap(obj: object, what: str) -> dict:
    """The state dict itself, also when saved inside a dict under a usual key."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                return unwrap(obj[key], what)
    raise CheckpointError(f"{what}: not a state dict of tensors (found {type(obj).__name__})")


def parse_state_dict(obj: object, what: str, prefix: str = "") -> list[DenseLayer]:
    """Layers of the MLP stored in `obj`, in registration order; keys outside `prefix` are ignored."""
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
        if w.ndim != 2:
            raise CheckpointError(
                f"{what}: unsupported layer {name!r} ({w.ndim}-D weight {tuple(w.shape)}); "
                "only Linear layers are supported")
        b = params.get("bias", torch.zeros(w.shape[0]))
        if tuple(b.shape) != (w.shape[0],):
            raise CheckpointError(f"{what}: layer {name!r} bias shape {tuple(b.shape)} "
                                  f"does not match weight {tuple(w.shape)}")
        layers.append(DenseLayer(name, w.detach().float().numpy().copy(),
                                 b.detach().float().numpy().copy()))
    for prev, nxt in zip(layers, layers[1:]):
        if nxt.weight.shape[1] != prev.weight.shape[0]:
            raise CheckpointError(
                f"{what}: layer {nxt.name!r} expects {nxt.weight.shape[1]} inputs but "
                f"{prev.name!r} has {prev.weight.shape[0]} outputs")
    if any(not np.isfinite(l.weight).all() or not np.isfinite(l.bias).all() for l in layers):
        raise CheckpointError(f"{what}: non-finite weights")
    return layers
