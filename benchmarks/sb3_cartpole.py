"""Train a CartPole DQN with stable-baselines3 (rl-zoo hyper-parameters), convert it, measure it.

    python -m benchmarks.sb3_cartpole [--steps 50000] [--out results]

Saves checkpoints/cartpole_sb3.zip (skipped if present), then runs 20 seeded episodes on
the emulator at several T and writes results/cartpole_sb3.json.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import lavaloop  # noqa: E402
from lavaloop.atomic import write_json  # noqa: E402
from lavaloop.deploy.results import versions  # noqa: E402

ZIP = Path(__file__).resolve().parents[1] / "checkpoints" / "cartpole_sb3.zip"


def train(steps: int) -> None:
    from stable_baselines3 import DQN

    model = DQN("MlpPolicy", "CartPole-v1", learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
                learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256,
                gradient_steps=128, exploration_fraction=0.16, exploration_final_eps=0.04,
                policy_kwargs={"net_arch": [256, 256]}, seed=0, verbose=0)
    model.learn(steps, progress_bar=False)
    model.save(ZIP)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--out", default="results")
    args = ap.parse_args()
    if not ZIP.exists():
        train(args.steps)
    art = lavaloop.convert(ZIP, "CartPole-v1", percentile=99.0)
    rec = {"checkpoint": ZIP.name, "percentile": 99.0, "cells": [], "versions": versions()}
    for t in (16, 32, 64, 128):
        res = lavaloop.run(art, episodes=20, backend="emulator", timesteps=t, epsilon=0.0, progress=False)
        rec["source_mean_return"] = res.source_mean_return
        rec["cells"].append({"timesteps": t, "conversion_rate": res.agreement, "mean_return": res.mean_return,
                             "normalized_score": res.normalized_score})
        print(json.dumps(rec["cells"][-1]), flush=True)
    write_json(Path(args.out) / "cartpole_sb3.json", rec)


if __name__ == "__main__":
    main()
