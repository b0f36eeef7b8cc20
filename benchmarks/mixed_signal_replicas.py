"""Copies of a mapped DQN against device mismatch (issue 19): results/mixed_signal_replicas.json + .png.

    lavaloop convert checkpoints/cartpole_dqn.pt --env CartPole-v1 --profile dynapse2 --fan-in prune \
        --distill --distill-mismatch 0 --calib-steps 5000 --spike-rate 0.45 --timesteps 32 -o cp.h5
    python -m benchmarks.mixed_signal_replicas cp.h5 --name "cartpole T=32, rate 0.45" [--replicas 1 2 4]

A trained artifact (one copy of the network) is deployed as N copies
(`MixedSignalArtifact.replicated`: each on its own cores, one host readout) on chip
instances 0-19 (training draws from seed 1,000,000 on: unseen) at each sigma, 3 episodes per
instance on the emulator (bit-exact with Lava per instance, tests/test_mixed_signal.py), with
the nominal readout (the copies averaged) and with the readout fitted to each instance
(run --calibrate-readout: `--readout per-chip`, its default nearly unpenalized ridge, cells keyed
"per chip, ridge 1e-3"; `per-chip-cv`, run --readout-fit cv, the strength cross-validated on
the calibration windows, "per chip, cv ridge"); `--timesteps T` deploys a window of T steps
instead of the trained one (run --timesteps; per-chip readouts only, fitted to the new counts;
cells keyed "... T=256"). Per cell: median
and 5-95 % band over instances of the agreement with the source and of the normalized score,
and the neurons, cores, chips and synapses used.
Results accumulate in one file keyed by --name; every instance is saved as it finishes (under a
file lock, so that runs of several networks, or of different cells of one network, can share the
file), and a rerun resumes where it stopped. `python -m benchmarks.mixed_signal` adds the cells to
results/mixed_signal.json.
"""
from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import lavaloop  # noqa: E402
from lavaloop.atomic import save_figure, write_json  # noqa: E402

OUT = Path("results/mixed_signal_replicas")
INSTANCES = range(20)
EPISODES = 3


# --readout: (run --readout-fit, or None for the nominal readout; the cells' readout_fit label)
READOUTS = {"per-chip": ("fixed", "ridge 1e-3"), "per-chip-cv": ("cv", "cv ridge"), "nominal": (None, "nominal")}


def cell_key(replicas: int, sigma: float, readout: str, timesteps: int | None = None) -> str:
    """A cell's key; `timesteps`: the window deployed, when not the one the network was trained for."""
    fit = READOUTS[readout][1]
    window = "" if timesteps is None else f" T={timesteps}"
    return f"replicas={replicas} sigma={sigma} readout={'nominal' if fit == 'nominal' else 'per chip, ' + fit}{window}"


def summarize(cell: dict) -> dict:
    """Median and 5-95 % band of a cell's per-instance agreement and normalized score."""
    a = np.array([r["agreement"] for r in cell["per_instance"]])
    s = np.array([r["normalized_score"] for r in cell["per_instance"]])
    return {**cell, "instances": len(a), "agreement_median": float(np.median(a)),
            "agreement_p05": float(np.percentile(a, 5)), "agreement_p95": float(np.percentile(a, 95)),
            "score_median": float(np.median(s)), "score_p05": float(np.percentile(s, 5))}


def save(path: Path, name: str, net: dict) -> dict:
    """Write network `name`'s entry into the results file, holding a lock on it; returns the file's contents.
    Cells merge with the file's, instance by instance, so that several runs (other cells, or other
    instances of one cell: `--instances`) can share the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = json.loads(path.read_text()) if path.is_file() else {"networks": {}}
        cells = res["networks"].get(name, {}).get("cells", {})
        for key, cell in net["cells"].items():
            runs = {r["instance"]: r for r in cells.get(key, {}).get("per_instance", []) + cell["per_instance"]}
            cells[key] = summarize({**cell, "per_instance": [runs[k] for k in sorted(runs)]})
        res["networks"][name] = {**net, "cells": cells}
        write_json(path, res)
    return res


def measured(path: Path, name: str, key: str) -> set[int]:
    """The instances of a cell already in the results file (written by this run or another)."""
    res = json.loads(path.read_text()) if path.is_file() else {"networks": {}}
    return {r["instance"] for r in res["networks"].get(name, {}).get("cells", {}).get(key, {}).get("per_instance", [])}


def measure(art, name: str, replicas: int, sigma: float, readout: str, res: dict, path: Path,
            instances=INSTANCES, timesteps: int | None = None) -> None:
    """Play one cell's `instances` not yet in the results file, saving it after each; `timesteps`:
    deploy with this window instead of the trained one (run --timesteps; a per-chip readout only)."""
    net = res["networks"].setdefault(name, {"cells": {}})
    copies = art.replicated(replicas)
    mapped = copies.mapped
    t = art.manifest.get("mismatch_training") or {}
    key, (fit, label) = cell_key(replicas, sigma, readout, timesteps), READOUTS[readout]
    cell = net["cells"].setdefault(key, {
        "replicas": replicas, "sigma": sigma, "readout_per_chip": fit is not None, "readout_fit": label,
        "per_instance": [],
        "mismatch_aware": float(t.get("sigma", 0.0)) > 0, "timesteps": timesteps or art.timesteps,
        "trained_timesteps": art.timesteps,
        "rate": mapped.report["rate"], **{k: mapped.report[k] for k in ("neurons", "cores", "chips", "synapses")}})
    for k in tqdm(list(instances), desc=key, leave=False):
        if k in measured(path, name, key):   # by an earlier run, or by another run sharing the cell
            continue
        r = lavaloop.run(copies, EPISODES, "emulator", epsilon=0.0, mismatch_seed=k, mismatch_sigma=sigma,
                         calibrate_readout=fit is not None, readout_fit=fit, timesteps=timesteps, progress=False)
        cell["per_instance"].append({"instance": k, "agreement": r.agreement, "normalized_score": r.normalized_score})
        net["cells"][key] = cell = save(path, name, net)["networks"][name]["cells"][key]
    net["cells"][key] = save(path, name, net)["networks"][name]["cells"][key]


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 8.5))
    colours = itertools.cycle(plt.get_cmap("tab20")((np.arange(20) * 2) % 20 + (np.arange(20) * 2) // 20))
    for name, net in res["networks"].items():
        for fit, style in (("ridge 1e-3", "-"), ("cv ridge", "--"), ("nominal", ":")):
            for sigma, window in sorted({(c["sigma"], c["timesteps"]) for c in net["cells"].values()}):
                cells = sorted((c for c in net["cells"].values() if "agreement_median" in c
                                and c["readout_fit"] == fit and c["sigma"] == sigma and c["timesteps"] == window),
                               key=lambda c: c["replicas"])
                if not cells:
                    continue
                n = [c["replicas"] for c in cells]
                readout = "nominal" if fit == "nominal" else f"per chip ({fit})"
                deployed = "" if cells[0].get("trained_timesteps", window) == window else f", deployed at T={window}"
                line, = ax.plot(n, [c["agreement_median"] for c in cells], style, marker="o", color=next(colours),
                                label=f"{name}, sigma {sigma}, readout {readout}{deployed}")
                ax.fill_between(n, [c["agreement_p05"] for c in cells], [c["agreement_p95"] for c in cells],
                                color=line.get_color(), alpha=0.12)
    ax.axhline(0.95, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("copies of the network on the chip")
    ax.set_ylabel("agreement with the source (median, 5-95 %)")
    ax.set_title("Copies against device mismatch (20 unseen chip instances)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", help="a trained mixed-signal artifact (one copy)")
    ap.add_argument("--name", required=True, help="the network's name in the results file")
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--sigma", type=float, nargs="+", default=[0.1])
    ap.add_argument("--readout", choices=(*READOUTS, "both"), default="both",
                    help="per-chip (run --calibrate-readout), per-chip-cv (... --readout-fit cv), nominal, or "
                         "both per-chip and nominal")
    ap.add_argument("--instances", type=int, nargs="+", default=list(INSTANCES),
                    help="chip instances to play, in this order (default 0-19; e.g. 19 18 ... 10 in a second "
                         "process to share a cell's instances)")
    ap.add_argument("--timesteps", type=int, help="deploy with this window (steps per decision) instead of the "
                    "trained one; the per-chip readouts are fitted to its counts (run --timesteps)")
    args = ap.parse_args()
    if args.timesteps is not None and args.readout in ("nominal", "both"):
        raise SystemExit("--timesteps needs a per-chip readout (--readout per-chip or per-chip-cv)")
    art = lavaloop.load_artifact(args.artifact)
    window = None if args.timesteps in (None, art.timesteps) else args.timesteps
    if art.kind != "mixed-signal" or art.manifest["mapping"].get("replicas", 1) != 1:
        raise SystemExit(f"{args.artifact}: not a one-copy mixed-signal artifact")
    path = OUT.with_suffix(".json")
    res = json.loads(path.read_text()) if path.is_file() else {"networks": {}}
    res["networks"].setdefault(args.name, {"cells": {}})["artifact"] = {
        "file": Path(args.artifact).name, "source": art.manifest["source"]["file"], "profile": art.profile.name,
        "timesteps": art.timesteps, "mapping": {k: art.manifest["mapping"][k] for k in ("rate", "fan_in")},
        "mismatch_training": {k: v for k, v in (art.manifest.get("mismatch_training") or {}).items() if k != "config"}}
    modes = ("per-chip", "nominal") if args.readout == "both" else (args.readout,)
    for sigma in args.sigma:
        for readout in modes:
            for n in args.replicas:
                measure(art, args.name, n, sigma, readout, res, path, args.instances, window)
                c = res["networks"][args.name]["cells"][cell_key(n, sigma, readout, window)]
                print(f"{args.name}: {cell_key(n, sigma, readout, window)}: agreement {c['agreement_median']:.3f} "
                      f"[{c['agreement_p05']:.3f}, {c['agreement_p95']:.3f}], score {c['score_median']:.2f}, "
                      f"{c['neurons']} neurons, {c['cores']} cores, {c['chips']} chips", flush=True)
    plot(save(path, args.name, res["networks"][args.name]), OUT.with_suffix(".png"))


if __name__ == "__main__":
    main()
