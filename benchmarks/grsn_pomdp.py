"""GRSN on POMDP CartPole: training, float returns, fixed-point deployment, energy.

    python -m benchmarks.grsn_pomdp [--jobs 2] [--episodes 20]

1. Trains every missing reference policy (checkpoints/grsn/<task>_<cell>_s<seed>.pt, with
   its learning curve beside it): GRSN and GRU with seeds 0-2, LIF-with-TAP with seeds 0-1
   and GRSN without TAP with seed 0, on CartPole-V and CartPole-P (10k env steps each); then
   `grsn_qat`: each GRSN policy fine-tuned for 5k env steps with its weights rounded to
   loihi2's 8-bit mantissas (quantization-aware training).
2. Evaluates every float policy greedily on test seeds 0..episodes-1.
3. Converts each GRSN and GRSN-QAT policy to the loihi2 fixed-point stages and runs the
   same episodes on the emulator: return, action agreement with its float policy,
   carried-state error. Seed 0's artifacts also run on Lava, and must match the emulator
   exactly; the post-training-quantized one is converted once more with 16-bit weights
   (to locate the fixed-point error).
4. Energy per env step: GRSN from the fixed-point run's counted operations; GRU from its
   float run with the same counting rule (an operation per non-zero input and synapse).
5. SAC (the paper's trainer, `lavaloop.trainers.sac`): GRSN and GRU on Pendulum-V
   (continuous; 20k env steps, seed 0), the GRSN policy deployed in fixed point (action
   error against the float policy, Lava == emulator); and SAC-discrete GRSN on CartPole-V
   (10k steps) beside the recurrent DQN's GRSN seed 0.

Writes results/grsn_pomdp.json and results/grsn_pomdp.png.

`--train-pendulum` only trains Pendulum-V at the paper's 50k env steps, GRSN and GRU with
seeds 0-2 (checkpoints/grsn/pendulum_v_<cell>_50k_s<seed>.pt), then fine-tunes each GRSN
policy quantization-aware with its kept critic (`grsn_qat`); resumable, rerun to continue.
`--train-lunar` trains LunarLander-V (SAC-discrete), GRSN and GRU seed 0, at this machine's
budget of 30k env steps (the paper: 200k), resumably. `--sac-results` evaluates what is
trained so far into the JSON's `sac` record ("Pendulum-V 50k": per seed the float GRSN and
GRU, the GRSN actor in fixed point after post-training quantization and after QAT, and the
QAT actor on loihi2 with 24-bit graded spikes; "LunarLander-V": float GRSN and GRU;
`pending` lists the runs not trained yet).
"""
from __future__ import annotations

import argparse
import contextlib
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

from lavaloop.atomic import write_json  # noqa: E402
from lavaloop.conversion.grsn import convert_policy, load_policy  # noqa: E402
from lavaloop.deploy.energy import ENERGY_MODELS, counted_float_ops, energy_report  # noqa: E402
from lavaloop.deploy.kinds.grsn import run_grsn_emulator, run_grsn_lava  # noqa: E402
from lavaloop.deploy.run import run  # noqa: E402
from lavaloop.envs import EnvSpec  # noqa: E402
from lavaloop.options import RunSettings  # noqa: E402
from lavaloop.profiles import PROFILES  # noqa: E402
from lavaloop.trainers import sac as train_sac  # noqa: E402
from lavaloop.trainers.recurrent import Config, episode_returns, train  # noqa: E402

TASKS = ("CartPole-V", "CartPole-P")
RUNS = ([(cell, seed) for seed in range(3) for cell in ("grsn", "gru")]
        + [("lif", 0), ("lif", 1), ("grsn_notap", 0)])     # a no-TAP run takes > 15 min here
QAT_RUNS = [("grsn_qat", seed) for seed in range(3)]       # fine-tuned from ("grsn", seed)
QAT_BITS = PROFILES["loihi2"].weight_bits
SAC_RUNS = {"pendulum": [("Pendulum-V", "grsn"), ("Pendulum-V", "gru")],   # seed 0; files <task>_<cell>_s0
            "sac_discrete": [("CartPole-V", "grsn_sacd")]}
SAC_CONFIGS = {"Pendulum-V": train_sac.Config(total_steps=20_000, gamma=0.99),
               "CartPole-V": train_sac.Config(total_steps=10_000, gamma=0.9)}
# The paper's Pendulum-V budget, 3 seeds, GRSN and GRU, then each GRSN policy fine-tuned
# quantization-aware with its critic (`--train-pendulum`; resumable: rerun to continue).
PENDULUM_STEPS = 50_000
PENDULUM_RUNS = [(cell, seed) for seed in range(3) for cell in ("grsn", "gru")]
PENDULUM_QAT_STEPS = 10_000
# LunarLander-V (dims [2, 3, 5, 6, 7]) with SAC-discrete, the paper's trainer for discrete tasks,
# GRSN and GRU seed 0 (`--train-lunar`; resumable). The paper trains 200k env steps; at about
# 10 env steps/s per run that is 4-5 CPU-hours, so this machine's budget is 30k (under an hour).
LUNAR_STEPS = 30_000
# loihi2 with 24-bit graded spikes (input and messages; Lava's own S4D process sends 24-bit
# messages): the Pendulum actor's spikes need more than 16 bits of input precision.
GRADED_24 = {"name": "loihi2_graded24", "input_bits": 24, "message_bits": 24}
LUNAR_RUNS = [("grsn", 0), ("gru", 0)]
LUNAR_EVAL_EVERY = 5_000
CKPT = Path("checkpoints/grsn")


def ckpt_path(task: str, cell: str, seed: int) -> Path:
    return CKPT / f"{task.lower().replace('-', '_')}_{cell}_s{seed}.pt"


def train_all(job, todo: list, jobs: int) -> None:
    """Run `job` on every item of `todo` in `jobs` processes, printing each summary line."""
    if todo:
        with ProcessPoolExecutor(jobs) as pool:
            for line in pool.map(job, todo):
                print(line, flush=True)


def train_job(job: tuple[str, str, int]) -> str:
    task, cell, seed = job
    if cell == "grsn_qat":
        res = train(task, "grsn", seed, ckpt_path(task, cell, seed), Config.finetune(), progress=False,
                    weight_bits=QAT_BITS, init_from=ckpt_path(task, "grsn", seed))
    else:
        res = train(task, cell, seed, ckpt_path(task, cell, seed), Config(), progress=False)
    return f"{task} {cell} s{seed}: best eval {res['best_eval']:.1f}, final {res['final_eval']:.1f}"


def train_sac_job(job: tuple[str, str]) -> str:
    task, cell = job
    res = train_sac.train(task, cell.removesuffix("_sacd"), 0, ckpt_path(task, cell, 0), SAC_CONFIGS[task],
                          progress=False)
    return f"{task} {cell} s0 (SAC): best eval {res['best_eval']:.1f}, final {res['final_eval']:.1f}"


def pendulum_path(cell: str, seed: int) -> Path:
    return CKPT / f"pendulum_v_{cell}_50k_s{seed}.pt"


def pendulum_job(job: tuple[str, int]) -> str:
    cell, seed = job
    if cell == "grsn_qat":
        res = train_sac.train("Pendulum-V", "grsn", seed, pendulum_path(cell, seed),
                              train_sac.Config.finetune(PENDULUM_QAT_STEPS), progress=False, weight_bits=QAT_BITS,
                              init_from=pendulum_path("grsn", seed))
    else:
        res = train_sac.train("Pendulum-V", cell, seed, pendulum_path(cell, seed),
                              train_sac.Config(total_steps=PENDULUM_STEPS), progress=False)
    return f"Pendulum-V {cell} s{seed} (SAC): best eval {res['best_eval']:.1f}, final {res['final_eval']:.1f}"


def lunar_path(cell: str, seed: int) -> Path:
    return CKPT / f"lunarlander_v_{cell}_{LUNAR_STEPS // 1000}k_s{seed}.pt"


def lunar_job(job: tuple[str, int]) -> str:
    cell, seed = job
    res = train_sac.train("LunarLander-V", cell, seed, lunar_path(cell, seed),
                          train_sac.Config(total_steps=LUNAR_STEPS), eval_every=LUNAR_EVAL_EVERY, progress=False)
    return (f"LunarLander-V {cell} s{seed} (SAC-discrete): best eval {res['best_eval']:.1f}, "
            f"final {res['final_eval']:.1f}")


def train_lunar(jobs: int) -> None:
    """Every missing LunarLander-V run (continuing any interrupted one)."""
    train_all(lunar_job, [r for r in LUNAR_RUNS if not lunar_path(*r).exists()], jobs)


def lunar_results(seeds: list[int]) -> dict:
    """LunarLander-V GRSN vs GRU (SAC-discrete): curves and test returns of the runs finished so
    far (the others are listed as pending); the GRSN policy also in fixed point (post-training
    quantized, loihi2): agreement with its float actions and energy per step against the GRU's."""
    out = {"config": train_sac.Config(total_steps=LUNAR_STEPS).__dict__, "runs": {}, "pending": []}
    for cell, seed in LUNAR_RUNS:
        path = lunar_path(cell, seed)
        if not path.exists():
            out["pending"].append(f"{cell} s{seed}")
            continue
        ev = float_eval(path, "LunarLander-V", seeds)
        out["runs"][f"{cell} s{seed}"] = {"curve": learning_curve(path), "float": ev["mean_return"],
                                          **({"energy": ev["energy"]} if "energy" in ev else {})}
        if cell == "grsn":
            out["runs"][f"{cell} s{seed}"]["fixed_point"] = run_grsn(convert_policy(path, "LunarLander-V"), seeds)
    if not out["pending"]:
        grsn, gru = (out["runs"][f"{c} s0"] for c in ("grsn", "gru"))
        out.update(grsn_return=grsn["float"], gru_return=gru["float"], grsn_minus_gru=grsn["float"] - gru["float"],
                   grsn_over_gru=grsn["float"] / gru["float"],
                   lava_agreement=grsn["fixed_point"]["action_agreement"],
                   energy_ratio=energy_ratio(grsn["fixed_point"], gru))
    return out


def energy_ratio(grsn_fixed: dict, gru_float: dict) -> float:
    """Energy per step (45 nm) of a fixed-point GRSN run over its GRU baseline's float operations."""
    return (grsn_fixed["energy"]["energy_per_decision_nj"]["cmos45"]
            / gru_float["energy"]["energy_per_decision_nj"]["cmos45"])


def train_pendulum(jobs: int) -> None:
    """Every missing Pendulum-V run at the paper's budget, seed by seed: GRSN and GRU, then the
    GRSN policy's QAT fine-tuning (so that a session that stops early leaves whole seeds)."""
    for seed in range(3):
        for runs in ([(c, s) for c, s in PENDULUM_RUNS if s == seed], [("grsn_qat", seed)]):
            train_all(pendulum_job, [r for r in runs if not pendulum_path(*r).exists()], jobs)


def pendulum_results(seeds: list[int]) -> dict:
    """Pendulum-V at the paper's 50k env steps, per training seed whose runs exist: the float
    GRSN and GRU (curves, returns), the GRSN actor in fixed point after post-training
    quantization and after SAC QAT (return, share of steps whose action is within 0.02 of
    the float actor's). Seeds not trained yet are listed as pending."""
    out = {"config": {**train_sac.Config(total_steps=PENDULUM_STEPS).__dict__},
           "qat_config": {**train_sac.Config.finetune(PENDULUM_QAT_STEPS).__dict__, "weight_bits": QAT_BITS},
           "seeds": {}, "pending": []}
    for seed in range(3):
        missing_ = [c for c in ("grsn", "gru", "grsn_qat") if not pendulum_path(c, seed).exists()]
        out["pending"] += [f"{c} s{seed}" for c in missing_]
        if {"grsn", "gru"} & set(missing_):
            continue
        rec = {}
        for c in ("grsn", "gru"):
            ev = float_eval(pendulum_path(c, seed), "Pendulum-V", seeds)
            rec[c] = {"curve": learning_curve(pendulum_path(c, seed)), "float": ev["mean_return"],
                      **({"energy": ev["energy"]} if "energy" in ev else {})}
        rec["grsn_over_gru"] = rec["grsn"]["float"] / rec["gru"]["float"]
        for cell, key in (("grsn", "fixed_point"), ("grsn_qat", "fixed_point_qat")):
            if pendulum_path(cell, seed).exists():
                rec[key] = run_grsn(convert_policy(pendulum_path(cell, seed), "Pendulum-V"), seeds)
        if pendulum_path("grsn_qat", seed).exists():
            with variant_profile(GRADED_24) as wide:
                rec["fixed_point_qat_24bit_spikes"] = run_grsn(
                    convert_policy(pendulum_path("grsn_qat", seed), "Pendulum-V", profile=wide), seeds)
        out["seeds"][seed] = rec
    done = list(out["seeds"].values())
    if done:
        grsn, gru = (summarize([r[c]["float"] for r in done]) for c in ("grsn", "gru"))
        out.update(grsn_return=grsn, gru_return=gru, grsn_over_gru=grsn["mean"] / gru["mean"],
                   grsn_within_10_percent=bool(abs(grsn["mean"] - gru["mean"]) <= 0.1 * abs(gru["mean"])))
        for key, name in (("fixed_point_qat", "qat_action_within_0_02"),
                          ("fixed_point_qat_24bit_spikes", "qat_24bit_spikes_action_within_0_02")):
            qat = [r[key]["action_agreement"] for r in done if key in r]
            if qat:
                out[name] = summarize(qat)
        with_qat = [r for r in done if "fixed_point_qat" in r]
        if with_qat:    # the per-task keys: the QAT actor on loihi2 (share of steps within 0.02)
            out["lava_agreement"] = out["qat_action_within_0_02"]["mean"]
            out["energy_ratio"] = float(np.mean([energy_ratio(r["fixed_point_qat"], r["gru"]) for r in with_qat]))
    return out


def sac_results(seeds: list[int]) -> dict:
    """Pendulum-V (float GRSN vs GRU, fixed-point GRSN) and SAC-discrete vs DQN on CartPole-V."""
    out = {"configs": {t: c.__dict__ for t, c in SAC_CONFIGS.items()}, "Pendulum-V": {"curves": {}, "float": {}}}
    pend = out["Pendulum-V"]
    for task, cell in SAC_RUNS["pendulum"]:
        pend["curves"][cell] = learning_curve(ckpt_path(task, cell, 0))
        pend["float"][cell] = float_eval(ckpt_path(task, cell, 0), task, seeds)
    pend["fixed_point"] = deploy_grsn("Pendulum-V", "grsn", 0, seeds, lava_check=True)
    (task, cell), = SAC_RUNS["sac_discrete"]
    out["sac_discrete_vs_dqn"] = {
        "task": task, "curves": {"sac_discrete": learning_curve(ckpt_path(task, cell, 0)),
                                 "dqn": learning_curve(ckpt_path(task, "grsn", 0))},
        "sac_discrete": float_eval(ckpt_path(task, cell, 0), task, seeds)["mean_return"],
        "dqn": float_eval(ckpt_path(task, "grsn", 0), task, seeds)["mean_return"]}
    return out


def missing(runs: list[tuple[str, int]]) -> list[tuple[str, str, int]]:
    return [(t, c, s) for (c, s) in runs for t in TASKS if not ckpt_path(t, c, s).exists()]


def learning_curve(path: Path, offset: int = 0) -> list[tuple[int, float]]:
    """(env step, eval return); a fine-tuned policy's steps continue its source's (`offset`)."""
    with open(path.with_suffix(".csv")) as f:
        return [(offset + int(r["step"]), float(r["eval_return"])) for r in csv.DictReader(f)]


@torch.no_grad()
def float_eval(path: Path, task: str, seeds: list[int]) -> dict:
    """Greedy returns of a float policy; for a GRU also its operations per step, counted by
    the chip's rule: one MAC per non-zero input and outgoing synapse of every Linear, plus
    the GRU's three gates' input and recurrent products and three elementwise products per unit."""
    net, _, _ = load_policy(path)
    if net.cfg.cell != "gru":
        return {"mean_return": float(np.mean(episode_returns(net, EnvSpec.for_id(task), seeds)))}
    with counted_float_ops(net) as (ops, steps):
        returns = episode_returns(net, EnvSpec.for_id(task), seeds)
    return {"mean_return": float(np.mean(returns)), "energy": energy_report(ops, steps[0])}


def run_grsn(art, seeds: list[int]) -> dict:
    """The emulator's RunResult of a GRSN artifact, in this study's record keys."""
    res = run(art, RunSettings(episodes=len(seeds), seed=seeds[0], backend="emulator"), progress=False)
    d = res.details
    return {"mean_return": res.mean_return, "std_return": res.std_return, "source_mean_return": res.source_mean_return,
            "return_ratio": res.return_ratio, "normalized_score": res.normalized_score,
            "action_agreement": res.agreement, **{k: d[k] for k in ("action_error_mean", "action_error_max") if k in d},
            "state_error_mean": d["state_error_mean"], "state_error_max": d["state_error_max"],
            "spike_mismatch": d["spike_mismatch"], "grsn_spikes_per_step": res.spikes_per_decision,
            "energy": res.energy, "steps_per_s": res.steps_per_s, "returns": res.returns}


@contextlib.contextmanager
def variant_profile(changes: dict):
    """The path of a temporary profile file: loihi2 with `changes` (which include its name)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{changes['name']}.json"
        path.write_text(json.dumps(dataclasses.replace(PROFILES["loihi2"], **changes).to_dict()))
        yield str(path)


def deploy_grsn(task: str, cell: str, seed: int, seeds: list[int], lava_check: bool) -> dict:
    """Convert a GRSN policy and run it on the emulator (and, optionally, Lava for a bit-exact check)."""
    art = convert_policy(ckpt_path(task, cell, seed), task)
    out = run_grsn(art, seeds)
    out["conversion_s"] = art.manifest["conversion_seconds"]
    if lava_check and cell == "grsn" and task in TASKS:   # where post-training quantization loses agreement
        with variant_profile({"name": "loihi2_w16", "weight_bits": 16}) as wide:
            rec16 = run_grsn(convert_policy(ckpt_path(task, "grsn", seed), task, profile=wide), seeds)
        out["weights_16_bit"] = {k: rec16[k] for k in ("mean_return", "action_agreement", "spike_mismatch",
                                                        "state_error_mean")}
    if lava_check:
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

    fig, axes = plt.subplots(1, 6, figsize=(30, 4.2))
    colors = {"grsn": "C0", "gru": "C1", "lif": "C2", "grsn_notap": "C3", "grsn_qat": "C4"}
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
    labels = ["grsn", "gru", "lif", "grsn_notap", "grsn_qat"]
    fixed = [("fixed_point", "grsn fixed-point"), ("fixed_point_qat", "grsn_qat fixed-point")]
    n = len(labels) + len(fixed)
    for k, task in enumerate(TASKS):
        t = res["tasks"][task]
        stats = [t["float"][c]["mean_return"] for c in labels] + [t[key]["mean_return"] for key, _ in fixed]
        ax.bar(np.arange(n) + k * 0.4, [s["mean"] for s in stats], 0.4, yerr=[s["sd"] for s in stats],
               label=task, alpha=0.8)
    ax.set_xticks(np.arange(n) + 0.2, labels + [name for _, name in fixed], rotation=25, fontsize=8)
    ax.set(title=f"test return ({res['episodes']} episodes; mean +- sd over seeds)", ylabel="return")
    ax.legend(fontsize=8)
    ax = axes[3]
    bars = [("grsn_fixed_point", "GRSN"), ("grsn_qat_fixed_point", "GRSN-QAT"), ("gru_float", "GRU")]
    names = [f"{name} {m}" for _, name in bars for m in ENERGY_MODELS]
    for k, task in enumerate(TASKS):
        e = res["tasks"][task]["energy_nj"]
        ax.bar(np.arange(len(names)) + k * 0.4, [e[key][m] for key, _ in bars for m in ENERGY_MODELS], 0.4,
               label=task, alpha=0.8)
    ax.set_xticks(np.arange(len(names)) + 0.2, names, rotation=25, fontsize=8)
    ax.set(title="energy per env step (nJ)", yscale="log")
    ax.legend(fontsize=8)
    ax, sac = axes[4], res["sac"]
    for cell, curve in sac["Pendulum-V"]["curves"].items():
        ax.plot(*zip(*curve), color=colors[cell], label=f"Pendulum-V {cell} (SAC)")
    for seed, rec in sac.get("Pendulum-V 50k", {}).get("seeds", {}).items():
        for cell in ("grsn", "gru"):
            ax.plot(*zip(*rec[cell]["curve"]), color=colors[cell], lw=0.7, alpha=0.6,
                    label=f"Pendulum-V {cell} 50k (SAC)" if seed in ("0", 0) else None)
    ax.set(title="SAC: greedy eval return (10 episodes)", xlabel="env steps", ylabel="Pendulum-V return")
    ax2 = ax.twinx()
    for name, curve in sac["sac_discrete_vs_dqn"]["curves"].items():
        ax2.plot(*zip(*curve), ls="--", color="C5" if name == "dqn" else "C6", label=f"CartPole-V grsn ({name})")
    ax2.set_ylabel("CartPole-V return")
    ax.legend(fontsize=7, loc="lower left")
    ax2.legend(fontsize=7, loc="lower right")
    ax, lunar = axes[5], sac.get("LunarLander-V", {})
    for name, rec in lunar.get("runs", {}).items():
        ax.plot(*zip(*rec["curve"]), color=colors[name.split()[0]], label=f"{name} (SAC-discrete)")
    ax.set(title=f"LunarLander-V, {LUNAR_STEPS // 1000}k env steps: greedy eval return", xlabel="env steps",
           ylabel="return")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2, help="training processes")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("results/grsn_pomdp.json"))
    p.add_argument("--train-pendulum", action="store_true",
                   help="only train the Pendulum-V runs at 50k env steps (3 seeds, GRSN, GRU, GRSN-QAT)")
    p.add_argument("--train-lunar", action="store_true",
                   help="only train the LunarLander-V runs at 30k env steps (GRSN, GRU; SAC-discrete)")
    p.add_argument("--sac-results", action="store_true",
                   help="only evaluate the Pendulum-V 50k and LunarLander-V runs trained so far, into the JSON's sac")
    args = p.parse_args()
    if args.train_pendulum or args.train_lunar:
        (train_pendulum if args.train_pendulum else train_lunar)(args.jobs)
        return
    if args.sac_results:
        res = json.loads(args.out.read_text())
        seeds = list(range(args.episodes))
        res["sac"]["Pendulum-V 50k"], res["sac"]["LunarLander-V"] = pendulum_results(seeds), lunar_results(seeds)
        write_json(args.out, res)
        plot(res, args.out.with_suffix(".png"))
        for key in ("Pendulum-V 50k", "LunarLander-V"):
            print(key, json.dumps({k: v for k, v in res["sac"][key].items() if k not in ("seeds", "runs")}))
        return
    for runs in (RUNS, QAT_RUNS):      # the QAT runs start from the trained GRSN policies
        train_all(train_job, missing(runs), args.jobs)
    train_all(train_sac_job, [(t, c) for runs in SAC_RUNS.values() for t, c in runs
                              if not ckpt_path(t, c, 0).exists()], args.jobs)
    seeds = list(range(args.episodes))
    res = {"episodes": args.episodes, "train_config": Config().__dict__,
           "qat_config": {**Config.finetune().__dict__, "weight_bits": QAT_BITS}, "tasks": {}}
    t0 = time.time()
    all_runs = RUNS + QAT_RUNS
    for task in TASKS:
        cells = sorted({c for c, _ in all_runs}, key=[c for c, _ in all_runs].index)
        t = {"curves": {}, "float": {}}
        for cell in cells:
            runs = [s for c, s in all_runs if c == cell]
            offset = Config().total_steps if cell == "grsn_qat" else 0
            t["curves"][cell] = [learning_curve(ckpt_path(task, cell, s), offset) for s in runs]
            evals = [float_eval(ckpt_path(task, cell, s), task, seeds) for s in runs]
            t["float"][cell] = {"mean_return": summarize([e["mean_return"] for e in evals]),
                                "per_seed": [e["mean_return"] for e in evals]}
            if "energy" in evals[0]:
                t["float"][cell]["energy"] = evals[0]["energy"]
        for cell, key in (("grsn", "fixed_point"), ("grsn_qat", "fixed_point_qat")):
            fixed = [deploy_grsn(task, cell, s, seeds, lava_check=s == 0) for c, s in all_runs if c == cell]
            t[key] = {"mean_return": summarize([f["mean_return"] for f in fixed]),
                      "return_ratio": summarize([f["return_ratio"] for f in fixed]),
                      "action_agreement": summarize([f["action_agreement"] for f in fixed]),
                      "per_seed": fixed}
        t["grsn_vs_gru"] = t["float"]["grsn"]["mean_return"]["mean"] / t["float"]["gru"]["mean_return"]["mean"]
        t["grsn_qat_vs_gru"] = (t["float"]["grsn_qat"]["mean_return"]["mean"]
                                / t["float"]["gru"]["mean_return"]["mean"])
        gru_nj = t["float"]["gru"]["energy"]["energy_per_decision_nj"]
        t["energy_nj"] = {"grsn_fixed_point": t["fixed_point"]["per_seed"][0]["energy"]["energy_per_decision_nj"],
                          "grsn_qat_fixed_point":
                              t["fixed_point_qat"]["per_seed"][0]["energy"]["energy_per_decision_nj"],
                          "gru_float": gru_nj}
        t["energy_ratio_grsn_over_gru"] = {m: t["energy_nj"]["grsn_fixed_point"][m] / gru_nj[m]
                                           for m in ENERGY_MODELS}
        t["energy_ratio_grsn_qat_over_gru"] = {m: t["energy_nj"]["grsn_qat_fixed_point"][m] / gru_nj[m]
                                               for m in ENERGY_MODELS}
        res["tasks"][task] = t
        print(f"{task}: GRSN {t['float']['grsn']['mean_return']} GRU {t['float']['gru']['mean_return']} "
              f"QAT {t['float']['grsn_qat']['mean_return']}\n  fixed {t['fixed_point']['mean_return']} "
              f"agreement {t['fixed_point']['action_agreement']}\n  QAT fixed {t['fixed_point_qat']['mean_return']} "
              f"agreement {t['fixed_point_qat']['action_agreement']}\n  energy ratio "
              f"{t['energy_ratio_grsn_over_gru']} QAT {t['energy_ratio_grsn_qat_over_gru']}", flush=True)
    res["sac"] = sac_results(seeds)
    res["sac"]["Pendulum-V 50k"], res["sac"]["LunarLander-V"] = pendulum_results(seeds), lunar_results(seeds)
    pend = res["sac"]["Pendulum-V"]
    fixed = pend["fixed_point"]
    print(f"Pendulum-V (SAC): GRSN {pend['float']['grsn']['mean_return']:.1f} "
          f"GRU {pend['float']['gru']['mean_return']:.1f} "
          f"fixed {fixed['mean_return']:.1f} action error {fixed['action_error_mean']:.4f}; "
          f"CartPole-V SAC-discrete {res['sac']['sac_discrete_vs_dqn']['sac_discrete']:.1f} vs DQN "
          f"{res['sac']['sac_discrete_vs_dqn']['dqn']:.1f}", flush=True)
    res["eval_wall_s"] = round(time.time() - t0, 1)
    write_json(args.out, res)
    plot(res, args.out.with_suffix(".png"))
    print(f"results: {args.out}, {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
