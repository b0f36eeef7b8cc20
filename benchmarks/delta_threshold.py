"""What the sigma-delta delta threshold buys: synaptic operations against agreement.

    python -m benchmarks.delta_threshold [--networks cartpole acrobot sb3_cartpole pong] [--out results]

A sigma-delta neuron sends a change of its activation once it reaches `--delta-threshold`
(normalized units: 1 = the largest calibrated activation); 0 sends every change. Raising it
silences small changes, so fewer messages and synaptic operations per decision, at some
cost in fidelity. Per network x threshold: conversion rate (agreement with the source on the
visited observations), normalized score, messages and synaptic operations per decision, on
the emulator (bit-exact with Lava), greedy for classic control, epsilon 0.05 for Pong (2
games per cell: a synop reference with its agreement, not a full score).

Writes results/delta_threshold.json (resumable: cells already there are kept) and
results/delta_threshold.png.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import lavaloop  # noqa: E402
from benchmarks.fidelity import CHECKPOINTS, NETWORKS  # noqa: E402
from lavaloop.atomic import write_json  # noqa: E402
from lavaloop.deploy.results import versions  # noqa: E402

THRESHOLDS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)
PONG_THRESHOLDS = (0.0, 0.01, 0.05)


def measure(network: str, threshold: float) -> dict:
    spec = NETWORKS[network]
    episodes = 2 if network == "pong" else spec["episodes"]
    t0 = time.time()
    art = lavaloop.convert(CHECKPOINTS / spec["checkpoint"], spec["env"], coding="sigma-delta",
                           delta_threshold=threshold)
    conversion_s = time.time() - t0
    res = lavaloop.run(art, episodes=episodes, backend="emulator", progress=False,
                       **({} if network == "pong" else {"epsilon": 0.0}))
    return {"network": network, "delta_threshold": threshold, "conversion_rate": res.agreement,
            "normalized_score": res.normalized_score, "mean_return": res.mean_return,
            "source_mean_return": res.source_mean_return, "messages_per_decision": res.spikes_per_decision,
            "synops_per_decision": res.synops_per_decision, "episodes": episodes, "decisions": res.decisions,
            "conversion_s": round(conversion_s, 2)}


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for network in NETWORKS:
        cells = sorted((c for c in record["cells"] if c["network"] == network), key=lambda c: c["delta_threshold"])
        if not cells:
            continue
        base = cells[0]["synops_per_decision"]
        xs = [c["synops_per_decision"] / base for c in cells]
        ax.plot(xs, [c["conversion_rate"] for c in cells], "o-", label=network)
        for x, c in zip(xs, cells):
            ax.annotate(f"{c['delta_threshold']:g}", (x, c["conversion_rate"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    ax.set(xscale="log", xlabel="synaptic ops per decision, relative to threshold 0",
           ylabel="agreement with the source", title="sigma-delta: delta threshold (labels) vs fidelity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    p.add_argument("--out", default="results")
    args = p.parse_args()
    path = Path(args.out) / "delta_threshold.json"
    record = json.loads(path.read_text()) if path.exists() else {"cells": []}
    done = {(c["network"], c["delta_threshold"]) for c in record["cells"]}
    for network in args.networks:
        for threshold in PONG_THRESHOLDS if network == "pong" else THRESHOLDS:
            if (network, threshold) in done:
                continue
            cell = measure(network, threshold)
            record["cells"].append(cell)
            record["versions"] = versions()
            write_json(path, record)
            print(f"{network} threshold {threshold:g}: agreement {cell['conversion_rate']:.3f}, "
                  f"{cell['synops_per_decision']:.0f} synops per decision")
    plot(record, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
