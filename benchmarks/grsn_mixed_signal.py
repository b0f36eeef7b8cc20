"""GRSN and LIF-with-TAP policies with their membranes on DYNAP-SE chips (issue 19, item 3):
results/grsn_mixed_signal.json + .png.

    python -m benchmarks.grsn_mixed_signal [--profile dynapse2] [--instances 20]

The hybrid mapping of `lavaloop.deploy.mixed_signal_grsn`: gates, h, embeddings and head on
the host, the spiking membrane (TAP: carried across env steps) on the chip, one env step =
14 chip steps. For the CartPole-V GRSN and LIF-with-TAP policies (seed 0; float, as trained)
and the GRSN policy fine-tuned with the chip's membrane (`grsn_chip`, nominal and through
sampled mismatch 0.1; agreement then with that fine-tuned float policy),
closed-loop greedy episodes (test seeds 0-2) on chip instances 0..N-1 per mismatch sigma:
agreement with the float policy on the chip's own trajectories and the normalized score
(return - random) / (float - random), median and 5-95 % band over instances. Rows: the
membrane fed an ideal current (what the chip neuron's reset alone costs) and by spike trains
through synapses (what a board does); and, at sigma 0, GRSN with its forget gate frozen to
its per-neuron mean (what a GRSN without the multiplication the chip lacks would keep), on the
host (float) and on the chip.
"""
from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lavaloop import rollout
from lavaloop.atomic import save_figure, write_json
from lavaloop.conversion.models.grsn import CHIP_WINDOW
from lavaloop.deploy.mixed_signal_grsn import HybridPolicy
from lavaloop.deploy.results import versions
from lavaloop.envs import make_env
from lavaloop.trainers.recurrent import episode_returns

POLICIES = {"CartPole-V grsn s0": "checkpoints/grsn/cartpole_v_grsn_s0.pt",
            "CartPole-V lif s0": "checkpoints/grsn/cartpole_v_lif_s0.pt",
            # GRSN s0 fine-tuned with the chip's membrane (grsn_chip), nominal and through mismatch 0.1
            "CartPole-V grsn_chip s0": "checkpoints/grsn/cartpole_v_grsn_chip_s0.pt",
            "CartPole-V grsn_chip mismatch-aware s0": "checkpoints/grsn/cartpole_v_grsn_chip_mm01_s0.pt"}
SIGMAS = (0.0, 0.05, 0.1, 0.2)
TEST_SEEDS = [0, 1, 2]


def band(values: list[float]) -> dict:
    return {"median": float(np.median(values)), "p05": float(np.percentile(values, 5)),
            "p95": float(np.percentile(values, 95))}


def cell(hp: HybridPolicy, float_return: float, random_return: float, input_mode: str, sigma: float,
         instances: int, frozen_gate: bool = False) -> dict:
    """One record: the policy on `instances` chip instances (one, the nominal chip, at sigma 0)."""
    chips = [None] if sigma == 0 else list(range(instances))
    runs = [hp.evaluate(TEST_SEEDS, input_mode, seed, sigma, frozen_gate) for seed in chips]
    agreement, returns = band([r["agreement"] for r in runs]), band([r["mean_return"] for r in runs])
    scores = band([(r["mean_return"] - random_return) / (float_return - random_return) for r in runs])
    return {"input": input_mode, "gate": "frozen" if frozen_gate else "dynamic", "sigma": sigma,
            "instances": len(chips), "agreement_median": agreement["median"], "agreement_p05": agreement["p05"],
            "agreement_p95": agreement["p95"], "score_median": scores["median"], "score_p05": scores["p05"],
            "return_median": returns["median"], "mismatch_aware": hp.net.cfg.mismatch_sigma > 0,
            "spikes_per_step_median": (float(np.median([r["spikes_per_step"] for r in runs]))
                                       if input_mode != "host" else None)}


def random_mean_return(spec) -> float:
    env = make_env(spec)
    space = env.action_space
    env.close()
    return float(np.mean(rollout.evaluate(functools.partial(make_env, spec), TEST_SEEDS, rollout.random_policy(space))))


def study(profile: str, instances: int) -> dict:
    out = {"profile": profile, "steps_per_env_step": CHIP_WINDOW, "test_seeds": TEST_SEEDS,
           "policies": {}, "versions": versions()}
    todo = [(name, mode, sigma) for name in POLICIES for mode in ("current", "spikes") for sigma in SIGMAS]
    bar = tqdm(total=len(todo), desc="grsn on mixed-signal")
    for name, path in POLICIES.items():
        if not Path(path).is_file():
            print(f"{path} missing: skipped")
            continue
        hp = HybridPolicy(path, name.split()[0], profile)
        float_return = float(np.mean(episode_returns(hp.net, hp.spec, TEST_SEEDS)))
        random_return = random_mean_return(hp.spec)
        rec = {"checkpoint": path, "cell": hp.net.cfg.cell, "i_max": hp.i_max, "float_return": float_return,
               "random_return": random_return, "records": []}
        for n, mode, sigma in todo:
            if n == name:
                rec["records"].append(cell(hp, float_return, random_return, mode, sigma, instances))
                bar.update()
        if hp.net.cfg.cell == "grsn":
            for mode in ("host", "current"):
                rec["records"].append(cell(hp, float_return, random_return, mode, 0.0, instances, frozen_gate=True))
        out["policies"][name] = rec
    bar.close()
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, rec) in enumerate(res["policies"].items()):
        for mode in ("current", "spikes"):
            rows = [r for r in rec["records"] if r["input"] == mode and r["gate"] == "dynamic"]
            s = [r["sigma"] for r in rows]
            for ax, key in zip(axes, ("agreement", "score")):
                color, style = f"C{i}", "-" if mode == "spikes" else "--"
                ax.plot(s, [r[f"{key}_median"] for r in rows], style, color=color, marker="o",
                        label=f"{name}, {mode}")
                if key == "agreement":
                    ax.fill_between(s, [r["agreement_p05"] for r in rows], [r["agreement_p95"] for r in rows],
                                    color=color, alpha=0.1)
    for ax, label in zip(axes, ("agreement with the float policy", "normalized score")):
        ax.set_xlabel("mismatch sigma")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"GRSN / LIF-with-TAP membranes on {res['profile']} (host gates), median and 5-95 % band")
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="dynapse2")
    p.add_argument("--instances", type=int, default=20, help="chip instances per sigma > 0")
    p.add_argument("--out", type=Path, default=Path("results"))
    args = p.parse_args()
    res = study(args.profile, args.instances)
    write_json(args.out / "grsn_mixed_signal.json", res)
    plot(res, args.out / "grsn_mixed_signal.png")
    for name, rec in res["policies"].items():
        for r in rec["records"]:
            print(f"{name:20s} {r['input']:8s} {r['gate']:8s} sigma {r['sigma']:.2f}: agreement "
                  f"{r['agreement_median']:.3f} [{r['agreement_p05']:.3f}, {r['agreement_p95']:.3f}], "
                  f"score {r['score_median']:.2f}")


if __name__ == "__main__":
    main()
