"""GRSN on POMDP CartPole: training, float returns, fixed-point deployment, energy.

    python -m benchmarks.grsn_pomdp [--jobs 2] [--episodes 20]

1. Trains every missing reference policy (checkpoints/grsn/<task>_<cell>_s<seed>.pt, with
   its learning curve beside it): GRSN and GRU with seeds 0-2, LIF-with-TAP and GRSN
   without TAP with seed 0, on CartPole-V and CartPole-P (10k env steps each).
2. Evaluates every float policy greedily on test seeds 0..episodes-1.
3. Converts each GRSN policy to the loihi2 fixed-point stages and runs the same episodes on
   the emulator: return, action agreement with the float GRSN, carried-state error. Seed
   0's artifact also runs on Lava, and must match the emulator exactly, and is converted
   once more with 16-bit weights (to locate the fixed-point error).
4. Energy per env step: GRSN from the fixed-point run's counted operations; GRU from its
   float run with the same counting rule (an operation per non-zero input and synapse).

Writes results/grsn_pomdp.json and results/grsn_pomdp.png.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from conversion.envs import EnvSpec  # noqa: E402
from conversion.grsn import convert_policy, load_policy  # noqa: E402
from conversion.profiles import PROFILES  # noqa: E402
from conversion.models.train_recurrent import Config, episode_returns, train  # noqa: E402
from deploy.energy import ENERGY_MODELS, energy_report  # noqa: E402
from deploy.grsn import run_grsn, run_grsn_lava, run_grsn_emulator  # noqa: E402
from deploy.results import write_json  # noqa: E402

TASKS = ("CartPole-V", "CartPole-P")
RUNS = [(cell, seed) for seed in range(3) for cell in ("grsn", "gru")] + [("lif", 0), ("grsn_notap", 0)]
CKPT = Path("checkpoints/grsn")


def ckpt_path(task: str, cell: str, seed: int) -> Path:
    return CKPT / f"{task.lower().replace('-', '_')}_{cell}_s{seed}.pt"


def train_job(job: tuple[str, str, int]) -> str:
    task, cell, seed = job
    res = train(task, cell, seed, ckpt_path(task, cell, seed), Config(), progress=False)
    return f"{task} {cell} s{seed}: best eval {res['best_eval']:.1f}, final {res['final_eval']:.1f}"


def learning_curve(path: Path) -> list[tuple[int, float]]:
    with open(path.with_suffix(".csv")) as f:
        return [(int(r["step"]), float(r["eval_return"])) for r in csv.DictReader(f)]


@torch.no_grad()
def float_eval(path: Path, task: str, seeds: list[int]) -> dict:
    """Greedy returns of a float policy; for a GRU also its operations per step, counted by
    the chip's rule: one MAC per non-zero input and outgoing synapse of every Linear, plus
    the GRU's three gates' input and recurrent products and three elementwise products per unit."""
    net, _, _ = load_policy(path)
    if net.cfg.cell != "gru":
        return {"mean_return": float(np.mean(episode_returns(net, EnvSpec.for_id(task), seeds)))}
    ops, steps = {"mac": 0, "ac": 0, "neuron": 0}, [0]

    def linear_hook(mod, inp, out):
        ops["mac"] += int((inp[0] != 0).sum()) * mod.out_features

    def gru_hook(mod, inp, out):
        x, (h,) = inp
        ops["mac"] += 3 * mod.hidden * (int((x != 0).sum()) + int((h != 0).sum()) + 1)
        ops["neuron"] += mod.hidden
        steps[0] += 1

    hooks = [m.register_forward_hook(linear_hook) for m in net.modules() if isinstance(m, torch.nn.Linear)]
    hooks.append(net.rnn.register_forward_hook(gru_hook))
    returns = episode_returns(net, EnvSpec.for_id(task), seeds)
    for h in hooks:
        h.remove()
    return {"mean_return": float(np.mean(returns)), "energy": energy_report(ops, steps[0])}


def deploy_grsn(task: str, seed: int, seeds: list[int], lava_check: bool) -> dict:
    """Convert a GRSN policy and run it on the emulator (and, optionally, Lava for a bit-exact check)."""
    art = convert_policy(ckpt_path(task, "grsn", seed), task)
    rec = run_grsn(art, seeds, backend="emulator", progress=False)
    out = {k: rec[k] for k in ("mean_return", "std_return", "source_mean_return", "return_ratio",
                               "action_agreement", "state_error_mean", "state_error_max", "spike_mismatch",
                               "grsn_spikes_per_step", "energy", "steps_per_s")}
    out["returns"] = [e["return"] for e in rec["episodes"]]
    out["conversion_s"] = art.manifest["conversion_seconds"]
    if lava_check:   # the diagnosis of the agreement shortfall: the same policy with 16-bit weights
        with tempfile.TemporaryDirectory() as tmp:
            wide = Path(tmp) / "loihi2_w16.json"
            wide.write_text(json.dumps(dataclasses.replace(PROFILES["loihi2"], name="loihi2_w16",
                                                           weight_bits=16).to_dict()))
            rec16 = run_grsn(convert_policy(ckpt_path(task, "grsn", seed), task, profile_name=str(wide)), seeds,
                             backend="emulator", progress=False)
        out["weights_16_bit"] = {k: rec16[k] for k in ("mean_return", "action_agreement", "spike_mismatch",
                                                        "state_error_mean")}
        lava_seeds = seeds[:3]
        emu, lava = run_grsn_emulator(art, lava_seeds, 0.0, False), run_grsn_lava(art, lava_seeds, 0.0, False)
        out["lava_check"] = {
            "seeds": lava_seeds,
            "identical": bool(all(np.array_equal(a, b) for a, b in zip(emu.greedy, lava.greedy))
                              and emu.spikes == lava.spikes and emu.extra["ops"] == lava.extra["ops"]
                              and np.array_equal(emu.returns, lava.returns)),
            "lava_steps_per_s": lava.steps / lava.wall_s}
    return out


def summarize(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values)), "n": len(values)}


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    colors = {"grsn": "C0", "gru": "C1", "lif": "C2", "grsn_notap": "C3"}
    for ax, task in zip(axes[:2], TASKS):
        for cell, runs in res["tasks"][task]["curves"].items():
            steps = np.array([s for s, _ in runs[0]])
            vals = np.array([[v for _, v in r] for r in runs])
            ax.plot(steps, vals.mean(0), color=colors[cell], label=f"{cell} (n={len(runs)})")
            if len(runs) > 1:
                ax.fill_between(steps, vals.min(0), vals.max(0), color=colors[cell], alpha=0.15)
        ax.set(title=f"{task}: greedy eval return (10 episodes)", xlabel="env steps", ylabel="return")
        ax.legend(fontsize=8)
    ax = axes[2]
    labels = ["grsn", "gru", "lif", "grsn_notap", "grsn fixed-point"]
    for k, task in enumerate(TASKS):
        t = res["tasks"][task]
        vals = [t["float"][c]["mean_return"]["mean"] for c in labels[:4]] + [t["fixed_point"]["mean_return"]["mean"]]
        sds = [t["float"][c]["mean_return"]["sd"] for c in labels[:4]] + [t["fixed_point"]["mean_return"]["sd"]]
        ax.bar(np.arange(5) + k * 0.4, vals, 0.4, yerr=sds, label=task, alpha=0.8)
    ax.set_xticks(np.arange(5) + 0.2, labels, rotation=20, fontsize=8)
    ax.set(title=f"test return ({res['episodes']} episodes; mean +- sd over seeds)", ylabel="return")
    ax.legend(fontsize=8)
    ax = axes[3]
    for k, task in enumerate(TASKS):
        t = res["tasks"][task]
        vals = [t["energy_nj"]["grsn_fixed_point"][m] for m in ENERGY_MODELS] + \
               [t["energy_nj"]["gru_float"][m] for m in ENERGY_MODELS]
        ax.bar(np.arange(4) + k * 0.4, vals, 0.4, label=task, alpha=0.8)
    ax.set_xticks(np.arange(4) + 0.2, [f"GRSN {m}" for m in ENERGY_MODELS] + [f"GRU {m}" for m in ENERGY_MODELS],
                  rotation=20, fontsize=8)
    ax.set(title="energy per env step (nJ)", yscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2, help="training processes")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("results/grsn_pomdp.json"))
    args = p.parse_args()
    jobs = [(t, c, s) for (c, s) in RUNS for t in TASKS if not ckpt_path(t, c, s).exists()]
    if jobs:
        with ProcessPoolExecutor(args.jobs) as pool:
            for line in pool.map(train_job, jobs):
                print(line, flush=True)
    seeds = list(range(args.episodes))
    res = {"episodes": args.episodes, "train_config": Config().__dict__, "tasks": {}}
    t0 = time.time()
    for task in TASKS:
        cells = sorted({c for c, _ in RUNS}, key=[c for c, _ in RUNS].index)
        t = {"curves": {}, "float": {}}
        for cell in cells:
            runs = [s for c, s in RUNS if c == cell]
            t["curves"][cell] = [learning_curve(ckpt_path(task, cell, s)) for s in runs]
            evals = [float_eval(ckpt_path(task, cell, s), task, seeds) for s in runs]
            t["float"][cell] = {"mean_return": summarize([e["mean_return"] for e in evals]),
                                "per_seed": [e["mean_return"] for e in evals]}
            if "energy" in evals[0]:
                t["float"][cell]["energy"] = evals[0]["energy"]
        fixed = [deploy_grsn(task, s, seeds, lava_check=s == 0) for c, s in RUNS if c == "grsn"]
        t["fixed_point"] = {"mean_return": summarize([f["mean_return"] for f in fixed]),
                            "return_ratio": summarize([f["return_ratio"] for f in fixed]),
                            "action_agreement": summarize([f["action_agreement"] for f in fixed]),
                            "per_seed": fixed}
        t["grsn_vs_gru"] = t["float"]["grsn"]["mean_return"]["mean"] / t["float"]["gru"]["mean_return"]["mean"]
        t["energy_nj"] = {"grsn_fixed_point": fixed[0]["energy"]["energy_per_step_nj"],
                          "gru_float": t["float"]["gru"]["energy"]["energy_per_step_nj"]}
        t["energy_ratio_grsn_over_gru"] = {m: t["energy_nj"]["grsn_fixed_point"][m] / t["energy_nj"]["gru_float"][m]
                                           for m in ENERGY_MODELS}
        res["tasks"][task] = t
        print(f"{task}: GRSN {t['float']['grsn']['mean_return']} GRU {t['float']['gru']['mean_return']} "
              f"fixed {t['fixed_point']['mean_return']} agreement {t['fixed_point']['action_agreement']} "
              f"energy ratio {t['energy_ratio_grsn_over_gru']}", flush=True)
    res["eval_wall_s"] = round(time.time() - t0, 1)
    write_json(args.out, res)
    plot(res, args.out.with_suffix(".png"))
    print(f"results: {args.out}, {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
