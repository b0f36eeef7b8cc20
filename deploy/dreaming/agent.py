"""The dreaming agent: its configuration, and our protocol of real games and dreams.

Our protocol ("ours"): a game is a reset, 18 NOOPs, then `agent_steps` agent steps of one
window each. The world model sees (state, action) one window after the agent acted on that
state, so it learns the transition without extra windows. A dream (after each real game):
start from a real reset state (or, `dream_start="visited"`, from a state the last game
visited, as model-based RL branches short rollouts from real states); per dream step one
window lets the agent choose, one lets the model predict. `paired_windows` makes real steps
like dream steps (`paired.PairedAgent`). The authors' protocol ("reference") is
`lavaloop.deploy.dreaming.reference`.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field, is_dataclass

import numpy as np

from lavaloop.deploy.dreaming import pong
from lavaloop.deploy.dreaming.chip import ChipSetup
from lavaloop.deploy.dreaming.network import Topology, draw_network
from lavaloop.deploy.dreaming.readouts import DreamBaseline, Policy, ReadoutRules, WorldModel
from lavaloop.errors import LavaloopError
from lavaloop.options import at_least, from_kwargs, one_of, within
from lavaloop.processes.pong_io.game import RESET, SHOW, STEP, command
from lavaloop.profiles import MixedSignalProfile, load_profile

PROTOCOLS = ("ours", "reference")
GENERATORS = ("regular", "restart")
DREAM_STARTS = ("reset", "visited")
# What the authors' released code does where ours differs (../shared/reference/dreaming_reference.md).
REFERENCE = {
    "window": 18,                 # ~18 ms of chip time per upload (README: ~1 h / 3 h per 2000-game run)
    "silent_games": 51,           # train.ipynb: rewards x `iteration > 50`
    "generators": "restart",      # agent.py L349-367: int(rate / 33) spikes per 30 ms, re-uploaded each step
    "clip_dreams": False,         # train.ipynb: ram = ram + ds_pred, unclipped
    # The weights: the released biases (params.py: NMDA weight (5, 47) agent, (4, 50) model, a 0.13 ratio
    # of currents) do not transfer (the efficacy also depends on per-core biases and mismatch; at 0.13 our
    # world model never fires). The readouts' gains say what counts the authors tuned to (they printed spike
    # totals to set the biases): the policy scales its counts by 5 (logits from J ~ N(0, 0.1): sparse
    # counts, as at our weight 0.03), the world model by 1, so its counts are ~5x the agent's: ratio 1.5
    # (measured over one game: 0.032 vs 0.142 spikes per neuron per read, 4.5x; docs/dreaming.md).
    "topology": {"action_input": False,                       # agent.py L143-151: from the 40 place cells only
                 "model_weight_ratio": 1.5},
    "rules": {"model_filter_gain": 1.0,                       # agent.py L245-248
              "adam_eps": 1e-5, "lr_drop": 0.99, "lr_drop_every": 10_000},   # optimizer.py, agent.py
}


@dataclass(frozen=True)
class DreamConfig:
    """Everything that determines a run; a run directory resumes only with the same config.

    Build it with `dream_config`, which starts from the protocol's settings. The fields after
    `rules` switch the authors' choices one by one (the ablations of the reference protocol).
    """

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
    dreams: int = 1                          # dreams after each real game, each dream_steps long
    dream_start: str = "reset"               # a dream starts from a real reset, or ("visited") from a state
    #                                          the last real game visited, drawn per dream and run
    silent_games: int = 50                   # rewards count x0 for the policy in these first games
    sticky: float = 0.25
    place_rate: float = 7000.0
    place_sigma: float = 20.0
    action_rate: float = 150.0
    topology: Topology = field(default_factory=Topology)
    rules: ReadoutRules = field(default_factory=ReadoutRules)
    protocol: str = "ours"                   # "reference": the authors' window structure (see reference.py)
    two_upload_counts: bool | None = None    # reference: counts add the other upload's window (None: iff dream)
    second_adam_step: bool = True            # a dream ends in its own policy update (else it joins the next game's)
    dream_rewards: bool = True               # ablation (False): dreams keep their policy updates, rewards x0
    clip_dreams: bool = True                 # dreamed states stay in 0..255
    generators: str = "regular"              # "restart": the authors' spike patterns, restarted each window
    paired_windows: bool = False             # ours: an agent window, then a world-model window, per step
    coding_level: float | None = None        # set both populations' weights for this coding level (drive.py)

    def __post_init__(self):
        for name, cls in (("topology", Topology), ("rules", ReadoutRules)):
            if isinstance(getattr(self, name), dict):
                object.__setattr__(self, name, from_kwargs(cls, getattr(self, name), name))
        one_of("protocol", self.protocol, PROTOCOLS)
        one_of("generators", self.generators, GENERATORS)
        one_of("dream_start", self.dream_start, DREAM_STARTS)
        if self.protocol == "ours" and self.two_upload_counts:
            raise LavaloopError("two_upload_counts needs protocol 'reference' (ours has one upload per step)")
        if self.protocol == "reference" and self.paired_windows:
            raise LavaloopError("paired_windows is our protocol's (the reference protocol has its own uploads)")
        for name in ("runs", "games", "window", "agent_steps", "dream_steps", "dreams"):
            at_least(name, getattr(self, name), 1)
        if (self.dreams != 1 or self.dream_start != "reset") and not self.dream:
            raise LavaloopError("dreams (per game) and dream_start need dreaming on")
        for name in ("mismatch_seed", "seed", "noop_steps", "silent_games"):
            at_least(name, getattr(self, name), 0)
        at_least("mismatch_sigma", self.mismatch_sigma, 0.0)
        within("sticky-action probability", self.sticky, 0, 1)
        if self.coding_level is not None:
            within("coding_level", self.coding_level, 0, 1, low_open=True)
            if self.protocol == "reference":
                raise LavaloopError("coding_level is our protocol's (the reference protocol keeps the authors' "
                                    "weight choices)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DreamConfig:
        return cls(**d)

    @property
    def model_windows(self) -> bool:
        """Reference protocol: whether each real step has a world-model upload after the agent's."""
        return self.dream or self.counts_two_uploads

    @property
    def counts_two_uploads(self) -> bool:
        return self.dream if self.two_upload_counts is None else self.two_upload_counts

    def chip_profile(self) -> MixedSignalProfile:
        p = load_profile(self.profile)
        if not isinstance(p, MixedSignalProfile):
            raise LavaloopError(f"profile {p.name!r} is a {p.kind} chip; the dreaming agent needs a "
                                "mixed-signal profile (dynapse1, dynapse2)")
        return p

    def setups(self) -> list[ChipSetup]:
        """Networks and chip wiring of every run (checks the chip's limits)."""
        profile = self.chip_profile()
        rate = pong.restart_increments if self.generators == "restart" else pong.increments
        table = rate(pong.place_cell_rates(self.place_rate, self.place_sigma), profile.dt_ms)
        action_inc = int(rate(np.array(self.action_rate), profile.dt_ms))
        env_fn = functools.partial(pong.make_env, sticky=self.sticky)
        return [ChipSetup(network=draw_network(self.topology, profile, self.seed + r, self.mismatch_seed,
                                               self.mismatch_sigma),
                          env_fn=env_fn, env_seed=self.seed + r, noise_seed=10_000 + self.seed + r,
                          noise_sigma=profile.noise_sigma, table=table, action_increment=action_inc,
                          phase_one=pong.PHASE_ONE, window=self.window, noop_steps=self.noop_steps,
                          ram_index=pong.RAM_INDEX, action_map=pong.ACTIONS, restart=self.generators == "restart")
                for r in range(self.runs)]


def dream_config(options: dict) -> DreamConfig:
    """A DreamConfig from options as `lavaloop.dream` and sweeps take them: the protocol's
    settings (REFERENCE for "reference"), then the options; `topology` and `rules` may be
    partial dicts."""
    protocol = options.get("protocol", "ours")
    one_of("protocol", protocol, PROTOCOLS)
    preset = REFERENCE if protocol == "reference" else {}
    merged = {**preset, **options}
    for key in ("topology", "rules"):
        given = options.get(key, {})
        if not isinstance(given, dict):
            if not is_dataclass(given):
                raise LavaloopError(f"dream: {key} must be a dict or a {key} dataclass, got {given!r}")
            given = asdict(given)
        merged[key] = {**preset.get(key, {}), **given}
    return from_kwargs(DreamConfig, merged, "dream")


class DreamingAgent:
    """Readouts of R runs on the host, driving a chip backend that hosts the same R runs."""

    def __init__(self, cfg: DreamConfig, chip, first_run: int = 0, runs: int | None = None):
        self.cfg, self.chip = cfg, chip
        self.runs = cfg.runs if runs is None else runs
        self.h = cfg.topology.hidden
        self.rngs = [np.random.default_rng(cfg.seed + first_run + r) for r in range(self.runs)]
        self.policy = Policy(cfg.rules, self.runs, self.h, self.rngs)
        self.model = WorldModel(cfg.rules, self.runs, self.h)
        self.baseline = DreamBaseline(cfg.rules.dream_baseline, self.runs) if cfg.rules.dream_baseline else None
        self.visited = np.zeros((self.runs, cfg.agent_steps, 4), np.int64)   # the last game's states, per step

    def _window(self, cmds: list[np.ndarray]):
        """(agent counts, world-model counts, info) of one window."""
        counts, info = self.chip.window(np.stack(cmds))
        return counts[:, :self.h], counts[:, self.h:], info

    def play(self, game: int) -> np.ndarray:
        """One real game; returns its return per run (the policy learns from it after game `silent_games`)."""
        cfg, R = self.cfg, self.runs
        weight = 0.0 if game < cfg.silent_games else 1.0
        self.policy.start_episode(keep_gradient=self.dream_gradient_waits)
        self.model.start_episode()
        self.chip.expect(1 + cfg.agent_steps)
        agent, _, info = self._window([command(RESET)] * R)
        state = info[:, :4]
        actions = self.policy.act(agent)
        total = np.zeros(R)
        for k in range(cfg.agent_steps):
            self.visited[:, k] = state
            agent, model, info = self._window([command(STEP, a) for a in actions])
            reward, new_state = info[:, 4], info[:, :4]
            total += reward
            self.policy.reward(reward, weight)
            delta_pred, reward_pred = self.model.predict(model, actions)
            self.model.learn(delta_pred, reward_pred, new_state - state, reward, actions)
            state = new_state
            if k + 1 < cfg.agent_steps:
                actions = self.policy.act(agent)
        self.policy.update()
        return total

    def dream(self, game: int) -> None:
        """`cfg.dreams` dreams after real game `game`, each ending in a policy update (without
        `second_adam_step`: their gradients add up and join the next game's)."""
        for k in range(self.cfg.dreams):
            self.dream_once(game, keep_gradient=k > 0 and not self.cfg.second_adam_step)

    def dream_once(self, game: int, keep_gradient: bool = False) -> None:
        """One dream from a real reset state (or one the last game visited, `cfg.dream_start`);
        `keep_gradient`: add to the policy gradient so far."""
        cfg, R = self.cfg, self.runs
        weight = 0.0 if game < cfg.silent_games or not cfg.dream_rewards else 1.0
        self.policy.start_episode(keep_gradient=keep_gradient)
        self.model.start_episode()
        self.chip.expect(2 * cfg.dream_steps)
        if cfg.dream_start == "reset":
            agent, info = self.dream_agent_counts([command(RESET)] * R)
            state = info[:, :4].astype(np.float64)
        else:   # shown as a reset shows its state: both views, no action
            pick = np.array([rng.integers(cfg.agent_steps) for rng in self.rngs])
            state = self.visited[np.arange(R), pick].astype(np.float64)
            agent, _ = self.dream_agent_counts([command(SHOW, 0, v, v) for v in self.view(state)])
        actions = self.policy.act(agent)
        for j in range(cfg.dream_steps):
            shown = self.view(state)
            model = self.dream_model_counts(self.dream_model_window(shown, actions))
            delta_pred, reward_pred = self.model.predict(model, actions)
            self.policy.reward(self.baseline.centre(reward_pred) if self.baseline else reward_pred, weight)
            state = self.dreamed(state + delta_pred)
            if j + 1 < cfg.dream_steps:
                agent, _ = self.dream_agent_counts(self.dream_agent_window(self.view(state), shown, actions))
                actions = self.policy.act(agent)
        if self.baseline:
            self.baseline.finish()
        if cfg.second_adam_step:
            self.policy.update()

    def dream_agent_counts(self, cmds: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """A dream's agent window: (the agent's counts, info)."""
        agent, _, info = self._window(cmds)
        return agent, info

    def dream_model_counts(self, cmds: list[np.ndarray]) -> np.ndarray:
        """A dream's world-model window: the model's counts."""
        return self._window(cmds)[1]

    @staticmethod
    def dream_model_window(shown, actions) -> list[np.ndarray]:
        """A dream's world-model window: both populations see the dreamed state, the model also the action."""
        return [command(SHOW, 0, s, s, a) for s, a in zip(shown, actions)]

    @staticmethod
    def dream_agent_window(new, shown, actions) -> list[np.ndarray]:
        """A dream's agent window: the agent sees the new state, the model still its last input."""
        return [command(SHOW, 0, n, s, a) for n, s, a in zip(new, shown, actions)]

    def dreamed(self, state: np.ndarray) -> np.ndarray:
        """A dreamed state: clipped to the byte range, or (the authors') left as predicted."""
        return np.clip(state, 0, 255) if self.cfg.clip_dreams else np.nan_to_num(state)

    @staticmethod
    def view(state: np.ndarray) -> np.ndarray:
        """What the place cells are shown for a dreamed state: the nearest value their table holds
        (beyond it they are silent, as the authors' Gaussian place cells are far out of range)."""
        return np.clip(np.rint(state), -pong.VIEW_MARGIN, 255 + pong.VIEW_MARGIN).astype(np.int64)

    @property
    def dream_gradient_waits(self) -> bool:
        """Whether a game's policy gradient starts from the last dream's (no update of its own)."""
        return self.cfg.dream and not self.cfg.second_adam_step

    def state(self) -> dict:
        return {**self.policy.state(), **self.model.state(), **(self.baseline.state() if self.baseline else {})}

    def load(self, d: dict) -> None:
        self.policy.load(d)
        self.model.load(d)
        if self.baseline:
            self.baseline.load(d)

    def rng_states(self) -> list[dict]:
        return [rng.bit_generator.state for rng in self.rngs]

    def set_rng_states(self, states: list[dict]) -> None:
        for rng, st in zip(self.rngs, states):
            rng.bit_generator.state = st
