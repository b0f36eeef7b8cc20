"""Adapting a deployed policy's readout in the loop (`lavaloop adapt`): two use cases.

    python -m benchmarks.adapt [--out results] [--runs runs/bench_adapt]

Drift: the bundled CartPole DQN, converted as `make demo` does (T = 32), deployed on CartPole
with a pole twice as long (`length` 0.5 -> 1.0). Return before (converted network on the
changed task), during (the adaptation curve, epsilon 0.1) and after (the adapted artifact,
greedy, on 20 held-out seeds), for every rule; against a DQN retrained in PyTorch on the
changed task (trainers/dqn.py --env-param length=1.0, committed) and converted.

Drift severity (part "drift_severity"): the converted network's return for pole lengths
0.55-1.0, then `td` at the three mildest lengths where it falls below 200 (the issue's
alternative to x2: a variant where the bundled DQN falls below 200).

Calibration: chip instances that lose decisions. Every hidden synapse of instance k has its
gain scaled by 1 + N(0, sigma) (seed k, frozen), rounded to the profile's 8-bit mantissa: the
mismatch model of the mixed-signal profiles applied to the fixed-point weights, so Lava and
the emulator still agree bit for bit. `distill` trains each instance's readout to the
source's Q-values; agreement with the source on 10 held-out episodes before and after 1, 2
and 5 adaptation episodes, over 10 instances.

The same for the sigma-delta coding of the network (graded features; part
"calibration_sigma_delta").

Drift on Pong (part "drift_pong"): the Nature DQN, trained without sticky actions, sigma-delta
coded, played with sticky actions 0.25; 10 episodes of `td` (ridge 1: kept near the
converted readout); 4 held-out games each before and after (epsilon 0.05).

Speed (part "speed"): one adaptation run of 20 episodes on each backend, timed, and checked
to agree in every number of its curve.

Writes results/adapt.json (per use case `before`, `after`, `episodes`, `backend`; resumable:
finished parts are kept) and results/adapt.png. Everything runs on the bit-exact emulator
(tests/test_adapt.py checks a whole adaptation run against Lava).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import lavaloop  # noqa: E402
from lavaloop.atomic import write_json  # noqa: E402
from lavaloop.deploy.results import versions  # noqa: E402
from lavaloop.fixedpoint import int_max  # noqa: E402

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
LONG_POLE = {"length": 1.0}
EVAL = {"episodes": 20, "seed": 1000, "epsilon": 0.0, "backend": "emulator", "progress": False}
DRIFT_EPISODES = 200
DRIFT_RULES = {                       # name: AdaptConfig fields
    "td (lstsq)": {"rule": "td", "ridge": 1e-3, "headroom_bits": 2},
    "td (adam)": {"rule": "td", "solver": "adam", "lr": 3e-4, "target_every": 500, "headroom_bits": 2},
    "reinforce": {"rule": "reinforce", "lr": 1e-4, "headroom_bits": 2},
}
MISMATCH_SIGMA, INSTANCES, CALIB_EPISODES = 0.2, 10, (1, 2, 5)
CALIB_EVAL = {"episodes": 10, "seed": 2000, "epsilon": 0.0, "backend": "emulator", "progress": False}


def first_reaching(returns: list[float], level: float, window: int = 10) -> int | None:
    """Episodes played when the mean of the last `window` returns first reaches `level`."""
    for k in range(window, len(returns) + 1):
        if np.mean(returns[k - window:k]) >= level:
            return k
    return None


def drift(runs: Path) -> dict:
    art = lavaloop.convert(CHECKPOINTS / "cartpole_dqn.pt", "CartPole-v1")
    unchanged = lavaloop.run(art, **EVAL).mean_return
    before = lavaloop.run(art, env_params=LONG_POLE, **EVAL).mean_return
    target = 0.9 * unchanged
    rules = {}
    for name, config in DRIFT_RULES.items():
        t0 = time.time()
        slug = re.sub(r"\W+", "_", name).strip("_")
        rec, adapted = lavaloop.adapt(art, episodes=DRIFT_EPISODES, env_params=LONG_POLE, progress=False,
                                      out=runs / f"drift_{slug}", **config)
        after = lavaloop.run(adapted, **EVAL)
        returns = [c["return"] for c in rec["curve"]]
        rules[name] = {"config": rec["config"], "after": after.mean_return, "after_sd": float(np.std(after.returns)),
                       "episodes": DRIFT_EPISODES, "curve": returns,
                       "episodes_to_target": first_reaching(returns, target),
                       "best_10_episode_mean": float(max(np.convolve(returns, np.ones(10) / 10, "valid"))),
                       "readout": rec["readout"], "wall_s": round(time.time() - t0, 1)}
    retrained = CHECKPOINTS / "cartpole_long_pole_dqn.pt"
    re_art = lavaloop.convert(retrained, "CartPole-v1", env_params=LONG_POLE)
    re_run = lavaloop.run(re_art, **EVAL)
    evals = np.genfromtxt(str(retrained) + ".eval.csv", delimiter=",", names=True)
    reached = [int(s) for s, r in zip(evals["step"], evals["mean_return"]) if r >= target]
    best = max(rules, key=lambda n: rules[n]["after"])
    return {"task": "CartPole-v1, pole length 0.5 -> 1.0", "backend": "emulator",
            "unchanged": unchanged, "before": before, "after": rules[best]["after"], "best_rule": best,
            "episodes": rules[best]["episodes"], "target": target, "rules": rules,
            "retrained": {"checkpoint": retrained.name, "converted_return": re_run.mean_return,
                          "source_return": re_run.source_mean_return, "agreement": re_run.agreement,
                          "training_env_steps": int(evals["step"][-1]),
                          "env_steps_to_target": reached[0] if reached else None},
            "eval": {k: v for k, v in EVAL.items() if k != "progress"}}


SEVERITY_LENGTHS = (0.55, 0.6, 0.625, 0.65, 0.675, 0.7, 0.75, 1.0)
SEVERITY_ADAPTED = 3          # adapt at the mildest lengths where the converted network falls below 200
SEVERITY_STAGES = (25, 50, 100, 150, DRIFT_EPISODES)   # greedy held-out evaluations of the readout so far


def drift_severity(runs: Path) -> dict:
    """How much drift readout adaptation recovers: the converted network's return on CartPole
    with a longer pole, for every length in SEVERITY_LENGTHS; then 200 episodes of `td`
    (lstsq) at the first SEVERITY_ADAPTED lengths where it falls below 200 (the issue's
    milder alternative to x2), and of `td` (adam) at the first of them; each readout
    evaluated greedily at every SEVERITY_STAGES count of episodes (TD's curve is not
    monotone, so where a user stops matters), and the readout `keep="best"` picks."""
    art = lavaloop.convert(CHECKPOINTS / "cartpole_dqn.pt", "CartPole-v1")
    unchanged = lavaloop.run(art, **EVAL).mean_return
    target = 0.9 * unchanged
    before = {length: lavaloop.run(art, env_params={"length": length}, **EVAL).mean_return
              for length in SEVERITY_LENGTHS}
    broken = [length for length in SEVERITY_LENGTHS if before[length] < 200][:SEVERITY_ADAPTED]
    runs_ = [(length, "td (lstsq)") for length in broken] + [(broken[0], "td (adam)")]
    adapted = []
    for length, name in runs_:
        params = {"length": length}
        slug = re.sub(r"\W+", "_", name).strip("_")
        after_by_episodes = {}
        for n in SEVERITY_STAGES:        # the same run directory: each call continues the last
            rec, new = lavaloop.adapt(art, episodes=n, env_params=params, progress=False,
                                      out=runs / f"severity_{length}_{slug}", **DRIFT_RULES[name])
            after_by_episodes[n] = lavaloop.run(new, env_params=params, **EVAL)
        after = after_by_episodes[DRIFT_EPISODES]
        kept_rec, kept = lavaloop.adapt(art, episodes=DRIFT_EPISODES, env_params=params, progress=False, keep="best",
                                        out=runs / f"severity_{length}_{slug}_best", **DRIFT_RULES[name])
        returns = [c["return"] for c in rec["curve"]]
        adapted.append({"length": length, "rule": name, "before": before[length], "after": after.mean_return,
                        "after_sd": float(np.std(after.returns)), "curve": returns,
                        "after_by_episodes": {n: r.mean_return for n, r in after_by_episodes.items()},
                        "episodes_to_target": first_reaching(returns, target),
                        "keep_best": {**kept_rec["kept"], "after": lavaloop.run(kept, env_params=params,
                                                                                 **EVAL).mean_return,
                                      "same_curve": [c["return"] for c in kept_rec["curve"]] == returns}})
    head = max((r for r in adapted if r["length"] == broken[0]), key=lambda r: r["after"])
    return {"task": "CartPole-v1, pole length 0.5 -> L", "backend": "emulator", "unchanged": unchanged,
            "target": target, "before_by_length": before, "length": head["length"], "best_rule": head["rule"],
            "before": head["before"], "after": head["after"], "after_keep_best": head["keep_best"]["after"],
            "episodes": DRIFT_EPISODES,
            "episodes_to_target": head["episodes_to_target"], "adapted": adapted,
            "eval": {k: v for k, v in EVAL.items() if k != "progress"}}


PONG_EVAL = {"episodes": 4, "seed": 1000, "backend": "emulator", "progress": False}   # epsilon 0.05, the paper's
PONG_EPISODES = 10
PONG_RULE = {"rule": "td", "ridge": 1.0, "headroom_bits": 1, "epsilon": 0.05}


def drift_pong(runs: Path) -> dict:
    """The Nature DQN (trained without sticky actions), sigma-delta coded, on Pong with sticky
    actions 0.25: its return with and without them, and after `td` adaptation with them."""
    # td learns Q-values: the Q readout, not the centred one the conversion would keep for Pong
    art = lavaloop.convert(CHECKPOINTS / "pong_dqn.pt", "ALE/Pong-v5", coding="sigma-delta", centre_readout=False)
    unchanged = lavaloop.run(art, **PONG_EVAL)
    before = lavaloop.run(art, sticky_actions=0.25, **PONG_EVAL)
    t0 = time.time()
    rec, adapted = lavaloop.adapt(art, episodes=PONG_EPISODES, sticky_actions=0.25, progress=False,
                                  out=runs / "drift_pong", **PONG_RULE)
    after = lavaloop.run(adapted, **PONG_EVAL)
    return {"task": "ALE/Pong-v5, sticky actions 0 -> 0.25", "coding": "sigma-delta", "backend": "emulator",
            "unchanged": unchanged.mean_return, "before": before.mean_return, "after": after.mean_return,
            "source_unchanged": unchanged.source_mean_return, "source_before": before.source_mean_return,
            "returns": {"unchanged": unchanged.returns, "before": before.returns, "after": after.returns},
            "agreement": {"unchanged": unchanged.agreement, "before": before.agreement, "after": after.agreement},
            "episodes": PONG_EPISODES, "config": rec["config"], "curve": [c["return"] for c in rec["curve"]],
            "readout": rec["readout"], "wall_s": round(time.time() - t0, 1),
            "eval": {k: v for k, v in PONG_EVAL.items() if k != "progress"}}


def speed(runs: Path) -> dict:
    """The same adaptation run (20 episodes of `td` on the long pole, T = 32) on both backends:
    wall time per decision, and whether the two runs agree in every number of their curves."""
    art = lavaloop.convert(CHECKPOINTS / "cartpole_dqn.pt", "CartPole-v1")
    out = {}
    for backend in ("emulator", "lava"):
        rec, _ = lavaloop.adapt(art, episodes=20, backend=backend, env_params=LONG_POLE, progress=False,
                                out=runs / f"speed_{backend}", **DRIFT_RULES["td (adam)"])
        decisions = sum(c["length"] for c in rec["curve"])
        out[backend] = {"wall_s": round(rec["wall_s"], 1), "decisions": decisions,
                        "decisions_per_s": round(decisions / rec["wall_s"], 1), "curve": rec["curve"]}
    same = out["emulator"].pop("curve") == out["lava"].pop("curve")
    return {"backend": "both", "curves_identical": same, **out, "before": None, "after": None,
            "episodes": 20, "config": DRIFT_RULES["td (adam)"]}


def mismatched(art, sigma: float, seed: int):
    """Chip instance `seed`: every hidden layer's weight mantissas times 1 + N(0, sigma), rounded
    and clipped to the profile's mantissa (the readout is left for `adapt` to calibrate)."""
    rng = np.random.default_rng(seed)
    m_max = int_max(art.profile.weight_bits)
    layers = []
    for q in art.layers[:-1]:
        gains = 1 + sigma * rng.standard_normal(q.weight.shape)
        weight = np.clip(np.rint(q.weight * gains), -m_max, m_max).astype(q.weight.dtype)
        layers.append(dataclasses.replace(q, weight=weight))
    return dataclasses.replace(art, layers=[*layers, art.layers[-1]])


def calibration(runs: Path, coding: str = "rate") -> dict:
    art = lavaloop.convert(CHECKPOINTS / "cartpole_dqn.pt", "CartPole-v1", coding=coding)
    nominal = lavaloop.run(art, **CALIB_EVAL).agreement
    instances = []
    for k in range(INSTANCES):
        inst = mismatched(art, MISMATCH_SIGMA, k)
        before = lavaloop.run(inst, **CALIB_EVAL)
        row = {"instance": k, "before": before.agreement, "before_return": before.mean_return, "after": {},
               "after_return": {}}
        for n in CALIB_EPISODES:          # the same run directory: each call continues the last
            _, adapted = lavaloop.adapt(inst, episodes=n, rule="distill", epsilon=0.0, progress=False,
                                        out=runs / f"calibration_{coding}_{k}")
            after = lavaloop.run(adapted, **CALIB_EVAL)
            row["after"][n], row["after_return"][n] = after.agreement, after.mean_return
        instances.append(row)
    before = [r["before"] for r in instances]
    after = {n: [r["after"][n] for r in instances] for n in CALIB_EPISODES}
    last = CALIB_EPISODES[-1]
    return {"coding": coding, "profile": "loihi2", "mismatch_sigma": MISMATCH_SIGMA, "instances": instances,
            "backend": "emulator",
            "nominal_agreement": nominal, "before": float(np.median(before)), "after": float(np.median(after[last])),
            "after_by_episodes": {n: float(np.median(v)) for n, v in after.items()},
            "median_gain": float(np.median(np.subtract(after[last], before))),
            "band_5_95": {"before": np.percentile(before, [5, 95]).tolist(),
                          "after": np.percentile(after[last], [5, 95]).tolist()},
            "episodes": last, "eval": {k: v for k, v in CALIB_EVAL.items() if k != "progress"}}


PARTS = {"drift": drift, "drift_severity": drift_severity, "drift_pong": drift_pong, "speed": speed,
         "calibration": calibration,
         "calibration_sigma_delta": lambda runs: calibration(runs, "sigma-delta")}


def plot(rec: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pong, severity = rec.get("drift_pong"), rec.get("drift_severity")
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.4))
    a, b = axes[0]
    if severity:
        c = axes[1, 1]
        for r in severity["adapted"]:
            curve = np.convolve(r["curve"], np.ones(10) / 10, "valid")
            c.plot(np.arange(10, len(r["curve"]) + 1), curve,
                   label=f"L = {r['length']}, {r['rule']}: before {r['before']:.0f}, after {r['after']:.0f}")
        c.axhline(severity["target"], color="g", ls="--", lw=0.8, label="0.9 x unchanged")
        c.set(xlabel="adaptation episode", ylabel="return (mean of last 10, epsilon 0.1)",
              title="drift: CartPole, pole length 0.5 -> L")
        c.legend(fontsize=7)
    if pong:
        c = axes[1, 0]
        c.plot(np.arange(1, len(pong["curve"]) + 1), pong["curve"], "o-", label="adaptation games (sticky 0.25)")
        for key, style in (("unchanged", "k:"), ("before", "r:"), ("after", "g--")):
            c.axhline(pong[key], ls=style[1:], color=style[0], label=f"{key}: {pong[key]:+.1f} (4 games)")
        c.set(xlabel="adaptation game", ylabel="return", title="drift: Pong, sticky actions 0 -> 0.25 (sigma-delta)")
        c.legend(fontsize=7)
    d = rec.get("drift")
    if d:
        for name, r in d["rules"].items():
            c = np.convolve(r["curve"], np.ones(10) / 10, "valid")
            a.plot(np.arange(10, len(r["curve"]) + 1), c, label=f"{name}: after {r['after']:.0f}")
        a.axhline(d["unchanged"], color="k", ls=":", label=f"unchanged task {d['unchanged']:.0f}")
        a.axhline(d["target"], color="g", ls="--", lw=0.8, label="0.9 x unchanged")
        a.axhline(d["retrained"]["converted_return"], color="purple", ls="-.",
                  label=f"retrained DQN, converted {d['retrained']['converted_return']:.0f}")
        a.axhline(d["before"], color="r", ls=":", label=f"before {d['before']:.0f}")
        a.set(xlabel="adaptation episode", ylabel="return (mean of last 10, epsilon 0.1)",
              title="drift: CartPole, pole twice as long")
        a.legend(fontsize=7)
    for part, color in (("calibration", "C0"), ("calibration_sigma_delta", "C2")):
        c = rec.get(part)
        if not c:
            continue
        xs = [0, *CALIB_EPISODES]
        for r in c["instances"]:
            b.plot(xs, [r["before"], *[r["after"][str(n)] for n in CALIB_EPISODES]], color=color, alpha=0.3, lw=0.8)
        b.plot(xs, [c["before"], *c["after_by_episodes"].values()], color=color, lw=2.5,
               label=f"{c.get('coding', 'rate')}: median")
        b.axhline(c["nominal_agreement"], color=color, ls=":", label=f"{c.get('coding', 'rate')}: without mismatch")
        b.set(xlabel="distill episodes", ylabel="agreement with the source (10 held-out episodes)",
              title=f"calibration: {len(c['instances'])} instances each, mismatch sigma {c['mismatch_sigma']}")
        b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results", help="folder of adapt.json and adapt.png")
    p.add_argument("--runs", default="runs/bench_adapt", help="run directories (resumed)")
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    args = p.parse_args()
    out, runs = Path(args.out), Path(args.runs)
    path = out / "adapt.json"
    rec = json.loads(path.read_text()) if path.exists() else {}
    for part in args.parts:
        if part not in rec:
            rec[part] = PARTS[part](runs)
            rec["versions"] = versions()
            write_json(path, rec)
            if rec[part]["before"] is not None:
                print(f"{part}: before {rec[part]['before']:.3f}, after {rec[part]['after']:.3f}")
    plot(json.loads(path.read_text()), out / "adapt.png")
    print(f"wrote {path} and {out / 'adapt.png'}")


if __name__ == "__main__":
    main()
