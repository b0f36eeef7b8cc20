"""GRSN agents in QMIX teams on cooperative MPE tasks: training, float returns, fixed point on Lava, energy.

    python -m benchmarks.grsn_marl [--jobs 2] [--episodes 20] [--train-only]

1. Trains every missing team (checkpoints/qmix/<task>_<cell>_s<seed>.pt, learning curve
   beside it; resumable): GRSN and GRU agents, seeds 0-2, on simple_spread (3 agents,
   `STEPS` env steps) and simple_speaker_listener (2 agents, communication); then
   `grsn_qat`: each GRSN team fine-tuned with its agents' weights rounded to loihi2's 8-bit
   mantissas (quantization-aware training).
2. Evaluates every float team greedily on test seeds 0..episodes-1 (team return: the sum
   of the agents' rewards over the episode).
3. Converts every GRSN-QAT team to loihi2 fixed point and runs the same episodes on the
   emulator: team return, per-agent and team action agreement with the float agents on the
   same observations, spikes, operations and energy per agent step; seed 0 also runs on
   Lava in both layouts (one process per agent, one shared process), which must match the
   emulator exactly, with their wall times.
4. Energy per agent step, GRSN fixed point vs the GRU agents' float run counted by the
   same rule (`lavaloop.deploy.energy`), 45 nm and Loihi figures.

Writes results/grsn_marl.json and results/grsn_marl.png.
"""
from __future__ import annotations

import argparse
import csv
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from benchmarks.grsn_pomdp import variant_profile  # noqa: E402
from lavaloop.atomic import write_json  # noqa: E402
from lavaloop.conversion.models.qmix import load_team  # noqa: E402
from lavaloop.conversion.team import convert_team  # noqa: E402
from lavaloop.deploy.energy import counted_float_ops, energy_report  # noqa: E402
from lavaloop.deploy.kinds.team import random_team_returns, team_returns  # noqa: E402
from lavaloop.deploy.run import run  # noqa: E402
from lavaloop.options import LAYOUTS, RunSettings  # noqa: E402
from lavaloop.profiles import PROFILES  # noqa: E402
from lavaloop.trainers.qmix import Config, train  # noqa: E402

TASKS = {"mpe2:simple_spread_v3": 200_000, "mpe2:simple_speaker_listener_v4": 100_000}   # env steps per run
CELLS = ("grsn", "gru")
SEEDS = (0, 1, 2)
QAT_BITS = PROFILES["loihi2"].weight_bits
QAT_STEPS = 20_000
CKPT = Path("checkpoints/qmix")


def ckpt_path(task: str, cell: str, seed: int) -> Path:
    short = task.removeprefix("mpe2:").removeprefix("simple_").rsplit("_v", 1)[0]
    return CKPT / f"{short}_{cell}_s{seed}.pt"


def train_job(job: tuple[str, str, int]) -> str:
    task, cell, seed = job
    out = ckpt_path(task, cell, seed)
    if cell == "grsn_qat":
        res = train(task, "grsn", seed, out, Config.finetune(QAT_STEPS), eval_every=2_500, progress=False,
                    weight_bits=QAT_BITS, init_from=ckpt_path(task, "grsn", seed))
    else:
        res = train(task, cell, seed, out, Config(total_steps=TASKS[task]), progress=False)
    return f"{task} {cell} s{seed}: best eval {res['best_eval']:.1f}, final {res['final_eval']:.1f} ({res['wall_s']} s)"


def train_missing(jobs: int) -> None:
    """Every missing checkpoint, base runs first, then their QAT fine-tunings."""
    for cells in (CELLS, ("grsn_qat",)):
        todo = [(t, c, s) for t in TASKS for c in cells for s in SEEDS if not ckpt_path(t, c, s).exists()]
        if not todo:
            continue
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for line in pool.map(train_job, todo):
                print(line, flush=True)


def curve(path: Path) -> list[tuple[int, float]]:
    with open(path.with_suffix(".csv")) as f:
        return [(int(r["step"]), float(r["eval_return"])) for r in csv.DictReader(f)]


def float_eval(path: Path, seeds: list[int]) -> dict:
    """Greedy team returns of a float team; for GRU agents also their operations per agent step."""
    net, _, spec, shape, meta, _ = load_team(path)
    with counted_float_ops(net) as (ops, steps):
        returns = team_returns(net, spec, shape, seeds, 0.0)
    out = {"mean_return": float(np.mean(returns)), "returns": returns.tolist(), "best_eval": meta["best_eval"],
           "train_wall_s": meta.get("wall_s")}
    if net.cfg.cell == "gru":
        out["energy"] = energy_report(ops, steps[0])
    return out


def chip_eval(path: Path, task: str, seeds: list[int], lava: bool, wide: bool = False) -> dict:
    """The team converted to loihi2 fixed point, on the emulator (and on Lava in both layouts;
    `wide`: also with 16-bit weights, to locate the fixed-point error)."""
    art = convert_team(path, task)
    if wide:
        with variant_profile({"name": "loihi2_w16", "weight_bits": 16}) as w16:
            res16 = run(convert_team(path, task, profile=w16),
                        RunSettings(episodes=len(seeds), seed=seeds[0], backend="emulator"), progress=False)
    settings = RunSettings(episodes=len(seeds), seed=seeds[0], backend="emulator")
    emu = run(art, settings, progress=False)
    out = {"mean_return": emu.mean_return, "source_mean_return": emu.source_mean_return,
           "agreement": emu.agreement, "agreement_per_agent": emu.details["agreement_per_agent"],
           "team_agreement": emu.details["team_agreement"], "spike_mismatch": emu.details["spike_mismatch"],
           "spikes_per_agent_step": emu.spikes_per_decision, "synops_per_agent_step": emu.synops_per_decision,
           "energy": emu.energy, "emulator_wall_s": emu.wall_s, "weight_error": art.manifest["quantization"][
               "weight_rel_rms_error"]}
    if wide:
        out["weights_16_bit"] = {"agreement": res16.agreement, "spike_mismatch": res16.details["spike_mismatch"]}
    if lava:
        out["lava"] = {}
        for layout in LAYOUTS:
            t0 = time.time()
            res = run(art, RunSettings(episodes=len(seeds), seed=seeds[0], backend="lava", layout=layout),
                      progress=False)
            same = (res.returns == emu.returns and res.log.extra["ops"] == emu.log.extra["ops"]
                    and res.spikes == emu.spikes
                    and all(np.array_equal(a, b) for a, b in zip(res.log.actions, emu.log.actions)))
            out["lava"][layout] = {"equals_emulator": bool(same), "run_wall_s": round(res.wall_s, 1),
                                   "total_wall_s": round(time.time() - t0, 1), "compile_s": res.compile_s}
    return out


def mean_sd(xs) -> dict:
    return {"mean": float(np.mean(xs)), "sd": float(np.std(xs))}


def evaluate(episodes: int) -> dict:
    seeds = list(range(episodes))
    rec = {"episodes": episodes, "train_steps": TASKS, "qat_steps": QAT_STEPS, "config": Config().__dict__,
           "tasks": {}}
    for task in TASKS:
        t: dict = {"float": {}, "chip": {}, "curves": {}}
        for cell in (*CELLS, "grsn_qat"):
            t["float"][cell] = [float_eval(ckpt_path(task, cell, s), seeds) for s in SEEDS]
            t["curves"][cell] = [curve(ckpt_path(task, cell, s)) for s in SEEDS]
        for cell in ("grsn", "grsn_qat"):
            t["chip"][cell] = [chip_eval(ckpt_path(task, cell, s), task, seeds, lava=cell == "grsn_qat" and s == 0,
                                         wide=cell == "grsn" and s == 0) for s in SEEDS]
        _, _, spec, shape, _, _ = load_team(ckpt_path(task, "grsn", 0))
        random = float(np.mean(random_team_returns(spec, shape, seeds)))
        grsn = float(np.mean([e["mean_return"] for e in t["float"]["grsn"]]))
        qat = float(np.mean([e["mean_return"] for e in t["float"]["grsn_qat"]]))
        gru = float(np.mean([e["mean_return"] for e in t["float"]["gru"]]))
        e_gru = np.mean([e["energy"]["energy_per_decision_nj"]["cmos45"] for e in t["float"]["gru"]])
        e_grsn = np.mean([e["energy"]["energy_per_decision_nj"]["cmos45"] for e in t["chip"]["grsn_qat"]])
        t.update({
            "random_return": random, "grsn_return": grsn, "grsn_qat_return": qat, "gru_return": gru,
            "grsn_over_gru": grsn / gru,
            "relative_gap": (grsn - gru) / abs(gru), "qat_relative_gap": (qat - gru) / abs(gru),
            "normalized_grsn": (grsn - random) / (gru - random), "normalized_qat": (qat - random) / (gru - random),
            "lava_agreement": float(np.mean([e["agreement"] for e in t["chip"]["grsn_qat"]])),
            "ptq_agreement": float(np.mean([e["agreement"] for e in t["chip"]["grsn"]])),
            "energy_per_agent_step_nj": {"grsn_qat_fixed_point": float(e_grsn), "gru_float": float(e_gru)},
            "energy_ratio": float(e_grsn / e_gru),
        })
        rec["tasks"][task] = t
    return rec


def plot(rec: dict, path: Path) -> None:
    """Per task: learning curves (mean +- sd over seeds), team returns, energy per agent step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(rec["tasks"])
    fig, axes = plt.subplots(len(tasks), 3, figsize=(15, 4.2 * len(tasks)), squeeze=False)
    colors = {"grsn": "tab:red", "gru": "tab:blue", "grsn_qat": "tab:orange"}
    for row, task in zip(axes, tasks):
        t, name = rec["tasks"][task], task.removeprefix("mpe2:")
        for cell in CELLS:
            runs = t["curves"][cell]
            n = min(len(c) for c in runs)
            steps = [p[0] for p in runs[0][:n]]
            vals = np.array([[p[1] for p in c[:n]] for c in runs])
            row[0].plot(steps, vals.mean(0), color=colors[cell], label=f"{cell.upper()}-QMIX")
            row[0].fill_between(steps, vals.mean(0) - vals.std(0), vals.mean(0) + vals.std(0), color=colors[cell],
                                alpha=0.2)
        row[0].axhline(t["random_return"], color="gray", ls=":", label="random (test seeds)")
        row[0].set_title(f"{name}\ngreedy eval (10 episodes) while training", fontsize=10)
        row[0].set(xlabel="env steps", ylabel="team return")
        row[0].legend()
        bars = [("random", [t["random_return"]]),
                ("GRU", [e["mean_return"] for e in t["float"]["gru"]]),
                ("GRSN", [e["mean_return"] for e in t["float"]["grsn"]]),
                ("GRSN-QAT", [e["mean_return"] for e in t["float"]["grsn_qat"]]),
                ("GRSN-QAT\nloihi2 fixed pt", [e["mean_return"] for e in t["chip"]["grsn_qat"]])]
        row[1].bar(range(len(bars)), [np.mean(v) for _, v in bars], yerr=[np.std(v) for _, v in bars],
                   color=["gray", "tab:blue", "tab:red", "tab:orange", "tab:green"], capsize=4)
        row[1].set_xticks(range(len(bars)), [b for b, _ in bars])
        row[1].set_title(f"{name}\ntest return, seeds 0-{rec['episodes'] - 1} (mean +- sd over 3 teams)", fontsize=10)
        row[1].set(ylabel="team return")
        en = t["energy_per_agent_step_nj"]
        row[2].bar([0, 1], [en["grsn_qat_fixed_point"], en["gru_float"]], color=["tab:green", "tab:blue"])
        row[2].set_xticks([0, 1], ["GRSN fixed point\n(counted ops)", "GRU float"])
        row[2].set_title(f"{name}\nenergy per agent step (45 nm), ratio {t['energy_ratio']:.2f}", fontsize=10)
        row[2].set(ylabel="nJ")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1, help="training processes in parallel")
    p.add_argument("--episodes", type=int, default=20, help="test episodes per team (seeds 0..N-1)")
    p.add_argument("--train-only", action="store_true")
    args = p.parse_args()
    train_missing(args.jobs)
    if args.train_only:
        return
    t0 = time.time()
    rec = evaluate(args.episodes)
    rec["eval_wall_s"] = round(time.time() - t0, 1)
    write_json("results/grsn_marl.json", rec)
    plot(rec, Path("results/grsn_marl.png"))
    for task, t in rec["tasks"].items():
        print(f"{task}: GRSN {t['grsn_return']:.1f} (QAT {t['grsn_qat_return']:.1f}), GRU {t['gru_return']:.1f}, "
              f"random {t['random_return']:.1f}; gap {t['relative_gap']:+.3f}; chip agreement "
              f"{t['lava_agreement']:.4f} (PTQ {t['ptq_agreement']:.4f}); energy GRSN/GRU {t['energy_ratio']:.3f}")


if __name__ == "__main__":
    main()
