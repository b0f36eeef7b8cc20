"""Environment construction from a JSON-able spec (shared by calibration, training, EnvIO and replay)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import gymnasium as gym
import numpy as np

from lavaloop.errors import LavaloopError
from lavaloop.teams import is_team_id


class UnknownEnvError(LavaloopError):
    """The environment id is not registered with gymnasium."""


@dataclass(frozen=True)
class AtariPreprocessing:
    """The DQN's view of an ALE game (Mnih et al. 2015; the DQN->SNN paper's protocol).

    The ALE env runs with frameskip 1; gymnasium's AtariPreprocessing repeats each action
    `frame_skip` times with a max over the last two frames, starts episodes with up to
    `noop_max` no-ops and downsamples to `screen_size`^2 grayscale; `frame_stack` frames
    are stacked (padded with the reset frame). `repeat_action_probability` is ALE's
    sticky-action probability (0 = the paper's NoFrameskip-v4 games, 0.25 = ALE v5).
    Evaluation plays full games (no episode end at life loss).
    """

    noop_max: int = 30
    frame_skip: int = 4
    screen_size: int = 84
    frame_stack: int = 4
    repeat_action_probability: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.repeat_action_probability <= 1.0:
            raise LavaloopError(f"sticky-action probability must be in [0, 1], got {self.repeat_action_probability}")

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        return (self.frame_stack, self.screen_size, self.screen_size)


@dataclass(frozen=True)
class POMDPTask:
    """A partially observable variant of a gymnasium task: only some observation dims are seen.

    The ids follow pomdp-baselines (Ni et al. 2022), used by the GRSN paper: `-V` keeps the
    velocities, `-P` the positions; episodes are capped at `max_episode_steps`.
    """

    base_id: str
    obs_dims: tuple[int, ...]
    max_episode_steps: int


POMDP_TASKS = {
    "CartPole-V": POMDPTask("CartPole-v1", (1, 3), 200),
    "CartPole-P": POMDPTask("CartPole-v1", (0, 2), 200),
    "Pendulum-V": POMDPTask("Pendulum-v1", (2,), 200),
    # velocities, angular velocity and leg contacts (the GRSN paper's dims); box2d
    "LunarLander-V": POMDPTask("LunarLander-v3", (2, 3, 5, 6, 7), 1000),
}


class ObservationMask(gym.ObservationWrapper):
    """Keep only the observation entries `dims` of a 1-d Box observation."""

    def __init__(self, env: gym.Env, dims: tuple[int, ...]):
        super().__init__(env)
        self.dims = list(dims)
        box = env.observation_space
        self.observation_space = gym.spaces.Box(box.low[self.dims], box.high[self.dims], dtype=box.dtype)

    def observation(self, obs):
        return obs[self.dims]


@dataclass(frozen=True)
class EnvSpec:
    """What is needed to rebuild the environment a policy was trained on.

    `obs_dims` (POMDP tasks) keeps only those observation entries of the base env. A Box
    action space is rescaled to [-1, 1] per dimension (the range of continuous policies).
    `physics` changes numeric attributes of the built env (`set_physics`): a drifted task,
    e.g. {"length": 1.0} for CartPole with a pole twice as long.
    """

    id: str
    kwargs: dict = field(default_factory=dict)
    max_episode_steps: int | None = None
    atari: AtariPreprocessing | None = None
    obs_dims: tuple[int, ...] | None = None
    physics: dict = field(default_factory=dict)

    @classmethod
    def for_id(cls, env_id: str, sticky: float | None = None, max_episode_steps: int | None = None) -> EnvSpec:
        """The default spec of `env_id`: ALE games get the DQN preprocessing."""
        if is_atari(env_id):
            pre = AtariPreprocessing(repeat_action_probability=0.0 if sticky is None else sticky)
            return cls(env_id, max_episode_steps=max_episode_steps, atari=pre)
        if env_id in POMDP_TASKS:
            task = POMDP_TASKS[env_id]
            return cls(env_id, max_episode_steps=max_episode_steps or task.max_episode_steps,
                       obs_dims=task.obs_dims)
        if sticky is not None:
            raise LavaloopError(f"sticky actions apply to ALE games only, not {env_id!r}")
        return cls(env_id, max_episode_steps=max_episode_steps)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EnvSpec:
        atari = d.get("atari")
        dims = d.get("obs_dims")
        return cls(id=d["id"], kwargs=dict(d.get("kwargs", {})), max_episode_steps=d.get("max_episode_steps"),
                   atari=AtariPreprocessing(**atari) if atari else None,
                   obs_dims=tuple(dims) if dims is not None else None, physics=dict(d.get("physics", {})))

    @property
    def base_id(self) -> str:
        """The gymnasium id that is built (a POMDP task's underlying env)."""
        return POMDP_TASKS[self.id].base_id if self.id in POMDP_TASKS else self.id


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


def game(env_id: str) -> str:
    """The game of an ALE id: 'ALE/Pong-v5' -> 'pong'."""
    return env_id.removeprefix("ALE/").rsplit("-v", 1)[0].lower()


def check_env_id(env_id: str) -> None:
    """Raise UnknownEnvError with a clear message if gymnasium does not know `env_id`."""
    if env_id in POMDP_TASKS:
        return
    if is_team_id(env_id):
        raise UnknownEnvError(f"{env_id!r} is a multi-agent task: it takes a QMIX team checkpoint "
                              "(lavaloop.trainers.qmix), not a single-agent policy")
    if is_atari(env_id):
        import ale_py

        gym.register_envs(ale_py)
    if env_id not in gym.registry:
        try:
            gym.spec(env_id)  # also resolves namespaced ids after their plugin import
        except gym.error.Error as exc:
            raise UnknownEnvError(f"unknown environment id {env_id!r}") from exc


# Attributes an env computes from others in its constructor, recomputed after `set_physics`.
DERIVED_PHYSICS = {
    "CartPoleEnv": lambda e: (setattr(e, "total_mass", e.masspole + e.masscart),
                              setattr(e, "polemass_length", e.masspole * e.length)),
}


def set_physics(env: gym.Env, physics: dict) -> None:
    """Set numeric attributes of `env.unwrapped` (e.g. CartPole's `length`, `masspole`,
    `gravity`) and recompute what its constructor derives from them (DERIVED_PHYSICS).

    Raises LavaloopError naming the attribute if the env has no such numeric attribute.
    """
    u = env.unwrapped
    for name, value in physics.items():
        old = getattr(u, name, None)
        if isinstance(old, bool) or not isinstance(old, (int, float)) or name.startswith("_"):
            known = sorted(k for k, v in vars(u).items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith("_"))
            raise LavaloopError(f"{type(u).__name__} has no numeric attribute {name!r} to change "
                                f"(it has: {', '.join(known)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LavaloopError(f"env parameter {name} must be a number, got {value!r}")
        setattr(u, name, type(old)(value) if isinstance(old, float) else value)
    derive = DERIVED_PHYSICS.get(type(u).__name__)
    if physics and derive is not None:
        derive(u)


def parse_env_param(text: str) -> tuple[str, float]:
    """"NAME=NUMBER" -> (name, value): one `EnvSpec.physics` entry as a command line gives it."""
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise ValueError(f"expected NAME=NUMBER, got {text!r}") from None


def make_env(spec: EnvSpec) -> gym.Env:
    """Build the gymnasium environment described by `spec`."""
    check_env_id(spec.id)
    pre = spec.atari
    if pre is None:
        limit = {} if spec.max_episode_steps is None else {"max_episode_steps": spec.max_episode_steps}
        env = gym.make(spec.base_id, **spec.kwargs, **limit)
        set_physics(env, spec.physics)
        if isinstance(env.action_space, gym.spaces.Box):    # continuous policies act in [-1, 1]
            one = np.ones(env.action_space.shape, env.action_space.dtype)
            env = gym.wrappers.RescaleAction(env, -one, one)
        return env if spec.obs_dims is None else ObservationMask(env, spec.obs_dims)
    if spec.physics:
        raise LavaloopError("env parameters (physics) apply to non-ALE environments only")
    env = gym.make(spec.id, frameskip=1, repeat_action_probability=pre.repeat_action_probability,
                   **spec.kwargs)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=pre.noop_max, frame_skip=pre.frame_skip,
                                          screen_size=pre.screen_size, terminal_on_life_loss=False,
                                          grayscale_obs=True, scale_obs=False)
    env = gym.wrappers.FrameStackObservation(env, pre.frame_stack)
    if spec.max_episode_steps is not None:  # in agent steps, not frames
        env = gym.wrappers.TimeLimit(env, spec.max_episode_steps)
    return env


def same_outcome(env: gym.Env, a: int, b: int, frames: int) -> bool:
    """Whether ALE actions a and b (action-space indices) lead to the same emulator: its full
    state (paddles and RNG included) after one agent step (`frames` frames) with the action
    and one with NOOP, which clears the input latch. In Pong NOOP = FIRE, RIGHT = RIGHTFIRE,
    LEFT = LEFTFIRE, and a paddle at the wall ignores moves into it. The emulator is
    restored afterwards."""
    ale, action_set = env.unwrapped.ale, env.unwrapped._action_set
    start, after = ale.cloneState(include_rng=True), []
    for action in (a, b):
        ale.restoreState(start)
        for code in (action_set[action], action_set[0]):
            for _ in range(frames):
                ale.act(code)
        after.append(ale.cloneState(include_rng=True))
    ale.restoreState(start)
    return after[0].equals(after[1])


def episode_limit(spec: EnvSpec, default: int = 27_000) -> int:
    """The most agent steps an episode may take (the env's time limit, else `default`)."""
    if spec.max_episode_steps is not None:
        return spec.max_episode_steps
    registered = gym.spec(spec.base_id).max_episode_steps
    return registered if registered is not None else default
