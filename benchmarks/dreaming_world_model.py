"""What the dreaming agent's world model learns: its predictions of real transitions, with one
shared readout or one per action, of one window or two, at the pilot drive and at coding level 0.1.

    python -m benchmarks.dreaming_world_model            # results/dreaming_world_model.json

A dream is only as useful as its world model is right about what the chosen action does. Here
the agent plays real games in our protocol with paired windows (no dreams: the policy learns
from the games, as in `paired_coding_no_dream`) while four world models read the same spike
counts of the model population and learn from the same transitions: the shared readout (the
default) and one readout per action (`ReadoutRules.model_per_action`), each reading the
features of the current model window or of the last two (`ReadoutRules.model_taps`: a state
shows positions, and a velocity is a difference of two). Measured over the
last quarter of the games, per run: R^2 of each predicted state change (ball x and y, the
two paddles) and of the reward trace. The player's paddle moves by the action (sticky with
probability 0.25), so its R^2 says whether a model knows what an action does. Two drives:
the pilot's fixed weight 0.03 and the weights calibrated for coding level 0.1
(`deploy.dreaming.drive`). dynapse1, mismatch sigma 0.2, chip instance 0, seeds 0..runs-1.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from lavaloop.atomic import write_json  # noqa: E402

OUT = Path("results/dreaming_world_model.json")
VARIABLES = ("ball_x", "ball_y", "cpu_paddle_y", "player_paddle_y", "reward_trace")
READOUTS = {"shared": {}, "per_action": {"model_per_action": True},
            "shared_taps2": {"model_taps": 2}, "per_action_taps2": {"model_per_action": True, "model_taps": 2}}
DRIVES = {"pilot_weight_0.03": None, "coding_level_0.1": 0.1}


class Tee:
    """Stands in for the agent's world model: every model reads the same counts and learns from
    the same transitions; the predictions and their targets are recorded."""

    def __init__(self, models: dict):
        self.models, self.record = models, {name: [] for name in models}

    def start_episode(self) -> None:
        for m in self.models.values():
            m.start_episode()

    def predict(self, counts, actions):
        self.preds = {name: m.predict(counts, actions) for name, m in self.models.items()}
        return self.preds[next(iter(self.models))]

    def learn(self, delta_pred, reward_pred, delta, reward, actions) -> None:
        for name, m in self.models.items():
            d_pred, r_pred = self.preds[name]
            m.learn(d_pred, r_pred, delta, reward, actions)
            target = np.where(np.abs(delta) > m.rules.max_delta, 0.0, delta)   # what the model is taught
            self.record[name].append((np.c_[d_pred, r_pred], np.c_[target, m.r_trace]))


def r_squared(pairs: list) -> np.ndarray:
    """R^2 per run and variable (R, 5) of (prediction, target) pairs [(R, 5), (R, 5)]."""
    pred, target = (np.stack(x) for x in zip(*pairs))           # (n, R, 5)
    resid = ((target - pred) ** 2).sum(0)
    total = ((target - target.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 1.0 - resid / total, np.nan)      # NaN: a target that never changed


def measure(coding_level: float | None, runs: int, games: int) -> dict:
    from lavaloop.deploy.dreaming.agent import dream_config
    from lavaloop.deploy.dreaming.drive import calibrate_drive
    from lavaloop.deploy.dreaming.emulator import EmulatedChip
    from lavaloop.deploy.dreaming.protocol import make_agent
    from lavaloop.deploy.dreaming.readouts import WorldModel

    t0 = time.time()
    cfg = dream_config({"paired_windows": True, "dream": False, "runs": runs, "games": games})
    if coding_level is not None:
        cfg = calibrate_drive(cfg, coding_level)
    chip = EmulatedChip(cfg.setups())
    try:
        agent = make_agent(cfg, chip)
        tee = Tee({name: WorldModel(dataclasses.replace(cfg.rules, **rules), runs, cfg.topology.hidden)
                   for name, rules in READOUTS.items()})
        agent.model = tee
        returns, scored = [], max(games // 4, 1)
        for g in tqdm(range(games), desc=f"coding level {coding_level}", unit="game"):
            if g == games - scored:
                tee.record = {name: [] for name in READOUTS}           # score the last quarter only
            returns.append(agent.play(g))
    finally:
        chip.close()
    out = {"coding_level": coding_level, "weight": cfg.topology.weight,
           "model_weight_ratio": cfg.topology.model_weight_ratio, "filter_gain": cfg.rules.filter_gain,
           "model_filter_gain": cfg.rules.model_filter_gain,
           "final_return": float(np.mean(returns[-scored:])), "transitions": len(tee.record["shared"]) * runs,
           "runs": runs, "games": games}
    for name in READOUTS:
        r2 = r_squared(tee.record[name])
        out[name] = {v: {"mean": float(r2[:, i].mean()), "per_run": r2[:, i].round(4).tolist()}
                     for i, v in enumerate(VARIABLES)}
    out["wall_s"] = round(time.time() - t0, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="runs (>= 3: the drive is calibrated on 3, as in "
                   "the dreaming_pong conditions)")
    p.add_argument("--games", type=int, default=400)
    p.add_argument("--drives", nargs="+", choices=list(DRIVES), default=list(DRIVES),
                   help="measure these drives (the others keep their entries in the results file)")
    args = p.parse_args()
    old = json.loads(OUT.read_text())["drives"] if OUT.exists() else {}
    drives = {name: measure(level, args.runs, args.games) if name in args.drives else old[name]
              for name, level in DRIVES.items() if name in args.drives or name in old}
    res = {"benchmark": "dreaming world model: R^2 of real transitions, shared vs per-action readouts, "
                        "of one model window or two",
           "settings": "our protocol with paired windows, no dreams, dynapse1, mismatch sigma 0.2, chip instance 0; "
                       "R^2 over the last quarter of each drive's games (its runs and games)",
           "drives": drives}
    write_json(OUT, res)
    for drive, rec in drives.items():
        for name in READOUTS:
            if name not in rec:
                continue
            print(f"{drive:18s} {name:16s} " + "  ".join(f"{v} {rec[name][v]['mean']:+.2f}" for v in VARIABLES))


if __name__ == "__main__":
    main()
