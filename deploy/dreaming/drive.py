"""The hidden drive of the dreaming agent's populations, set from a target coding level.

The coding level of a population is the share of its neurons that spike in a window in
which it is shown a state (its place cells on), averaged over the windows of a few games
played by the configuration itself (its protocol, windows, chip instance, untrained
policy). A random expansion read out by a linear learner separates most patterns at a
coding level near 0.1 (Barak, Rigotti and Fusi, J. Neurosci. 2013; Litwin-Kumar et al.,
Neuron 2017): a silent neuron carries nothing, one that fires for every state carries
no information about which. At the single shared weight 0.03 the agent population's coding
level is 0.002 and 98 % of its neurons never fire in two games (dynapse1, sigma 0.2).

`calibrate_drive` finds the agent cores' weight, then the world model's ratio to it, for
which each population's coding level is the target (bisection on a log scale; the level
rises with the weight). A stronger drive means more spikes per window, and the host's
readouts see them through their filters' gains: the readouts' learning rates were tuned on
our one-window protocol at the pilot weight (`TUNED`), so the gains are scaled to give the
filtered features the same mean size (spikes per window) there. Without it the policy's
logits start ~10x larger and every Adam step moves them ~10x further: at coding level 0.1
with the pilot's gains, 19 of the 20 runs of the paired conditions (with and without
dreaming) were at -2.0 (never scoring) by game 250-350.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lavaloop.deploy.dreaming.emulator import EmulatedChip
from lavaloop.deploy.dreaming.network import N_PLACE, Topology
from lavaloop.errors import LavaloopError
from lavaloop.processes.dynamics import place_cell_increments

CALIBRATION_RUNS = 3
CALIBRATION_GAMES = 2
WEIGHT_RANGE = (0.005, 1.0)     # agent weight, threshold units
RATIO_RANGE = (0.1, 10.0)       # world model weight / agent weight
ITERATIONS = 10
TUNED = {"paired_windows": False, "coding_level": None}   # with the default topology's weights


class RecordingChip(EmulatedChip):
    """The emulated chip, keeping every window's counts and which populations were shown a state."""

    def __init__(self, setups):
        super().__init__(setups)
        self.counts, self.shown = [], []

    def window(self, commands: np.ndarray):
        counts, info = super().window(commands)
        inc = place_cell_increments(np.stack([g.views for g in self.games]), self.table, self.action_increment)
        self.counts.append(counts)
        self.shown.append(np.stack([inc[:, :N_PLACE].any(-1), inc[:, N_PLACE:2 * N_PLACE].any(-1)], -1))
        return counts, info


def coding_levels(cfg, games: int = CALIBRATION_GAMES, runs: int = CALIBRATION_RUNS) -> dict:
    """Per population ("agent", "model"): the coding level, the share of neurons that never
    spiked and the mean spikes per window in which it is shown a state, over `games` games
    (with their dreams, if the configuration dreams) of its first `runs` runs."""
    from lavaloop.deploy.dreaming.protocol import make_agent  # protocol imports this module

    cfg = dataclasses.replace(cfg, runs=min(runs, cfg.runs), games=games)
    chip = RecordingChip(cfg.setups())
    try:
        agent = make_agent(cfg, chip)
        for g in range(games):
            agent.play(g)
            if cfg.dream:
                agent.dream(g)
    finally:
        chip.close()
    counts, shown = np.array(chip.counts), np.array(chip.shown)    # (W, R, 2H), (W, R, 2)
    hidden = counts.shape[-1] // 2
    out = {}
    for i, name in enumerate(("agent", "model")):
        population = counts[..., i * hidden:(i + 1) * hidden]
        spikes, active = population.sum(-1)[shown[..., i]], population > 0
        level = active.mean(-1)[shown[..., i]]
        out[name] = {"coding_level": float(level.mean()) if level.size else 0.0,
                     "never_fire": float((~active.any(0)).mean()),
                     "spikes_per_window": float(spikes.mean()) if spikes.size else 0.0}
    return out


def _bisect(level_of, target: float, lo: float, hi: float, iterations: int, what: str) -> float:
    """The x in [lo, hi] (log scale) where the increasing level_of(x) meets `target`."""
    top = level_of(hi)
    if top < target:
        raise LavaloopError(f"coding level {target} is out of reach: the {what} reaches {top:.3f} at {hi}")
    for _ in range(iterations):
        mid = float(np.sqrt(lo * hi))
        lo, hi = (mid, hi) if level_of(mid) < target else (lo, mid)
    return float(np.sqrt(lo * hi))


def calibrate_drive(cfg, target: float, iterations: int = ITERATIONS):
    """The configuration with the agent cores' weight and the world model's weight ratio set so
    that each population's coding level in real games (no dreams: a condition and its
    no-dreaming control get the same weights) is `target`, and the readouts' filter gains
    scaled to keep their features' mean size (see the module docstring). LavaloopError if
    the weight range cannot reach the target.

    Parameters
    ----------
    cfg: the DreamConfig to calibrate (its protocol, windows, profile and seeds are used).
    target: coding level, in (0, 1).
    iterations: bisection steps per weight.

    Returns
    -------
    DreamConfig: `cfg` with its topology's weight and model_weight_ratio and its rules'
    filter_gain and model_filter_gain set.
    """
    real = dataclasses.replace(cfg, dream=False, dreams=1, dream_start="reset")   # the same weights, dreams or not

    def levels(topology: Topology) -> dict:
        return coding_levels(dataclasses.replace(real, topology=topology))

    topo = cfg.topology
    weight = _bisect(lambda w: levels(dataclasses.replace(topo, weight=w))["agent"]["coding_level"], target,
                     *WEIGHT_RANGE, iterations, "agent population")
    topo = dataclasses.replace(topo, weight=round(weight, 5))
    ratio = _bisect(lambda r: levels(dataclasses.replace(topo, model_weight_ratio=r))["model"]["coding_level"],
                    target, *RATIO_RANGE, iterations, "world model")
    topo = dataclasses.replace(topo, model_weight_ratio=round(ratio, 4))
    default = Topology()
    tuned = coding_levels(dataclasses.replace(real, **TUNED, topology=dataclasses.replace(
        topo, weight=default.weight, model_weight_ratio=default.model_weight_ratio)))
    now = levels(topo)

    def scaled(gain: float, population: str) -> float:
        if not tuned[population]["spikes_per_window"]:
            raise LavaloopError(f"the {population} population is silent at the pilot weight: no feature size "
                                "to keep (a larger population or another chip instance)")
        return float(f"{gain * tuned[population]['spikes_per_window'] / now[population]['spikes_per_window']:.4g}")

    rules = dataclasses.replace(cfg.rules, filter_gain=scaled(cfg.rules.filter_gain, "agent"),
                                model_filter_gain=scaled(cfg.rules.model_filter_gain, "model"))
    return dataclasses.replace(cfg, topology=topo, rules=rules)
