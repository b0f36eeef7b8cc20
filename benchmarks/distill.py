"""Conversion-aware distillation: decision agreement and return before and after, on the emulator.

    python -m benchmarks.distill [--episodes 20] [--timesteps 8 16 32 64] [--out results]

For each bundled DQN (the project's CartPole and Acrobot DQNs and the stable-baselines3
CartPole DQN) and each T: convert with the defaults, then with `--distill` through each
model (simulated spike trains, the default; the rate staircase), and play the same seeded
episodes (0..episodes-1, greedy) with each on the emulator (bit-exact with Lava). Records
the conversion rate, returns, normalized score, the model's held-out agreement reported at
conversion, and the distillation time. Finished cells are kept in results/distill.json; a
rerun does only the missing ones.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import lavaloop  # noqa: E402
from lavaloop.atomic import write_json  # noqa: E402
from lavaloop.deploy.results import versions  # noqa: E402

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
NETWORKS = {"cartpole_dqn": (CHECKPOINTS / "cartpole_dqn.pt", "CartPole-v1"),
            "cartpole_sb3": (CHECKPOINTS / "cartpole_sb3.zip", "CartPole-v1"),
            "acrobot_dqn": (CHECKPOINTS / "acrobot_dqn.pt", "Acrobot-v1")}


VARIANTS = {"defaults": {}, "spikes": {"distill": True, "distill_model": "spikes"},
            "staircase": {"distill": True, "distill_model": "staircase"}}


def cell(name: str, timesteps: int, variant: str, episodes: int) -> dict:
    ckpt, env = NETWORKS[name]
    art = lavaloop.convert(ckpt, env, timesteps=timesteps, **VARIANTS[variant])
    res = lavaloop.run(art, episodes=episodes, backend="emulator", epsilon=0.0, progress=False)
    d = art.manifest["distillation"] or {}
    return {"network": name, "env": env, "timesteps": timesteps, "variant": variant,
            "agreement": res.agreement, "mean_return": res.mean_return, "std_return": res.std_return,
            "source_mean_return": res.source_mean_return, "random_mean_return": res.random_mean_return,
            "normalized_score": res.normalized_score, "decisions": res.decisions,
            "ceiling": art.manifest["rate_limit_agreement"],
            "heldout_agreement_before": d.get("heldout_agreement_before"),
            "heldout_agreement_after": d.get("heldout_agreement_after"),
            "distill_seconds": d.get("seconds"), "conversion_seconds": art.manifest["conversion_seconds"]}


def plot(record: dict, path: Path) -> None:
    names = sorted({c["network"] for c in record["cells"]})
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        for variant, style in (("defaults", "o--"), ("staircase", "^:"), ("spikes", "s-")):
            cells = sorted((c for c in record["cells"] if c["network"] == name and c["variant"] == variant),
                           key=lambda c: c["timesteps"])
            label = variant if variant == "defaults" else f"distilled ({variant})"
            ax.plot([c["timesteps"] for c in cells], [c["agreement"] for c in cells], style, label=label)
        ax.set_xscale("log", base=2)
        ax.set_ylim(0.5, 1.0)
        ax.set_title(name)
        ax.set_xlabel("T (steps per decision)")
        ax.set_ylabel("decision agreement (emulator)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--timesteps", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", default="results")
    args = ap.parse_args()
    path = Path(args.out) / "distill.json"
    record = json.loads(path.read_text()) if path.exists() else {"cells": []}
    record.update(episodes=args.episodes, backend="emulator", epsilon=0.0, versions=versions())
    done = {(c["network"], c["timesteps"], c["variant"]) for c in record["cells"]}
    for name in args.networks:
        for t in args.timesteps:
            for variant in args.variants:
                if (name, t, variant) in done:
                    continue
                record["cells"].append(cell(name, t, variant, args.episodes))
                print(json.dumps(record["cells"][-1]), flush=True)
                write_json(path, record)
    plot(record, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
