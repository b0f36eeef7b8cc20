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
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1, help="training processes in parallel")
    p.add_argument("--episodes", type=int, default=20, help="test episodes per team (seeds 0..N-1)")
    p.add_argument("--train-only", action="store_true")
    args = p.parse_args()
    train_missing(args.jobs)


if __name__ == "__main__":
    main()
