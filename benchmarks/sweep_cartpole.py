"""T x percentile x readout sweep of the bundled CartPole DQN (Tan et al. 2021, Fig. 3 style).

    python -m benchmarks.sweep_cartpole [--episodes 20] [--out results]

Cells run on the fast emulator (bit-exact with Lava, see tests/test_lava.py); one cell is
cross-checked on Lava and the comparison recorded. Writes results/cartpole_sweep.json and
.png. Finished cells are kept in the JSON, so an interrupted sweep resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import time
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

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "cartpole_dqn.pt"
TIMESTEPS = (4, 8, 16, 32, 64, 128, 256)
PERCENTILES = (99.0, 99.9, 100.0)
READOUTS = ("robust", "spike_count")


def plot(record: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for p, color in zip(PERCENTILES, ("tab:blue", "tab:orange", "tab:green")):
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
    for ax, ylabel in zip(axes, ("conversion rate (decision agreement)", "mean return (20 seeds)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("T (SNN steps per decision)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("CartPole-v1 DQN -> IF SNN, loihi2 fixed point (emulator)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--out", default="results")
    ap.add_argument("--lava-check-episodes", type=int, default=2)
    args = ap.parse_args()
    out = Path(args.out)
    path = out / "cartpole_sweep.json"
    record = json.loads(path.read_text()) if path.exists() else {"cells": []}
    seeds = list(range(args.episodes))
    done = {(c["percentile"], c["readout"], c["timesteps"]) for c in record["cells"]}
    for p in PERCENTILES:
        t0 = time.time()
        art = convert(CHECKPOINT, "CartPole-v1", ConvertOptions(percentile=p))
        record["conversion_seconds"] = time.time() - t0
        record.setdefault("source_mean_return", float(source_returns(art, seeds, 0.0).mean()))
        for readout in READOUTS:
            for t in TIMESTEPS:
                if (p, readout, t) in done:
                    continue
                log = run(art, RunSettings(seeds, t, readout, 0.0, "emulator"), progress=False)
                rate, _ = decision_agreement(art, log)
                cell = {"percentile": p, "readout": readout, "timesteps": t, "conversion_rate": rate,
                        "mean_return": float(log.returns.mean()), "std_return": float(log.returns.std()),
                        "spikes_per_decision": sum(log.spikes) / log.decisions,
                        "emulator_steps_per_s": log.steps / log.wall_s}
                print(json.dumps(cell), flush=True)
                record["cells"].append(cell)
                record.update(env="CartPole-v1", episodes=args.episodes, backend="emulator",
                              checkpoint=CHECKPOINT.name, versions=versions())
                write_json(path, record)
    if "lava_cross_check" not in record:
        art = convert(CHECKPOINT, "CartPole-v1", ConvertOptions())
        s = dict(seeds=list(range(args.lava_check_episodes)), timesteps=16, readout="robust", epsilon=0.0)
        lava = run(art, RunSettings(**s, backend="lava"), progress=False)
        emu = run(art, RunSettings(**s, backend="emulator"), progress=False)
        record["lava_cross_check"] = {
            **s, "identical_actions": all(np.array_equal(a, b) for a, b in zip(lava.greedy, emu.greedy)),
            "identical_spike_counts": lava.spikes == emu.spikes, "lava_steps_per_s": lava.steps / lava.wall_s,
            "emulator_steps_per_s": emu.steps / emu.wall_s}
        write_json(path, record)
    plot(record, out / "cartpole_sweep.png")
    print(f"wrote {path} and {out / 'cartpole_sweep.png'}")


if __name__ == "__main__":
    main()
