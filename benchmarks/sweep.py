"""T x percentile x readout sweep of a bundled DQN (Tan et al. 2021, Fig. 3 style).

    python -m benchmarks.sweep cartpole [--episodes 20] [--out results]
    python -m benchmarks.sweep pong     [--episodes 10] [--workers 2] [--out results]
                                        [--normalization channel] [--percentiles ...] [--timesteps ...]

Cells run on the fast emulator (bit-exact with Lava, see tests/test_lava.py and
tests/test_atari.py), `--workers` at a time, the goal's cells first (`cell_order`); one
cell is cross-checked on Lava and the comparison recorded. Each percentile's T -> infinity
limit (`conversion.quantize.rate_limit`: the conversion rate's ceiling, measured on the
calibration observations) is recorded and drawn. Writes
results/<name>_sweep.json and .png. Finished cells are kept in the JSON, so an
interrupted sweep resumes where it stopped. Pong follows the paper: evaluation with
epsilon 0.05, full games up to 18,000 agent steps, percentiles up to 99.99, T up to 500.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from lavaloop import ConvertOptions, RunSettings, convert, load_artifact  # noqa: E402
from lavaloop.atomic import write_json  # noqa: E402
from lavaloop.deploy.kinds.dqn import source_returns  # noqa: E402
from lavaloop.deploy.results import versions  # noqa: E402
from lavaloop.deploy.run import random_returns, run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS, BUILD = ROOT / "checkpoints", ROOT / "build"
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
            if readout == "robust" and cells[0].get("outcome_agreement") is not None:
                axes[0].plot(t, [c["outcome_agreement"] for c in cells], ":", color=color, marker=".",
                             label=f"{label}: same outcome")
            axes[1].errorbar(t, [c["mean_return"] for c in cells], fmt=style, color=color, marker="o", capsize=3,
                             yerr=[c["std_return"] / np.sqrt(record["episodes"]) for c in cells], label=label)
        if f"{p:g}" in record.get("rate_limit_agreement", {}):
            axes[0].axhline(record["rate_limit_agreement"][f"{p:g}"], color=color, lw=1, ls="-.", alpha=0.6)
    src, src_se = record["source_mean_return"], record.get("source_std_return", 0.0) / np.sqrt(record["episodes"])
    axes[1].axhline(src, color="k", lw=1, label="source DQN")
    axes[1].axhspan(src - src_se, src + src_se, color="k", alpha=0.1)
    outcome = any(c.get("outcome_agreement") is not None for c in record["cells"])
    for ax, ylabel in zip(axes, ("conversion rate (decision agreement)\n"
                                 + ("dotted: same outcome; " if outcome else "") + "dash-dot: T -> inf limit",
                                 f"mean return +- s.e. ({record['episodes']} seeds)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("T (SNN steps per decision)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{record['env']} DQN -> IF SNN, {record.get('normalization', 'layer')}-wise normalization, "
                 f"loihi2 fixed point (emulator, epsilon {sweep.epsilon})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def cell_order(percentiles, readouts, timesteps) -> list[tuple[float, str, int]]:
    """(percentile, readout, T) cells, the goal's first (robust readout up to T = 128), then the
    rest of the default percentile's column (spike count, long windows), then the others;
    short windows first within each group."""
    default = ConvertOptions.percentile
    cells = [(p, r, t) for p in percentiles for r in readouts for t in timesteps]
    return sorted(cells, key=lambda c: (c[1] != "robust" or c[2] > 128, c[0] != default, c[2], c[1] != "robust", c[0]))


def run_cell(art_path: Path, percentile: float, readout: str, timesteps: int, episodes: int,
             epsilon: float) -> dict:
    """One cell on the emulator: closed-loop episodes, then the conversion rate on their observations."""
    res = run(load_artifact(art_path), RunSettings(episodes=episodes, timesteps=timesteps, readout=readout,
                                                   epsilon=epsilon, backend="emulator"), progress=False)
    return {"percentile": percentile, "readout": readout, "timesteps": timesteps,
            "conversion_rate": res.agreement, "outcome_agreement": res.details["outcome_agreement"],
            "mean_return": res.mean_return, "std_return": res.std_return, "normalized_score": res.normalized_score,
            "returns": res.returns, "decisions": res.decisions, "spikes_per_decision": res.spikes_per_decision,
            "emulator_steps_per_s": res.steps_per_s, "wall_s": res.wall_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=sorted(SWEEPS))
    ap.add_argument("--episodes", type=int, help="episodes per cell (default: 20 CartPole, 10 Pong)")
    ap.add_argument("--timesteps", type=int, nargs="+", help="a subset of T values")
    ap.add_argument("--percentiles", type=float, nargs="+", help="a subset of percentiles")
    ap.add_argument("--readouts", nargs="+", default=list(READOUTS), choices=READOUTS)
    ap.add_argument("--workers", type=int, default=1, help="cells run in parallel (one core each)")
    ap.add_argument("--normalization", default="layer", choices=["layer", "channel"],
                    help="channel: per-channel lambdas for convolutions (results/<name>_sweep_channel.*)")
    ap.add_argument("--out", default="results")
    ap.add_argument("--lava-check-episodes", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)   # one core per cell; forked workers must not inherit an OpenMP pool
    sweep = SWEEPS[args.name]
    episodes = args.episodes or sweep.episodes
    out = Path(args.out)
    tag = "" if args.normalization == "layer" else f"_{args.normalization}"
    path = out / f"{args.name}_sweep{tag}.json"
    opts = dict(calib_steps=sweep.calib_steps, normalization=args.normalization)
    record = json.loads(path.read_text()) if path.exists() else {"cells": []}
    seeds = list(range(episodes))
    done = {(c["percentile"], c["readout"], c["timesteps"]) for c in record["cells"]}
    todo = [c for c in cell_order(args.percentiles or sweep.percentiles, args.readouts,
                                  args.timesteps or sweep.timesteps) if c not in done]
    artifacts, ceilings = {}, record.setdefault("rate_limit_agreement", {})
    pending = {c[0] for c in todo}
    for p in args.percentiles or sweep.percentiles:
        if p not in pending and f"{p:g}" in ceilings:
            continue
        art = convert(sweep.checkpoint, sweep.env, percentile=p, **opts)
        artifacts[p] = BUILD / f"{args.name}_sweep{tag}_p{p:g}.h5"
        art.save(artifacts[p])
        record["conversion_seconds"] = art.manifest["conversion_seconds"]
        ceilings[f"{p:g}"] = art.manifest["rate_limit_agreement"]
        src = source_returns(art, seeds, sweep.epsilon)       # kept for the forked workers' runs
        rnd = random_returns(art.env_spec, seeds)
        if "random_mean_return" not in record:
            record.update(source_mean_return=float(src.mean()), source_std_return=float(src.std()),
                          source_returns=src.tolist(), random_mean_return=float(rnd.mean()))
    record.update(env=sweep.env, episodes=episodes, epsilon=sweep.epsilon, backend="emulator",
                  normalization=args.normalization,
                  checkpoint=sweep.checkpoint.name, versions=versions())
    write_json(path, record)
    pool = ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("fork"))
    try:
        futures = [pool.submit(run_cell, artifacts[p], p, r, t, episodes, sweep.epsilon) for p, r, t in todo]
        for fut in tqdm(as_completed(futures), total=len(futures), desc=f"{args.name} sweep", unit="cell"):
            cell = fut.result()
            tqdm.write(json.dumps(cell))
            record["cells"].append(cell)
            write_json(path, record)
    finally:
        pool.shutdown(cancel_futures=True)   # a failed cell does not wait for the queued ones
    if "lava_cross_check" not in record:
        art = convert(sweep.checkpoint, sweep.env, **opts)
        s = dict(episodes=args.lava_check_episodes, timesteps=sweep.check_timesteps,
                 readout="robust", epsilon=sweep.epsilon)
        lava = run(art, RunSettings(**s, backend="lava"), progress=False).log
        emu = run(art, RunSettings(**s, backend="emulator"), progress=False).log
        record["lava_cross_check"] = {
            **s, "identical_actions": all(np.array_equal(a, b) for a, b in zip(lava.greedy, emu.greedy)),
            "identical_spike_counts": lava.spikes == emu.spikes, "lava_steps_per_s": lava.steps / lava.wall_s,
            "emulator_steps_per_s": emu.steps / emu.wall_s}
        write_json(path, record)
    plot(record, sweep, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
