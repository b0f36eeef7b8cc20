"""stable-baselines3 DQN zips: `policy.pth` (a state dict) and `data` (JSON), read member by member."""
from __future__ import annotations

import json
import zipfile
from collections.abc import Callable

from lavaloop.conversion.loaders.state_dict import PIXEL_SCALE, parse_state_dict
from lavaloop.conversion.network import SourceNetwork
from lavaloop.errors import CheckpointError


def read_data(zf: zipfile.ZipFile) -> dict:
    """The JSON `data` member; serialized (pickled) entries inside it are never decoded."""
    try:
        return json.loads(zf.read("data"))
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"stable-baselines3 zip without a readable 'data' member: {exc}") from exc


def check_dqn_policy(data: dict) -> None:
    """Reject non-DQN policies and non-ReLU activations, using only the readable JSON fields."""
    module = (data.get("policy_class") or {}).get("__module__", "")
    if module and module != "stable_baselines3.dqn.policies":
        raise CheckpointError(f"stable-baselines3 zip holds a {module} policy, not a DQN")
    act = str((data.get("policy_kwargs") or {}).get("activation_fn", "ReLU"))
    if "ReLU" not in act:
        raise CheckpointError(f"stable-baselines3 DQN with activation {act}: only ReLU is supported")


def load_sb3_zip(zf: zipfile.ZipFile, sha256: str, torch_load: Callable[[bytes, str], object]) -> SourceNetwork:
    data = read_data(zf)
    check_dqn_policy(data)
    try:
        policy = torch_load(zf.read("policy.pth"), "policy.pth")
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"stable-baselines3 zip is damaged: {exc}") from exc
    normalize = (data.get("policy_kwargs") or {}).get("normalize_images", True)
    layers = parse_state_dict(policy, "policy.pth", prefix="q_net.",      # features extractor + head
                              pixel_scale=PIXEL_SCALE if normalize else 1.0)
    obs_shape = (data.get("observation_space") or {}).get("_shape")
    n_actions = (data.get("action_space") or {}).get("n")
    meta = {"observation_shape": obs_shape, "n_actions": int(n_actions) if n_actions else None}
    first = layers[0]
    in_shape = list(getattr(first, "in_shape", [first.in_size]))
    if obs_shape is not None and in_shape != list(obs_shape):
        raise CheckpointError(f"policy input shape {tuple(in_shape)} does not match "
                              f"the saved observation space {tuple(obs_shape)}")
    return SourceNetwork(layers=layers, format="sb3", sha256=sha256, meta=meta)
