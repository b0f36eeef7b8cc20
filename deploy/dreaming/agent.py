"""The dreaming agent's protocol: real games, dreams, checkpoints; on any chip backend.

A game: reset, 18 NOOPs, then `agent_steps` agent steps of one window each. The world model
sees (state, action) one window after the agent acted on that state, so it learns the
transition without extra windows. A dream (after each real game): start from a real reset
state; per dream step one window lets the agent choose, one lets the model predict.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np

from lavaloop.deploy.dreaming import pong
from lavaloop.deploy.dreaming.chip import ChipSetup
from lavaloop.deploy.dreaming.network import Topology, draw_network
from lavaloop.deploy.dreaming.readouts import Policy, ReadoutRules, WorldModel
from lavaloop.errors import LavaloopError
from lavaloop.options import at_least, within
from lavaloop.processes.pong_io.game import RESET, SHOW, STEP, command
from lavaloop.profiles import MixedSignalProfile, load_profile


@dataclass(frozen=True)
class DreamConfig:
    """Everything that determines a run; a run directory resumes only with the same config."""

    runs: int = 10
    games: int = 2000
    dream: bool = True
    profile: str = "dynapse1"
    mismatch_sigma: float | None = None      # None: the profile's
    mismatch_seed: int = 0                   # one chip instance for all runs
    seed: int = 0                            # run r uses seed + r (network, env, policy)
    window: int = 10                         # chip steps (ms) per agent step
    noop_steps: int = 18
    agent_steps: int = 100
    dream_steps: int = 50
    silent_games: int = 50                   # rewards count x0 for the policy in these first games
    sticky: float = 0.25
    place_rate: float = 7000.0
    place_sigma: float = 20.0
    action_rate: float = 150.0
    topology: Topology = field(default_factory=Topology)
    rules: ReadoutRules = field(default_factory=ReadoutRules)

    def __post_init__(self):
        for name in ("runs", "games", "window", "agent_steps"):
            at_least(name, getattr(self, name), 1)
        for name in ("mismatch_seed", "seed", "noop_steps", "dream_steps", "silent_games"):
            at_least(name, getattr(self, name), 0)
        at_least("mismatch_sigma", self.mismatch_sigma, 0.0)
        within("sticky-action probability", self.sticky, 0, 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DreamConfig:
        d = dict(d)
        d["topology"], d["rules"] = Topology(**d["topology"]), ReadoutRules(**d["rules"])
        return cls(**d)

    def chip_profile(self) -> MixedSignalProfile:
        p = load_profile(self.profile)
        if not isinstance(p, MixedSignalProfile):
            raise LavaloopError(f"profile {p.name!r} is a {p.kind} chip; the dreaming agent needs a "
                                "mixed-signal profile (dynapse1, dynapse2)")
        return p

    def setups(self) -> list[ChipSetup]:
        """Networks and chip wiring of every run (checks the chip's limits)."""
        profile = self.chip_profile()
        table = pong.increments(pong.place_cell_rates(self.place_rate, self.place_sigma), profile.dt_ms)
        action_inc = int(pong.increments(np.array(self.action_rate), profile.dt_ms))
        env_fn = functools.partial(pong.make_env, sticky=self.sticky)
        return [ChipSetup(network=draw_network(self.topology, profile, self.seed + r, self.mismatch_seed,
                                               self.mismatch_sigma),
                          env_fn=env_fn, env_seed=self.seed + r, noise_seed=10_000 + self.seed + r,
                          noise_sigma=profile.noise_sigma, table=table, action_increment=action_inc,
                          phase_one=pong.PHASE_ONE, window=self.window, noop_steps=self.noop_steps,
                          ram_index=pong.RAM_INDEX, action_map=pong.ACTIONS)
                for r in range(self.runs)]


class DreamingAgent:
    """Readouts of R runs on the host, driving a chip backend that hosts the same R runs."""

    def __init__(self, cfg: DreamConfig, chip, first_run: int = 0, runs: int | None = None):
        self.cfg, self.chip = cfg, chip
        self.runs = cfg.runs if runs is None else runs
        self.h = cfg.topology.hidden
        self.rngs = [np.random.default_rng(cfg.seed + first_run + r) for r in range(self.runs)]
        self.policy = Policy(cfg.rules, self.runs, self.h, self.rngs)
        self.model = WorldModel(cfg.rules, self.runs, self.h)

    def _window(self, cmds: list[np.ndarray]):
        """(agent counts, world-model counts, info) of one window."""
        counts, info = self.chip.window(np.stack(cmds))
        return counts[:, :self.h], counts[:, self.h:], info

    def play(self, game: int) -> np.ndarray:
        """One real game; returns its return per run (the policy learns from it after game `silent_games`)."""
        cfg, R = self.cfg, self.runs
        weight = 0.0 if game < cfg.silent_games else 1.0
        self.policy.start_episode()
        self.model.start_episode()
        self.chip.expect(1 + cfg.agent_steps)
        agent, _, info = self._window([command(RESET)] * R)
        state = info[:, :4]
        actions = self.policy.act(agent)
        total = np.zeros(R)
        for k in range(cfg.agent_steps):
            agent, model, info = self._window([command(STEP, a) for a in actions])
            reward, new_state = info[:, 4], info[:, :4]
            total += reward
            self.policy.reward(weight * reward)
            delta_pred, reward_pred = self.model.predict(model)
            self.model.learn(delta_pred, reward_pred, new_state - state, reward)
            state = new_state
            if k + 1 < cfg.agent_steps:
                actions = self.policy.act(agent)
        self.policy.update()
        return total

    def dream(self, game: int) -> None:
        """One dream from a real reset state, ending in one policy update."""
        cfg, R = self.cfg, self.runs
        weight = 0.0 if game < cfg.silent_games else 1.0
        self.policy.start_episode()
        self.model.start_episode()
        self.chip.expect(2 * cfg.dream_steps)
        agent, _, info = self._window([command(RESET)] * R)
        state = info[:, :4].astype(np.float64)
        actions = self.policy.act(agent)
        for j in range(cfg.dream_steps):
            shown = np.clip(np.rint(state), 0, 255).astype(np.int64)
            _, model, _ = self._window([command(SHOW, 0, s, s, a) for s, a in zip(shown, actions)])
            delta_pred, reward_pred = self.model.predict(model)
            self.policy.reward(weight * reward_pred)
            state = np.clip(state + delta_pred, 0, 255)
            if j + 1 < cfg.dream_steps:
                new = np.clip(np.rint(state), 0, 255).astype(np.int64)
                agent, _, _ = self._window([command(SHOW, 0, n, s, a) for n, s, a in zip(new, shown, actions)])
                actions = self.policy.act(agent)
        self.policy.update()

    def state(self) -> dict:
        return {**self.policy.state(), **self.model.state()}

    def load(self, d: dict) -> None:
        self.policy.load(d)
        self.model.load(d)

    def rng_states(self) -> list[dict]:
        return [rng.bit_generator.state for rng in self.rngs]

    def set_rng_states(self, states: list[dict]) -> None:
        for rng, st in zip(self.rngs, states):
            rng.bit_generator.state = st
