"""Read a checkpoint file into a SourceNetwork, never unpickling arbitrary objects.

Supported: plain PyTorch / CleanRL state dicts of an MLP (`torch.save(model.state_dict())`)
and stable-baselines3 DQN zips (`model.save(...)`). The layout is told from the file itself.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import torch

from lavaloop.conversion.loaders.sb3 import load_sb3_zip
from lavaloop.conversion.loaders.state_dict import parse_state_dict
from lavaloop.conversion.network import SourceNetwork
from lavaloop.errors import CheckpointError


def torch_load(data: bytes, what: str) -> object:
    """torch.load with weights_only=True; any failure becomes a CheckpointError."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read {what} as a PyTorch checkpoint: {reason}") from exc


def load_checkpoint(path: str | Path) -> SourceNetwork:
    """Load a checkpoint of any supported layout."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint file: {path}")
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
            if "policy.pth" in names:
                return load_sb3_zip(zf, sha, torch_load)
            if not any(n.endswith("data.pkl") for n in names):
                raise CheckpointError(
                    f"{path.name}: a zip file that is neither a stable-baselines3 model "
                    "(no policy.pth member) nor a PyTorch checkpoint")
    obj = torch_load(data, path.name)
    return SourceNetwork(layers=parse_state_dict(obj, path.name), format="state_dict", sha256=sha)
