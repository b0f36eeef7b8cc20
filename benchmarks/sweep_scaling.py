"""How `lavaloop sweep` scales: cells per hour on this machine with 1 and 2 Ray workers and on
a two-node Ray cluster started locally (a head and a worker node, one CPU each), on the
CartPole sweep; the parallel efficiency; and the projected wall time of the 48-cell Pong
sweep on N 16-core nodes, from its cells' measured single-core times.

    python -m benchmarks.sweep_scaling [--spec benchmarks/cartpole_sweep.toml]

Each mode runs the whole spec into a fresh folder under build/sweep_scaling/, `--repeat`
times in rounds (the median wall time is reported: this machine's speed varies by ~15 %
between runs); measurements already in results/sweep_scaling.json are kept (delete the file
to measure again). Writes results/sweep_scaling.json and .png.
"""
from __future__ import annotations

import argparse
import heapq
import json
import shutil
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import lavaloop  # noqa: E402
from lavaloop.atomic import write_json  # noqa: E402
from lavaloop.deploy.results import versions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODES = {"1 worker": {"workers": 1}, "2 workers": {"workers": 2}, "2 nodes": {"nodes": 2}}
NODES = (1, 2, 4, 8)


def measure(spec: Path, mode: dict, out: Path) -> dict:
    """One whole sweep in a fresh folder; its wall time and per-cell times."""
    shutil.rmtree(out, ignore_errors=True)
    cluster = None
    if "nodes" in mode:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        for _ in range(mode["nodes"] - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
    t0 = time.time()
    try:
        rec = lavaloop.sweep(spec, out=out, workers=mode.get("workers"),
                             address=cluster.address if cluster else None, progress=True)
    finally:
        if cluster:
            cluster.shutdown()
    wall = time.time() - t0
    cell_s = [c["wall_s"] for c in rec["cells"]]
    return {"cpus": mode.get("workers") or mode["nodes"], "cells": len(cell_s), "wall_s": wall,
            "cells_per_hour": 3600 * len(cell_s) / wall, "cell_seconds_sum": sum(cell_s),
            "longest_cell_s": max(cell_s), "nodes_used": len({c["node"] for c in rec["cells"]})}


def makespan(durations: list[float], workers: int) -> float:
    """Wall time of cells run longest first on `workers` (LPT, what the sweep's order does)."""
    finish = [0.0] * workers
    for d in sorted(durations, reverse=True):
        heapq.heappush(finish, heapq.heappop(finish) + d)
    return max(finish)


def pong_projection() -> dict:
    """The 48-cell Pong sweep on N 16-core nodes, from its cells' single-core times: as its spec
    runs it, and with each cell split into one task per episode (`seed` as an axis, 1 episode)."""
    cells = json.loads((ROOT / "results" / "pong_sweep.json").read_text())["cells"]
    durations = [c["wall_s"] for c in cells]
    per_episode = [c["wall_s"] / len(c["returns"]) for c in cells for _ in c["returns"]]
    return {"cells": len(durations), "core_hours": sum(durations) / 3600, "longest_cell_min": max(durations) / 60,
            "source": "results/pong_sweep.json (per-cell wall time, one core each; episodes assumed equally long "
                      "when split)",
            "this_machine_wall_min": makespan(durations, 2) / 60,
            "projected": [{"nodes": n, "cores": 16 * n, "wall_min": makespan(durations, 16 * n) / 60,
                           "wall_min_split_by_episode": makespan(per_episode, 16 * n) / 60} for n in NODES]}


def plot(rec: dict, path: Path) -> None:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(rec["modes"])
    ax.bar(names, [rec["modes"][n]["cells_per_hour"] for n in names], color=["C0", "C1", "C2"])
    for i, n in enumerate(names):
        eff = rec["modes"][n].get("parallel_efficiency")
        if eff is not None:
            ax.text(i, rec["modes"][n]["cells_per_hour"], f"eff. {eff:.2f}", ha="center", va="bottom")
    ax.set(ylabel="cells per hour", title=f"{rec['spec']}: {rec['modes'][names[0]]['cells']} cells")
    p = rec["pong_projection"]
    bx.plot([q["nodes"] for q in p["projected"]], [q["wall_min"] for q in p["projected"]], marker="o",
            label="projected wall time, cells as specified")
    bx.plot([q["nodes"] for q in p["projected"]], [q["wall_min_split_by_episode"] for q in p["projected"]],
            marker="s", label="one task per episode")
    bx.axhline(p["longest_cell_min"], color="k", ls=":", label="longest cell")
    bx.set(xlabel="16-core nodes", ylabel="minutes", xscale="log", yscale="log",
           title=f"Pong sweep: {p['cells']} cells, {p['core_hours']:.1f} core-hours")
    bx.set_xticks(NODES, [str(n) for n in NODES])
    bx.minorticks_off()
    bx.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "benchmarks" / "cartpole_sweep.toml"))
    ap.add_argument("--out", default=str(ROOT / "results"))
    ap.add_argument("--repeat", type=int, default=2, help="measurements per mode (the median is reported)")
    args = ap.parse_args()
    path = Path(args.out) / "sweep_scaling.json"
    rec = json.loads(path.read_text()) if path.exists() else {"modes": {}}
    rec["spec"] = Path(args.spec).name
    for _ in range(args.repeat):        # rounds, each mode once per round: slow phases of the machine hit all
        for name, mode in MODES.items():
            runs = rec["modes"].setdefault(name, {"runs": []})["runs"]
            if len(runs) < args.repeat:
                folder = ROOT / "build" / "sweep_scaling" / name.replace(" ", "_")
                runs.append(measure(Path(args.spec), mode, folder))
                write_json(path, rec)
    for m in rec["modes"].values():
        m.update({k: statistics.median(r[k] for r in m["runs"]) for k in ("wall_s", "cells_per_hour")},
                 cpus=m["runs"][0]["cpus"], cells=m["runs"][0]["cells"])
    base = rec["modes"]["1 worker"]["wall_s"]
    for m in rec["modes"].values():
        m["parallel_efficiency"] = base / (m["cpus"] * m["wall_s"])
    rec.update(pong_projection=pong_projection(), versions=versions())
    write_json(path, rec)
    plot(rec, path.with_suffix(".png"))
    for name, m in rec["modes"].items():
        walls = ", ".join(f"{r['wall_s']:.0f}" for r in m["runs"])
        print(f"{name:>9}: {m['cells']} cells in {m['wall_s']:.0f} s (median of {walls}), "
              f"{m['cells_per_hour']:.0f} cells/hour, efficiency {m['parallel_efficiency']:.2f}")
    for q in rec["pong_projection"]["projected"]:
        print(f"Pong sweep on {q['nodes']} x 16 cores: {q['wall_min']:.0f} min "
              f"({q['wall_min_split_by_episode']:.0f} min split by episode)")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
