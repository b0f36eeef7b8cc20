"""Does the deployed policy decide as its source? Every coding lavaloop offers, side by side,
with SpikingJelly's ann2snn as the peer on the same networks, seeds and T.

    python -m benchmarks.fidelity [--networks cartpole acrobot sb3_cartpole pong] [--out results]

Writes results/fidelity.json (one record per network x coding x T; resumable: cells already
in the file are kept, so delete a cell whose settings changed to measure it again) and
results/fidelity.png. Per cell: conversion rate (agreement with the source's greedy action
on the visited observations), returns and normalized score
against the source on the same seeds, Lava steps per decision, spikes (rate) or graded
messages (sigma-delta) and synaptic operations per decision, energy per decision, and the
conversion's wall time. All runs on the bit-exact emulator, greedy (epsilon 0) for classic
control, epsilon 0.05 for Pong as in the paper.

The peer: SpikingJelly 0.0.0.0.14 `ann2snn.Converter(mode="99.9%")` on the float source,
calibrated on the same 5,000 observations, its IF neurons reset between decisions and the
observation held for T steps, the output averaged over the T steps (its own readout); float
weights, so this is its best case, not a chip. Played on the same seeds.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import lavaloop  # noqa: E402
from lavaloop.atomic import save_figure, write_json  # noqa: E402
from lavaloop.deploy.results import versions  # noqa: E402

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
NETWORKS = {
    "cartpole": {"checkpoint": "cartpole_dqn.pt", "env": "CartPole-v1", "episodes": 20},
    "acrobot": {"checkpoint": "acrobot_dqn.pt", "env": "Acrobot-v1", "episodes": 20},
    "sb3_cartpole": {"checkpoint": "cartpole_sb3.zip", "env": "CartPole-v1", "episodes": 20},
    "pong": {"checkpoint": "pong_dqn.pt", "env": "ALE/Pong-v5", "episodes": 10},
}
RATE_T = (8, 16, 32, 64, 128)
SPLIT_BITS = 4   # "sigma-delta+split(+distill)": two 8-bit synapses per connection, up to 12-bit weights per layer
# "sigma-delta+split+distill": a longer distillation with more DAgger data (docs/conversion.md: on the SB3
# network 3,000 steps and 2 x 2,000 DAgger steps give 0.980, this 0.992)
LONG_DISTILL = {"distill_steps": 24_000, "distill_dagger_rounds": 8, "distill_dagger_steps": 5_000}
# "rate+distill(+long)" on the MLPs: one lambda per hidden neuron, the start distillation fits best
# (docs/conversion.md: at T = 32 0.909 / 0.951 / 0.945 with one lambda per layer)
RATE_DISTILL_NORMALIZATION = "neuron"
# "rate+ditherK(+distill)": K phase-dithered copies of every hidden neuron (--dither K): T = 32 steps
# resolve rates as K x 32 would (docs/conversion.md, "Phase-dithered copies"); K = 4 distills through 16x the
# second layer's work (14-24 min per objective and network on a shared core; the cell tries two objectives)
DITHER = (2, 4)


def cells(network: str) -> list[tuple[str, int | None]]:
    """(coding, T) of every cell measured for a network."""
    if network == "pong":   # rate coding on Pong: results/pong_sweep.json (T up to 500, 7.6 core-hours)
        return [("sigma-delta", None), ("sigma-delta+distill", None), ("sigma-delta+split", None), ("rate", 256),
                ("rate+distill", 64)]
    return ([("rate", t) for t in RATE_T] + [("rate+distill", t) for t in (8, 32)] + [("rate+distill+long", 32)]
            + [(f"rate+dither{k}", 32) for k in DITHER] + [(f"rate+dither{k}+distill", 32) for k in DITHER]
            # two copies and the long budget: CartPole only, the network that needs both (50 min of distillation)
            + ([("rate+dither2+distill+long", 32)] if network == "cartpole" else [])
            + [("sigma-delta", None), ("sigma-delta+distill", None), ("sigma-delta+split", None),
               ("sigma-delta+split+distill", None)]
            + [("spikingjelly", t) for t in RATE_T])


def measure(network: str, coding: str, timesteps: int | None) -> dict:
    """One cell: convert, run on the emulator, record."""
    spec = NETWORKS[network]
    ckpt, env = CHECKPOINTS / spec["checkpoint"], spec["env"]
    if coding == "spikingjelly":
        return {"network": network, "coding": coding, "timesteps": timesteps,
                **peer(ckpt, env, timesteps, spec["episodes"])}
    options, episodes = cell_options(network, coding, timesteps)
    t0 = time.time()
    art = lavaloop.convert(ckpt, env, **options)
    return evaluate(network, coding, timesteps, art, time.time() - t0, options, episodes)


def cell_options(network: str, coding: str, timesteps: int | None) -> tuple[dict, int]:
    """(`lavaloop.convert` options, episodes) of a converted cell."""
    episodes = NETWORKS[network]["episodes"]
    options = {"coding": "sigma-delta"} if coding.startswith("sigma-delta") else {"timesteps": timesteps}
    if "+split" in coding:
        options["weight_split_bits"] = SPLIT_BITS
    if "+dither" in coding:
        options["dither"] = int(coding.split("+dither")[1].split("+")[0])
    if coding == "sigma-delta+split+distill" or coding.endswith("+long"):
        options.update(LONG_DISTILL)
    if coding.startswith("rate") and coding.endswith("+long"):   # the objective the long budget gains on
        options["distill_objective"] = "q"
    if "+distill" in coding:
        options["distill"] = True
        if coding.startswith("rate"):
            options["distill_model"] = "spikes" if timesteps <= 32 else "staircase"
            # Pong: channel-wise, 0.918 at T = 64 without distillation (results/pong_sweep_channel.json)
            options["normalization"] = "channel" if network == "pong" else RATE_DISTILL_NORMALIZATION
    if network == "pong" and coding == "rate":
        options.update(percentile=99.99, max_episode_steps=300)
        episodes = 2
    return options, episodes


def evaluate(network: str, coding: str, timesteps: int | None, art, conversion_s: float, options: dict,
             episodes: int) -> dict:
    """A cell's record: the converted artifact `art` (made with conversion `options` in `conversion_s`
    seconds) run for `episodes` on the emulator against its source."""
    run_kw = {"epsilon": 0.0} if network != "pong" else {}
    res = lavaloop.run(art, episodes=episodes, backend="emulator", progress=False, **run_kw)
    e = res.energy["energy_per_decision_nj"]
    return {"network": network, "coding": coding, "timesteps": timesteps,
            "conversion_rate": res.agreement, "normalized_score": res.normalized_score,
            "mean_return": res.mean_return, "source_mean_return": res.source_mean_return,
            "random_mean_return": res.random_mean_return,
            "steps_per_decision": res.backend_steps / max(res.decisions, 1),
            "spikes_per_decision": res.spikes_per_decision, "synops_per_decision": res.synops_per_decision,
            "energy_per_decision_nj": {"cmos45": e["cmos45"], "loihi": e["loihi"]},
            "conversion_s": round(conversion_s, 2), "episodes": episodes, "decisions": res.decisions,
            "epsilon": res.epsilon,
            **({"distillation": {k: art.manifest["distillation"][k] for k in
                                 ("steps", "dagger_rounds", "observations", "heldout_agreement_before",
                                  "heldout_agreement_after", "own_agreement_before", "own_agreement_after", "kept",
                                  "objective", "objectives") if k in art.manifest["distillation"]}}
               if "+distill" in coding else {}),
            **({"normalization": options["normalization"]} if "normalization" in options else {}),
            **({"split_bits": [q.split_bits for q in art.layers]} if "+split" in coding else {}),
            **({"dither": options["dither"]} if "dither" in options else {}),
            **({"readout_centred": art.manifest["normalization"]["readout_centred"]}
               if coding.startswith("sigma-delta") else {}),
            **({"note": "2 episodes capped at 300 steps: a synaptic-ops reference, not a full-game score"}
               if network == "pong" and coding == "rate" else {})}


def peer(ckpt: Path, env: str, timesteps: int, episodes: int) -> dict:
    """SpikingJelly's ann2snn on the float source, played on the same seeds (see the module docstring)."""
    import torch
    from spikingjelly.activation_based import ann2snn, functional

    from lavaloop.conversion.loaders import load_checkpoint
    from lavaloop.conversion.normalize import collect_observations
    from lavaloop.deploy.episodes import play_batched
    from lavaloop.envs import EnvSpec
    from lavaloop.rollout import epsilon_greedy

    q = load_checkpoint(ckpt).to_torch()
    spec = EnvSpec.for_id(env, None, None)
    obs = torch.as_tensor(collect_observations(q, spec, 5_000, 0, 0.05), dtype=torch.float32)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(obs, torch.zeros(len(obs))), batch_size=256)
    t0 = time.time()
    snn = ann2snn.Converter(mode="99.9%", dataloader=loader)(copy.deepcopy(q.network)).eval()
    conversion_s = time.time() - t0
    agree, total = [0], [0]

    @torch.no_grad()
    def values(active, x, prev_actions, prev_rewards):
        xt = torch.as_tensor(x, dtype=torch.float32).reshape(len(x), *q.in_shape)
        functional.reset_net(snn)
        out = sum(snn(xt) for _ in range(timesteps)) / timesteps
        agree[0] += int((out.argmax(1) == q(xt).argmax(1)).sum())
        total[0] += len(x)
        return out.numpy()

    def decide(rng, row):
        greedy, taken = epsilon_greedy(rng, row, 0.0)
        return greedy, taken, taken

    played = play_batched(spec, list(range(episodes)), values, decide, -1, progress=False)
    return {"conversion_rate": agree[0] / max(total[0], 1), "mean_return": float(np.mean(played.returns)),
            "steps_per_decision": timesteps, "conversion_s": round(conversion_s, 2), "episodes": episodes,
            "decisions": int(played.lengths.sum()), "normalized_score": None, "synops_per_decision": None,
            "note": "float weights; synaptic ops not counted"}


def score_peer(record: dict) -> None:
    """The peer's normalized score, from the source and random returns our runs measured on the same seeds."""
    ours = {c["network"]: c for c in record["cells"] if c["coding"] == "rate"}
    for c in record["cells"]:
        ref = ours.get(c["network"])
        if c["coding"] == "spikingjelly" and ref and ref["source_mean_return"] != ref["random_mean_return"]:
            c["normalized_score"] = ((c["mean_return"] - ref["random_mean_return"])
                                     / (ref["source_mean_return"] - ref["random_mean_return"]))


def plot(record: dict, path: Path) -> None:
    """Conversion rate against Lava steps (top) and synaptic operations (bottom) per decision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = list(dict.fromkeys(c["network"] for c in record["cells"]))
    tab20 = plt.get_cmap("tab20")   # one colour per coding in every panel: its ten dark ones first
    fig, axes = plt.subplots(2, len(nets), figsize=(4.2 * len(nets), 7), squeeze=False)
    style = {"rate": "o-", "rate+distill": "s--", "rate+distill+long": "s", "spikingjelly": "^:", "sigma-delta": "*",
             "sigma-delta+distill": "P", "sigma-delta+split": "X", "sigma-delta+split+distill": "D",
             "rate+dither2": "v", "rate+dither4": "<", "rate+dither2+distill": ">", "rate+dither4+distill": "d",
             "rate+dither2+distill+long": "h"}
    for col, net in enumerate(nets):
        for row, key in enumerate(("steps_per_decision", "synops_per_decision")):
            ax = axes[row][col]
            for i, (coding, fmt) in enumerate(style.items()):
                pts = sorted((c[key], c["conversion_rate"]) for c in record["cells"]
                             if c["network"] == net and c["coding"] == coding and c.get(key))
                if pts:
                    ax.plot(*zip(*pts), fmt, label=coding, color=tab20((2 * i) % 20 + (2 * i) // 20),
                            ms=11 if coding == "sigma-delta" else 6, alpha=0.8)
            ax.axhline(0.99, color="gray", lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.set_title(net)
            ax.set_xlabel("Lava steps per decision" if row == 0 else "synaptic ops per decision")
            ax.set_ylabel("conversion rate (agreement)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    ap.add_argument("--out", default="results")
    args = ap.parse_args()
    path = Path(args.out) / "fidelity.json"
    record = json.loads(path.read_text()) if path.exists() else {"cells": []}
    record["versions"] = versions()
    done = {(c["network"], c["coding"], c["timesteps"]) for c in record["cells"]}
    for net in args.networks:
        for coding, t in cells(net):
            if (net, coding, t) in done:
                continue
            cell = measure(net, coding, t)
            record["cells"].append(cell)
            write_json(path, record)
            print(f"{net:<13} {coding:<20} T={t!s:<5} rate {cell['conversion_rate']:.4f} "
                  f"synops/decision {cell['synops_per_decision'] or 0:,.0f}", flush=True)
    score_peer(record)
    write_json(path, record)
    plot(record, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
