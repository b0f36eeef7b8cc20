"""Cooperative multi-agent tasks: PettingZoo's multi-particle environments (package `mpe2`).

A team task is named like a gymnasium id with the package as prefix, `mpe2:simple_spread_v3`.
All agents share one policy network (as in QMIX), so the team's view is made uniform:

* every agent's observation is zero-padded to the longest one and followed by a one-hot of
  the agent's index (the network's `obs_dim` is longest + number of agents);
* every agent has the largest action count; actions an agent does not have are masked
  (`TeamShape.masks`) wherever an action is chosen, in training and on the chip;
* the team reward of a step is the sum of the agents' rewards (EPyMARL's convention), and
  a team return sums it over the episode.

The global state (`env.state()`, the agents' observations concatenated) is used only by
QMIX's mixing network in training.
"""
from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field

import numpy as np

from lavaloop.errors import LavaloopError, ShapeMismatchError

PREFIX = "mpe2:"
# Cooperative MPE tasks (every agent's reward serves the team) and their constructor arguments.
TASKS = {
    "simple_spread_v3": {"N": 3, "local_ratio": 0.5},           # cover 3 landmarks, avoid collisions
    "simple_speaker_listener_v4": {},                            # a speaker tells a listener its goal
    "simple_reference_v3": {"local_ratio": 0.5},                 # each agent knows the other's goal
}
MAX_CYCLES = 25     # MPE's default episode length


def is_team_id(env_id: str) -> bool:
    return env_id.startswith(PREFIX)


@dataclass(frozen=True)
class TeamSpec:
    """What is needed to rebuild a cooperative MPE task (discrete actions)."""

    id: str
    kwargs: dict = field(default_factory=dict)
    max_cycles: int = MAX_CYCLES

    @classmethod
    def for_id(cls, env_id: str) -> TeamSpec:
        """The spec of `mpe2:TASK`; LavaloopError for an id that is not a known cooperative task."""
        task = env_id.removeprefix(PREFIX)
        if not is_team_id(env_id) or task not in TASKS:
            raise LavaloopError(f"unknown MPE task {env_id!r} (known: {', '.join(PREFIX + t for t in TASKS)})")
        return cls(env_id, dict(TASKS[task]))

    @property
    def task(self) -> str:
        return self.id.removeprefix(PREFIX)

    def make(self):
        """A PettingZoo parallel env with discrete actions."""
        module = importlib.import_module(f"mpe2.{self.task}")
        return module.parallel_env(max_cycles=self.max_cycles, continuous_actions=False, **self.kwargs)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TeamSpec:
        return cls(d["id"], dict(d.get("kwargs", {})), int(d.get("max_cycles", MAX_CYCLES)))


@dataclass(frozen=True)
class TeamShape:
    """The agents of a task and the uniform view the shared network has of them."""

    agents: tuple[str, ...]
    obs_dims: tuple[int, ...]
    n_actions: tuple[int, ...]
    state_dim: int

    @classmethod
    def of(cls, spec: TeamSpec) -> TeamShape:
        env = spec.make()
        try:
            env.reset(seed=0)
            agents = tuple(env.possible_agents)
            return cls(agents, tuple(int(np.prod(env.observation_space(a).shape)) for a in agents),
                       tuple(int(env.action_space(a).n) for a in agents), int(np.prod(env.state().shape)))
        finally:
            env.close()

    @classmethod
    def from_dict(cls, d: dict) -> TeamShape:
        return cls(tuple(d["agents"]), tuple(d["obs_dims"]), tuple(d["n_actions"]), int(d["state_dim"]))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def n_agents(self) -> int:
        return len(self.agents)

    @property
    def obs_pad(self) -> int:
        return max(self.obs_dims)

    @property
    def agent_obs_dim(self) -> int:
        """The shared network's observation size: padded observation + agent one-hot."""
        return self.obs_pad + self.n_agents

    @property
    def max_actions(self) -> int:
        return max(self.n_actions)

    def agent_obs(self, obs: dict) -> np.ndarray:
        """(n_agents, agent_obs_dim) float32: each agent's padded observation and its one-hot index."""
        out = np.zeros((self.n_agents, self.agent_obs_dim), np.float32)
        for i, (a, n) in enumerate(zip(self.agents, self.obs_dims)):
            out[i, :n] = np.ravel(obs[a])
            out[i, self.obs_pad + i] = 1.0
        return out

    def masks(self) -> np.ndarray:
        """(n_agents, max_actions) bool: which actions each agent has."""
        return np.arange(self.max_actions)[None] < np.asarray(self.n_actions)[:, None]

    def check_fits(self, other: TeamShape, trained_on: str, env_id: str) -> None:
        """ShapeMismatchError unless `other` (the env's shape) has this team's agents and sizes."""
        if other.n_agents != self.n_agents:
            raise ShapeMismatchError(f"the team was trained on {trained_on} with {self.n_agents} agents; "
                                     f"{env_id} has {other.n_agents}")
        if other.obs_dims != self.obs_dims or other.n_actions != self.n_actions:
            raise ShapeMismatchError(f"the team was trained on {trained_on} (observation sizes {list(self.obs_dims)}, "
                                     f"actions {list(self.n_actions)}); {env_id} has observation sizes "
                                     f"{list(other.obs_dims)}, actions {list(other.n_actions)}")


def masked_argmax(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Argmax over each row's available actions (first on ties)."""
    return np.argmax(np.where(mask, values, -np.inf), axis=-1)
