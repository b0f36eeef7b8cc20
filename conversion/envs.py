"""Environment construction from a JSON-able spec (shared by calibration, EnvIO and replay)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import gymnasium as gym

from conversion.errors import LavaloopError


class UnknownEnvError(LavaloopError):
    """The environment id is not registered with gymnasium."""


@dataclass(frozen=True)
class EnvSpec:
    """What is needed to rebuild the environment a policy was trained on."""

    id: str
    kwargs: dict = field(default_factory=dict)
    max_episode_steps: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EnvSpec":
        return cls(id=d["id"], kwargs=dict(d.get("kwargs", {})),
                   max_episode_steps=d.get("max_episode_steps"))


def check_env_id(env_id: str) -> None:
    """Raise UnknownEnvError with a clear message if gymnasium does not know `env_id`."""
    if env_id not in gym.registry:
        try:
            gym.spec(env_id)  # also resolves namespaced ids after their plugin import
        except gym.error.Error as exc:
            raise UnknownEnvError(f"unknown environment id {env_id!r}") from exc


def make_env(spec: EnvSpec) -> gym.Env:
    """Build the gymnasium environment described by `spec`."""
    check_env_id(spec.id)
    kwargs = dict(spec.kwargs)
    if spec.max_episode_steps is not None:
        kwargs["max_episode_steps"] = spec.max_episode_steps
    return gym.make(spec.id, **kwargs)


def episode_limit(spec: EnvSpec, default: int = 27_000) -> int:
    """The most agent steps an episode may take (the env's time limit, else `default`)."""
    if spec.max_episode_steps is not None:
        return spec.max_episode_steps
    registered = gym.spec(spec.id).max_episode_steps
    return registered if registered is not None else default
