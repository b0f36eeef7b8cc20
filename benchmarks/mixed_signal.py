"""DQNs on mixed-signal chips (issue 19): results/mixed_signal.json + .png from the sweeps.

    lavaloop sweep benchmarks/mixed_signal_cartpole.toml
    lavaloop sweep benchmarks/mixed_signal_acrobot.toml
    python -m benchmarks.mixed_signal [--out results]

Per network, profile, variant and mismatch sigma, one record with the distribution over chip
instances (median and 5-95 % band) of the closed-loop decision agreement with the float
source and of the normalized score, `mismatch_aware` (trained through sampled mismatch),
`readout_per_chip` (run --calibrate-readout: the host readout fitted to each instance), and
the neurons, cores, chips and synapses the mapping uses. Reference rows (profile "ideal"):
the mapped topology in the rate limit (no leak, no weight levels, no mismatch: what the
fan-in handling alone keeps), measured on held-out source observations. And what the Pong
Nature DQN would take (`conversion.mixed_signal.plan`): it is not mapped. The records of
benchmarks.grsn_mixed_signal and benchmarks.mixed_signal_replicas join them where those have run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.mixed_signal_replicas import INSTANCES
from lavaloop.atomic import save_figure, write_json
from lavaloop.conversion.loaders import load_checkpoint
from lavaloop.conversion.mixed_signal import chip_topology, plan
from lavaloop.conversion.normalize import collect_observations, layer_scales, normalize
from lavaloop.deploy.results import versions
from lavaloop.envs import EnvSpec
from lavaloop.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = {"cartpole_dqn": ("CartPole-v1", "mixed_signal_cartpole"),
            "acrobot_dqn": ("Acrobot-v1", "mixed_signal_acrobot")}


def variant(params: dict) -> tuple[str, bool, float | None]:
    """(name, mismatch_aware, training sigma) of a cell's conversion and readout."""
    per_chip = ", readout per chip" if params.get("calibrate_readout") else ""
    if not params.get("distill"):
        return f"{params['fan_in']}, readout fitted{per_chip}", False, None
    sigma = params["distill_mismatch"]
    rounds, steps = params.get("distill_dagger_rounds", 2), params.get("distill_dagger_steps", 2000)
    dagger = "" if (rounds, steps) == (2, 2000) else f", DAgger {rounds} x {steps}"
    return f"{params['fan_in']}, trained at sigma {sigma}{dagger}{per_chip}", sigma > 0, sigma


def readout_fit(params: dict, metrics: dict) -> str:
    """How a sweep cell's readout was fitted: "nominal" (at conversion), or per chip instance with
    the cross-validated ridge ("cv ridge", runs record its choice) or the earlier fixed one."""
    if not params.get("calibrate_readout"):
        return "nominal"
    return "cv ridge" if "details.instance_readout.ridge" in metrics else "ridge 1e-3"


def records(sweep: dict, network: str) -> list[dict]:
    """One record per (profile, variant, sigma) from a sweep's summary."""
    out = []
    for group in sweep["summary"]:
        p, m = group["params"], group["metrics"]
        name, aware, train_sigma = variant(p)
        out.append({
            "network": network, "profile": p["profile"], "variant": name, "fan_in": p["fan_in"],
            "mismatch_aware": aware, "training_sigma": train_sigma,
            "dagger": [p.get("distill_dagger_rounds", 2), p.get("distill_dagger_steps", 2000)] if p.get("distill")
            else None,
            "readout_per_chip": bool(p.get("calibrate_readout")), "readout_fit": readout_fit(p, m),
            "sigma": p["mismatch_sigma"],
            "instances": m["agreement"]["n"],
            "agreement_median": m["agreement"]["median"], "agreement_p05": m["agreement"]["p05"],
            "agreement_p95": m["agreement"]["p95"],
            "score_median": m["normalized_score"]["median"], "score_p05": m["normalized_score"]["p05"],
            "return_median": m["mean_return"]["median"],
            "spikes_per_decision": m["spikes_per_decision"]["median"],
            "synops_per_decision": m["synops_per_decision"]["median"],
            "neurons": m["details.neurons"]["median"], "cores": m["details.cores"]["median"],
            "chips": m["details.chips"]["median"], "synapses": m["details.synapses"]["median"],
            "nominal_heldout_agreement": (m["mismatch_training.heldout_after"] if p.get("distill")
                                          else m["readout_calibration.heldout_after"]).get("median"),
        })
    return sorted(out, key=lambda r: (r["profile"], r["variant"], r["sigma"]))


def ideal_rows(network: str, env: str) -> list[dict]:
    """The mapped topologies in the rate limit, on 2,000 held-out source observations."""
    net = load_checkpoint(ROOT / "checkpoints" / f"{network}.pt")
    q = net.to_torch()
    spec = EnvSpec.for_id(env, None, None)
    obs = collect_observations(q, spec, 5000, 0, 0.05)
    heldout = collect_observations(q, spec, 2000, 100_000, 0.05)
    normed = normalize(net.layers, layer_scales(q, obs, 99.9))
    rows = []
    for mode in ("split", "prune"):
        in_range, chip, _, _ = chip_topology(normed, obs, load_profile("dynapse2"), mode)
        x = heldout.reshape(len(heldout), -1)
        a = np.concatenate([np.clip(x / in_range, 0, 1), np.clip(-x / in_range, 0, 1)], 1)
        for layer in chip:
            a = np.clip(a @ layer.weight.T + layer.bias, 0, 1)
        out = a @ normed[-1].weight.T + normed[-1].bias
        rows.append({"network": network, "profile": "ideal", "variant": f"{mode} topology, rate limit",
                     "fan_in": mode, "mismatch_aware": False, "sigma": 0.0,
                     "agreement_median": float((out.argmax(1) == q.q_values(heldout).argmax(1)).mean()),
                     "measured_on": "2000 held-out source observations (open loop)"})
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = sorted({r["network"] for r in rows if r["profile"] != "ideal"})
    fig, axes = plt.subplots(2, len(nets), figsize=(6 * len(nets), 8), squeeze=False)
    for col, net in enumerate(nets):
        mine = [r for r in rows if r["network"] == net and r["profile"] != "ideal"]
        for name in sorted({(r["profile"], r["variant"]) for r in mine}):
            line = sorted((r for r in mine if (r["profile"], r["variant"]) == name), key=lambda r: r["sigma"])
            s = [r["sigma"] for r in line]
            for row, (key, lo) in enumerate((("agreement_median", "agreement_p05"), ("score_median", "score_p05"))):
                ax = axes[row, col]
                ax.plot(s, [r[key] for r in line], marker="o", label=f"{name[0]}: {name[1]}")
                if row == 0:
                    ax.fill_between(s, [r["agreement_p05"] for r in line], [r["agreement_p95"] for r in line],
                                    alpha=0.15)
                else:
                    ax.plot(s, [r[lo] for r in line], ls=":", color=ax.lines[-1].get_color())
        axes[0, col].set_title(f"{net}: agreement with the source (median, 5-95 %)")
        axes[1, col].set_title(f"{net}: normalized score (median; dotted: 5th percentile)")
        for ax in axes[:, col]:
            ax.set_xlabel("device mismatch sigma")
            ax.grid(alpha=0.3)
        axes[0, col].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def grsn_records(path: Path) -> list[dict]:
    """The GRSN / LIF-with-TAP hybrid study's records (benchmarks.grsn_mixed_signal) in this
    file's schema; none if it has not been run."""
    if not path.is_file():
        return []
    res = json.loads(path.read_text())
    out = []
    for name, rec in res["policies"].items():
        for r in rec["records"]:
            if r["input"] == "host":
                continue
            gate = ", forget gate frozen" if r["gate"] == "frozen" else ""
            out.append({"network": name.lower().replace(" ", "_").replace("-", "_"), "profile": res["profile"],
                        "variant": f"gates on the host, membranes on the chip, {r['input']} input{gate}",
                        "fan_in": None, "mismatch_aware": r["mismatch_aware"], "training_sigma": None,
                        "readout_per_chip": False, "sigma": r["sigma"], "instances": r["instances"],
                        **{k: r[k] for k in ("agreement_median", "agreement_p05", "agreement_p95", "score_median",
                                             "score_p05", "return_median")},
                        "spikes_per_decision": r["spikes_per_step_median"]})
    return out


def replicas_records(path: Path) -> list[dict]:
    """The copies study's cells (benchmarks.mixed_signal_replicas) in this file's schema; none if
    it has not been run."""
    if not path.is_file():
        return []
    out = []
    for name, net in json.loads(path.read_text())["networks"].items():
        a = net["artifact"]
        for c in net["cells"].values():
            if len(c["per_instance"]) < len(INSTANCES):   # unfinished
                continue
            per_chip = f", readout per chip ({c['readout_fit']})" if c["readout_per_chip"] else ""
            window = "" if c["timesteps"] == a["timesteps"] else f", deployed at T={c['timesteps']}"
            out.append({"network": a["source"].removesuffix(".pt"), "profile": a["profile"],
                        "variant": f"{name}, {c['replicas']} copies{window}{per_chip}",
                        "timesteps": c["timesteps"], "trained_timesteps": a["timesteps"],
                        "fan_in": a["mapping"]["fan_in"]["mode"],
                        "mismatch_aware": c["mismatch_aware"], "training_sigma": a["mismatch_training"].get("sigma"),
                        "training_readout": a["mismatch_training"].get("readout", "shared"),
                        "replicas": c["replicas"], "readout_per_chip": c["readout_per_chip"],
                        "readout_fit": c["readout_fit"], "sigma": c["sigma"],
                        **{k: c[k] for k in ("instances", "agreement_median", "agreement_p05", "agreement_p95",
                                             "score_median", "score_p05", "neurons", "cores", "chips", "synapses")}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results")
    args = ap.parse_args()
    rows = []
    for network, (env, sweep) in NETWORKS.items():
        path = ROOT / "results" / "sweeps" / sweep / "results.json"
        if not path.is_file():
            print(f"{path} missing: run `lavaloop sweep benchmarks/{sweep}.toml` first; skipped")
            continue
        rows += records(json.loads(path.read_text()), network)
        rows += ideal_rows(network, env)
    pong = plan(load_checkpoint(ROOT / "checkpoints" / "pong_dqn.pt").layers, load_profile("dynapse2"))
    out = Path(args.out)
    write_json(out / "mixed_signal.json", {
        "records": rows + grsn_records(out / "grsn_mixed_signal.json") + replicas_records(
            out / "mixed_signal_replicas.json"), "pong_dqn_dynapse2_plan": pong,
        "grsn": "gates on the host, membranes on the chip: benchmarks.grsn_mixed_signal, docs/mixed_signal.md",
        "versions": versions()})
    plot(rows, out / "mixed_signal.png")
    for r in rows:
        if r["profile"] != "ideal":
            print(f"{r['network']:<13} {r['profile']:<9} {r['variant']:<30} sigma {r['sigma']:<5} agreement "
                  f"{r['agreement_median']:.3f} [{r['agreement_p05']:.3f}, {r['agreement_p95']:.3f}] score "
                  f"{r['score_median']:.3f} (p05 {r['score_p05']:.3f})")
    print(f"wrote {out / 'mixed_signal.json'} and {out / 'mixed_signal.png'}")


if __name__ == "__main__":
    main()
