"""The neuromorphic-dreaming protocol on Pong (Blakowski et al.): dreaming vs no dreaming,
robustness to device mismatch, and Lava vs emulator wall time.

    python -m benchmarks.dreaming_pong [--runs 10] [--games 2000] [--jobs 2] [--sweep-runs 5]

Conditions run on the emulator (bit-exact with Lava, tests/test_dreaming.py), each in its own
resumable run directory under runs/; `--jobs` conditions run side by side (one core each).
Lava's wall time is measured on a short run of each condition and scaled to 2000 games.
Writes results/dreaming_pong.json and .png.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lavaloop.atomic import write_json  # noqa: E402
from lavaloop.deploy.dreaming import protocol  # noqa: E402
from lavaloop.deploy.dreaming.agent import DreamConfig  # noqa: E402
from lavaloop.deploy.results import versions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = (0.0, 0.1, 0.2, 0.3)


def condition(name: str, cfg: DreamConfig, backend: str = "emulator") -> tuple[str, dict]:
    rec = protocol.run(cfg, ROOT / "runs" / name, backend, progress=False)
    rec.pop("returns")
    return name, rec


def lava_timing(games: int) -> dict:
    """Wall time per game of one run on Lava and on the emulator, both conditions."""
    out = {}
    for dream in (False, True):
        cfg = DreamConfig(runs=1, games=games, dream=dream)
        key = "dream" if dream else "no_dream"
        walls = {}
        for backend in ("lava", "emulator"):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.time()
                protocol.run(cfg, tmp, backend, progress=False)
                walls[backend] = (time.time() - t0) / games
        out[key] = {"games_timed": games, "lava_s_per_game": walls["lava"],
                    "emulator_s_per_game_1_run": walls["emulator"],
                    "lava_s_per_2000_game_run": 2000 * walls["lava"],
                    "speedup": walls["lava"] / walls["emulator"]}
    return out


def plot(rec: dict, path: Path) -> None:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    for key, label, color in (("dream", "with dreaming", "tab:blue"), ("no_dream", "without dreaming", "tab:red")):
        c = rec["conditions"][key]["curve"]
        g, m, s = np.array(c["games"]), np.array(c["mean"]), np.array(c["sd"])
        ax.plot(g, m, color=color, label=label)
        ax.fill_between(g, m - s, m + s, color=color, alpha=0.2)
    ax.axhline(-0.5, color="gray", ls=":", lw=1)
    ax.axhline(0.0, color="gray", ls="--", lw=1)
    ax.set(xlabel="real games", ylabel="mean return, last 50 games",
           title=f"Pong from RAM, {rec['runs']} runs (mean ± SD), dynapse1, mismatch σ=0.2")
    ax.legend()
    sw = rec["mismatch_sweep"]
    xs = [c["mismatch_sigma"] for c in sw]
    bx.errorbar(xs, [c["final_mean"] for c in sw], yerr=[c["final_sd"] for c in sw], marker="o", capsize=3)
    bx.set(xlabel="device mismatch σ", ylabel="final mean return (last 50 games)",
           title=f"robustness, with dreaming ({rec['sweep_runs']} runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--games", type=int, default=2000)
    ap.add_argument("--sweep-runs", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--lava-games", type=int, default=10, help="games timed on Lava per condition")
    ap.add_argument("--out", default=str(ROOT / "results"))
    args = ap.parse_args()

    jobs = {"dream": DreamConfig(runs=args.runs, games=args.games, dream=True),
            "no_dream": DreamConfig(runs=args.runs, games=args.games, dream=False)}
    for sigma in SIGMAS:
        if sigma != 0.2:
            jobs[f"dream_sigma{sigma}"] = DreamConfig(runs=args.sweep_runs, games=args.games, dream=True,
                                                      mismatch_sigma=sigma)
    t0 = time.time()
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        results = dict(pool.map(condition, jobs, jobs.values()))
    timing = lava_timing(args.lava_games)      # after the pool: timed on an idle machine
    # (the pool uses its own fork context: Lava sets the global start method itself)
    sweep = []
    for sigma in SIGMAS:
        rec = results["dream" if sigma == 0.2 else f"dream_sigma{sigma}"]
        c = rec["curve"]
        sweep.append({"mismatch_sigma": sigma, "runs": rec["config"]["runs"], "final_mean": c["final_mean"],
                      "final_sd": c["final_sd"], "first_game_mean_ge_-0.5": c["first_game_mean_ge_-0.5"]})
    rec = {"benchmark": "neuromorphic dreaming, Pong from RAM (PAPERS.md section 3)",
           "backend": "emulator (bit-exact with Lava); Lava timed on short runs", "runs": args.runs,
           "games": args.games, "sweep_runs": args.sweep_runs,
           "conditions": {k: results[k] for k in ("dream", "no_dream")},
           "mismatch_sweep": sweep, "lava_timing": timing,
           "paper_reference": {"dream_reaches_-0.5": 500, "no_dream_reaches_-0.5": 1250,
                               "dream_final": [0.36, 0.48], "no_dream_final": [-0.24, 0.65], "start": -1.65},
           "wall_s": time.time() - t0, "versions": versions()}
    out = Path(args.out)
    write_json(out / "dreaming_pong.json", rec)
    plot(rec, out / "dreaming_pong.png")
    for k in ("dream", "no_dream"):
        c = rec["conditions"][k]["curve"]
        print(f"{k:>9}: start {c['start_mean']:+.2f}, -0.5 at game {c['first_game_mean_ge_-0.5']}, "
              f"0 at {c['first_game_mean_ge_0']}, final {c['final_mean']:+.2f} +- {c['final_sd']:.2f}")
    print(f"results: {out / 'dreaming_pong.json'}")


if __name__ == "__main__":
    main()
