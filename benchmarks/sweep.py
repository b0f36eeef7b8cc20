"""T x percentile x readout sweep of a bundled DQN (Tan et al. 2021, Fig. 3 style).

    python -m benchmarks.sweep cartpole [--episodes 20] [--out results]
    python -m benchmarks.sweep pong     [--episodes 10] [--out results]

Cells run on the fast emulator (bit-exact with Lava, see tests/test_lava.py and
tests/test_atari.py); one cell is cross-checked on Lava and the comparison recorded.
Writes results/<name>_sweep.json and .png. Finished cells are kept in the JSON, so an
interrupted sweep resumes where it stopped. Pong follows the paper: evaluation with
epsilon 0.05, full games up to 18,000 agent steps, percentiles up to 99.99, T up to 500.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from conversion.convert import ConvertOptions, convert  # noqa: E402
from deploy.episodes import decision_agreement, source_returns  # noqa: E402
from deploy.results import versions, write_json  # noqa: E402
from deploy.runner import RunSettings, run  # noqa: E402

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
READOUTS = ("robust", "spike_count")


@dataclass(frozen=True)
class Sweep:
    checkpoint: Path
    env: str
    timesteps: tuple
    percentiles: tuple
    episodes: int
    epsilon: float
    calib_steps: int
    check_timesteps: int          # T of the Lava cross-check


SWEEPS = {
    "cartpole": Sweep(CHECKPOINTS / "cartpole_dqn.pt", "CartPole-v1", (4, 8, 16, 32, 64, 128, 256),
                      (99.0, 99.9, 100.0), 20, 0.0, 5_000, 16),
    "pong": Sweep(CHECKPOINTS / "pong_dqn.pt", "ALE/Pong-v5", (16, 32, 64, 128, 256, 500),
                  (99.0, 99.9, 99.99, 100.0), 10, 0.05, 5_000, 16),
}


def plot(record: dict, sweep: Sweep, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for p, color in zip(sweep.percentiles, ("tab:blue", "tab:orange", "tab:red", "tab:green")):
        for readout, style in zip(READOUTS, ("-", "--")):
            cells = sorted((c for c in record["cells"] if c["percentile"] == p and c["readout"] == readout),
                           key=lambda c: c["timesteps"])
            if not cells:
                continue
            t = [c["timesteps"] for c in cells]
            label = f"p={p:g}, {readout}"
            axes[0].plot(t, [c["conversion_rate"] for c in cells], style, color=color, marker="o", label=label)
            axes[1].plot(t, [c["mean_return"] for c in cells], style, color=color, marker="o", label=label)
    axes[1].axhline(record["source_mean_return"], color="k", lw=1, label="source DQN")
    for ax, ylabel in zip(axes, ("conversion rate (decision agreement)",
                                 f"mean return ({record['episodes']} seeds)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("T (SNN steps per decision)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{record['env']} DQN -> IF SNN, loihi2 fixed point (emulator, epsilon {sweep.epsilon})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=sorted(SWEEPS))
    ap.add_argument("--episodes", type=int, help="episodes per cell (default: 20 CartPole, 10 Pong)")
    ap.add_argument("--timesteps", type=int, nargs="+", help="a subset of T values")
    ap.add_argument("--percentiles", type=float, nargs="+", help="a subset of percentiles")
    ap.add_argument("--readouts", nargs="+", default=list(READOUTS), choices=READOUTS)
    ap.add_argument("--out", default="results")
    ap.add_argument("--lava-check-episodes", type=int, default=2)
    args = ap.parse_args()
    sweep = SWEEPS[args.name]
    episodes = args.episodes or sweep.episodes
    out = Path(args.out)
    path = out / f"{args.name}_sweep.json"
    record = json.loads(path.read_text()) if path.exists() else {"cells": []}
    seeds = list(range(episodes))
    done = {(c["percentile"], c["readout"], c["timesteps"]) for c in record["cells"]}
    for p in args.percentiles or sweep.percentiles:
        art = convert(sweep.checkpoint, sweep.env, ConvertOptions(percentile=p, calib_steps=sweep.calib_steps))
        record["conversion_seconds"] = art.manifest["conversion_seconds"]
        if "source_mean_return" not in record:
            src = source_returns(art, seeds, sweep.epsilon)
            record.update(source_mean_return=float(src.mean()), source_std_return=float(src.std()))
        for readout in args.readouts:
            for t in args.timesteps or sweep.timesteps:
                if (p, readout, t) in done:
                    continue
                log = run(art, RunSettings(seeds, t, readout, sweep.epsilon, "emulator"), progress=False)
                rate, _ = decision_agreement(art, log)
                cell = {"percentile": p, "readout": readout, "timesteps": t, "conversion_rate": rate,
                        "mean_return": float(log.returns.mean()), "std_return": float(log.returns.std()),
                        "spikes_per_decision": sum(log.spikes) / log.decisions,
                        "emulator_steps_per_s": log.steps / log.wall_s}
                print(json.dumps(cell), flush=True)
                record["cells"].append(cell)
                record.update(env=sweep.env, episodes=episodes, epsilon=sweep.epsilon, backend="emulator",
                              checkpoint=sweep.checkpoint.name, versions=versions())
                write_json(path, record)
    if "lava_cross_check" not in record:
        art = convert(sweep.checkpoint, sweep.env, ConvertOptions(calib_steps=sweep.calib_steps))
        s = dict(seeds=list(range(args.lava_check_episodes)), timesteps=sweep.check_timesteps,
                 readout="robust", epsilon=sweep.epsilon)
        lava = run(art, RunSettings(**s, backend="lava"), progress=False)
        emu = run(art, RunSettings(**s, backend="emulator"), progress=False)
        record["lava_cross_check"] = {
            **s, "identical_actions": all(np.array_equal(a, b) for a, b in zip(lava.greedy, emu.greedy)),
            "identical_spike_counts": lava.spikes == emu.spikes, "lava_steps_per_s": lava.steps / lava.wall_s,
            "emulator_steps_per_s": emu.steps / emu.wall_s}
        write_json(path, record)
    plot(record, sweep, out / f"{args.name}_sweep.png")
    print(f"wrote {path} and {out / f'{args.name}_sweep.png'}")


if __name__ == "__main__":
    main()
