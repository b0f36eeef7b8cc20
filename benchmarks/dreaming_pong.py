"""Neuromorphic dreaming on Pong: our protocol, the authors' (reference) protocol and its ablations,
next to the released curves (Blakowski et al.; ../shared/reference/dreaming_paper_curves.csv).

    python -m benchmarks.dreaming_pong --run reference_dream reference_no_dream   # resumable
    python -m benchmarks.dreaming_pong                                           # collect

`--run` plays conditions (10 runs x 2000 games on the emulator, dynapse1, mismatch sigma 0.2,
chip instance 0, seeds 0-9) into runs/dreaming_pong/<condition>; each resumes from its run
directory. Collecting reads every finished condition and writes results/dreaming_pong.json and
.png: per condition final_mean, final_sd (over runs, of the mean return over the last 50
games), games_to_minus_half (first game at which the run-mean reaches -0.5; null if never),
the curve; the released curves summarized the same way; two-sided Mann-Whitney U p-values
between the compared conditions (the paper's test, on the per-run final values); the mismatch
sweep of our protocol with dreaming (sigma 0, 0.1, 0.2, 0.3). Conditions whose run directory
is missing keep their entry from the previous results file.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from lavaloop.atomic import write_json  # noqa: E402
from lavaloop.deploy.dreaming.protocol import CURVE_EVERY  # noqa: E402

RUNS = Path("runs/dreaming_pong")
OUT = Path("results/dreaming_pong")
PAPER = Path(__file__).resolve().parents[1].parent / "shared/reference/dreaming_paper_curves.csv"
REF = {"protocol": "reference"}
SWEEP_SIGMAS = (0.0, 0.1, 0.2, 0.3)
COLLAPSE_GAMES = 500
# condition -> lavaloop.dream options (10 runs x 2000 games by default)
CONDITIONS = {
    "dream": {},
    "no_dream": {"dream": False},
    "reference_dream": REF,
    "reference_no_dream": {**REF, "dream": False},
    # the ablations of the reference protocol: one of its choices changed at a time
    "reference_no_dream_two_uploads": {**REF, "dream": False, "two_upload_counts": True},
    "reference_dream_one_upload": {**REF, "two_upload_counts": False},
    "reference_dream_one_adam_step": {**REF, "second_adam_step": False},
    "reference_dream_action_connected": {**REF, "topology": {"action_input": True}},
    "reference_dream_window_10": {**REF, "window": 10},
    # config.ini sets the policy's lr to 0.004 with the comment "0.002 (dreaming)": two Adam steps per game at
    # half the rate move the policy as far per game as the no-dreaming condition's one step
    "reference_dream_lr_0.002": {**REF, "rules": {"lr_policy": 0.002}},
    # its control: is the gain the dreams' or the smaller steps'?
    "reference_no_dream_lr_0.002": {**REF, "dream": False, "rules": {"lr_policy": 0.002}},
    # ten more runs of each (seeds 10-19), pooled with the first ten in POOLED
    "reference_dream_lr_0.002_seeds10": {**REF, "seed": 10, "rules": {"lr_policy": 0.002}},
    "reference_no_dream_lr_0.002_seeds10": {**REF, "seed": 10, "dream": False, "rules": {"lr_policy": 0.002}},
    # our protocol fixed: every step an agent window then a world-model window, and both
    # populations driven to a coding level of 0.1 (deploy.dreaming.drive)
    "paired_coding_dream": {"paired_windows": True, "coding_level": 0.1},
    "paired_coding_no_dream": {"paired_windows": True, "coding_level": 0.1, "dream": False},
    # beyond the paper: the world model's readouts per action, so that a dream's predictions depend
    # on the dreamed actions (its no-dreaming control is paired_coding_no_dream: without dreams the
    # world model does not touch the policy)
    "paired_coding_dream_per_action": {"paired_windows": True, "coding_level": 0.1,
                                       "rules": {"model_per_action": True}},
    # our protocol fixed, with an entropy bonus (0.05: a 400-game pilot on 4 runs kept every run scoring; 0.01 did
    # not) against runs that stop scoring (docs/dreaming.md)
    "paired_coding_dream_entropy": {"paired_windows": True, "coding_level": 0.1, "rules": {"entropy": 0.05}},
    "paired_coding_no_dream_entropy": {"paired_windows": True, "coding_level": 0.1, "dream": False,
                                       "rules": {"entropy": 0.05}},
    # our protocol fixed at the policy lr that kept every run of the reference protocol scoring
    "paired_coding_dream_lr_0.002": {"paired_windows": True, "coding_level": 0.1, "rules": {"lr_policy": 0.002}},
    "paired_coding_no_dream_lr_0.002": {"paired_windows": True, "coding_level": 0.1, "dream": False,
                                        "rules": {"lr_policy": 0.002}},
    # ten more runs of each (seeds 10-19), pooled with the first ten in POOLED
    "paired_coding_dream_lr_0.002_seeds10": {"paired_windows": True, "coding_level": 0.1, "seed": 10,
                                             "rules": {"lr_policy": 0.002}},
    "paired_coding_no_dream_lr_0.002_seeds10": {"paired_windows": True, "coding_level": 0.1, "seed": 10,
                                                "dream": False, "rules": {"lr_policy": 0.002}},
    # the same pair on DYNAP-SE2 (4-bit weight codes; the drive is set from the coding level again), mismatch sigma
    # 0.2 as on dynapse1
    "paired_coding_dream_lr_0.002_dynapse2": {"paired_windows": True, "coding_level": 0.1, "profile": "dynapse2",
                                              "mismatch_sigma": 0.2, "rules": {"lr_policy": 0.002}},
    "paired_coding_no_dream_lr_0.002_dynapse2": {"paired_windows": True, "coding_level": 0.1, "profile": "dynapse2",
                                                 "mismatch_sigma": 0.2, "dream": False, "rules": {"lr_policy": 0.002}},
    # beyond the paper: dreamed rewards less their running mean (a baseline; 0.1: the mean of about the last ten
    # dreams), against the steady level of the world model's reward readout, which makes a dream's policy
    # gradient full-sized noise (docs/dreaming.md); its control is paired_coding_no_dream_lr_0.002(_20)
    "paired_coding_dream_lr_0.002_baseline": {"paired_windows": True, "coding_level": 0.1,
                                              "rules": {"lr_policy": 0.002, "dream_baseline": 0.1}},
    "paired_coding_dream_lr_0.002_baseline_seeds10": {"paired_windows": True, "coding_level": 0.1, "seed": 10,
                                                      "rules": {"lr_policy": 0.002, "dream_baseline": 0.1}},
    # beyond the paper: five 10-step dreams per game, each from a state the game visited (model-based RL's short
    # rollouts branched from real states: a world model errs less over 10 steps than 50, and mid-rally states
    # are where rewards are decided), each its own policy update, or all joining the game's one update
    "paired_coding_dream_lr_0.002_visited": {"paired_windows": True, "coding_level": 0.1, "dream_start": "visited",
                                             "dreams": 5, "dream_steps": 10, "rules": {"lr_policy": 0.002}},
    "paired_coding_dream_lr_0.002_visited_one_update": {
        "paired_windows": True, "coding_level": 0.1, "dream_start": "visited", "dreams": 5, "dream_steps": 10,
        "second_adam_step": False, "rules": {"lr_policy": 0.002}},
    # its control: the same dreams and policy updates with the dreamed rewards x0 (what the updates alone do: an
    # Adam step on a zero gradient still moves by its momentum), and ten more runs (seeds 10-19)
    "paired_coding_dream_lr_0.002_visited_no_rewards": {
        "paired_windows": True, "coding_level": 0.1, "dream_start": "visited", "dreams": 5, "dream_steps": 10,
        "dream_rewards": False, "rules": {"lr_policy": 0.002}},
    "paired_coding_dream_lr_0.002_visited_no_rewards_seeds10": {
        "paired_windows": True, "coding_level": 0.1, "seed": 10, "dream_start": "visited", "dreams": 5,
        "dream_steps": 10, "dream_rewards": False, "rules": {"lr_policy": 0.002}},
    # the visited dreams on DYNAP-SE2 (its no-dreaming control: paired_coding_no_dream_lr_0.002_dynapse2)
    "paired_coding_dream_lr_0.002_visited_dynapse2": {
        "paired_windows": True, "coding_level": 0.1, "profile": "dynapse2", "mismatch_sigma": 0.2,
        "dream_start": "visited", "dreams": 5, "dream_steps": 10, "rules": {"lr_policy": 0.002}},
    "paired_coding_dream_lr_0.002_visited_seeds10": {
        "paired_windows": True, "coding_level": 0.1, "seed": 10, "dream_start": "visited", "dreams": 5,
        "dream_steps": 10, "rules": {"lr_policy": 0.002}},
    # the mismatch sweep of our protocol with dreaming (sigma 0.2 is "dream"), chip instance 0
    **{f"dream_sigma_{sigma}": {"mismatch_sigma": sigma} for sigma in SWEEP_SIGMAS if sigma != 0.2},
    # full runs on Lava: run 0 of a condition (the curves must equal the emulator's: LAVA_RUNS)
    "lava_dream": {"backend": "lava", "runs": 1},
    "lava_no_dream": {"backend": "lava", "runs": 1, "dream": False},
    "lava_reference_dream": {**REF, "backend": "lava", "runs": 1},
    # run 0 of reference_dream alone on the emulator, with the Lava run's code: the stored condition was
    # made with numpy's AVX-512 exp, which the dreaming code no longer uses (docs/dreaming.md)
    "reference_dream_run_0": {**REF, "runs": 1},
}
REF_RUN_0 = "reference_dream_run_0"
# conditions made of the runs of several (same settings, other seeds), summarized together
POOLED = {f"{name}_20": (name, f"{name}_seeds10")
          for name in ("reference_dream_lr_0.002", "reference_no_dream_lr_0.002", "paired_coding_dream_lr_0.002",
                       "paired_coding_no_dream_lr_0.002", "paired_coding_dream_lr_0.002_baseline",
                       "paired_coding_dream_lr_0.002_visited", "paired_coding_dream_lr_0.002_visited_no_rewards")}
# lava_<name> is run 0 of condition <name> on Lava, compared with <name>_run_0 where it exists, else <name>
LAVA_RUNS = ("dream", "no_dream", "reference_dream")
PAIRS = [("dream", "no_dream"), ("reference_dream", "reference_no_dream"), ("paper_dream", "paper_no_dream"),
         ("reference_dream", "paper_dream"), ("reference_no_dream", "paper_no_dream")] + [
    (name, "reference_dream") for name in CONDITIONS if name.startswith("reference_dream_") and name != REF_RUN_0] + [
    ("reference_no_dream_two_uploads", "reference_no_dream"), ("reference_dream_one_upload", "reference_no_dream"),
    ("reference_dream_lr_0.002", "reference_no_dream"), ("reference_dream_lr_0.002", "paper_dream"),
    ("reference_dream_lr_0.002", "reference_no_dream_lr_0.002"), ("reference_no_dream_lr_0.002", "reference_no_dream"),
    ("paired_coding_dream", "paired_coding_no_dream"),
    ("paired_coding_dream_per_action", "paired_coding_no_dream"),
    ("paired_coding_dream_per_action", "paired_coding_dream"),
    ("paired_coding_dream_entropy", "paired_coding_no_dream_entropy"),
    ("paired_coding_dream_entropy", "paired_coding_dream"),
    ("paired_coding_no_dream_entropy", "paired_coding_no_dream"),
    ("paired_coding_dream_lr_0.002", "paired_coding_no_dream_lr_0.002"),
    ("paired_coding_dream_lr_0.002", "paired_coding_dream"),
    ("paired_coding_dream_lr_0.002_dynapse2", "paired_coding_no_dream_lr_0.002_dynapse2"),
    ("paired_coding_dream_lr_0.002_dynapse2", "paired_coding_dream_lr_0.002"),
    ("paired_coding_no_dream_lr_0.002_dynapse2", "paired_coding_no_dream_lr_0.002"),
    ("paired_coding_dream_lr_0.002_20", "paired_coding_no_dream_lr_0.002_20"),
    ("paired_coding_dream_lr_0.002_baseline", "paired_coding_no_dream_lr_0.002"),
    ("paired_coding_dream_lr_0.002_baseline", "paired_coding_dream_lr_0.002"),
    ("paired_coding_dream_lr_0.002_baseline_20", "paired_coding_no_dream_lr_0.002_20"),
    ("paired_coding_dream_lr_0.002_baseline_20", "paired_coding_dream_lr_0.002_20"),
    ("paired_coding_dream_lr_0.002_visited", "paired_coding_no_dream_lr_0.002"),
    ("paired_coding_dream_lr_0.002_visited", "paired_coding_dream_lr_0.002"),
    ("paired_coding_dream_lr_0.002_visited_one_update", "paired_coding_no_dream_lr_0.002"),
    ("paired_coding_dream_lr_0.002_visited_one_update", "paired_coding_dream_lr_0.002_visited"),
    ("paired_coding_dream_lr_0.002_visited_no_rewards", "paired_coding_dream_lr_0.002_visited"),
    ("paired_coding_dream_lr_0.002_visited_no_rewards", "paired_coding_no_dream_lr_0.002"),
    ("paired_coding_dream_lr_0.002_visited_20", "paired_coding_no_dream_lr_0.002_20"),
    ("paired_coding_dream_lr_0.002_visited_20", "paired_coding_dream_lr_0.002_20"),
    ("paired_coding_dream_lr_0.002_visited_dynapse2", "paired_coding_no_dream_lr_0.002_dynapse2"),
    ("paired_coding_dream_lr_0.002_visited_no_rewards_20", "paired_coding_no_dream_lr_0.002_20"),
    ("paired_coding_dream_lr_0.002_visited_no_rewards_20", "paired_coding_dream_lr_0.002_visited_20"),
    ("reference_dream_lr_0.002_20", "reference_no_dream_lr_0.002_20"), ("reference_dream_lr_0.002_20", "paper_dream"),
    ("reference_no_dream_lr_0.002_20", "paper_no_dream")]


def collapsed(per_run: np.ndarray, games: np.ndarray) -> np.ndarray:
    """Runs that stopped scoring: every curve point over the last COLLAPSE_GAMES games at <= -1.9
    (a game has about two points, so such a run loses nearly all of them; docs/dreaming.md)."""
    return (per_run[:, games > games[-1] - COLLAPSE_GAMES] <= -1.9).all(1)


def summarize(per_run: np.ndarray, games: np.ndarray) -> dict:
    """Curve summary of (runs, points) mean returns over the last 50 games at `games`."""
    mean = per_run.mean(0)
    hit = np.nonzero(mean >= -0.5)[0]
    stopped = collapsed(per_run, games)
    return {"final_mean": float(per_run[:, -1].mean()), "final_sd": float(per_run[:, -1].std()),
            "games_to_minus_half": int(games[hit[0]]) if len(hit) else None, "runs": len(per_run),
            "collapsed_runs": int(stopped.sum()),
            "final_mean_others": float(per_run[~stopped, -1].mean()) if (~stopped).any() else None,
            "finals": per_run[:, -1].round(4).tolist(), "games": games.tolist(), "mean": mean.round(4).tolist(),
            "sd": per_run.std(0).round(4).tolist(), "per_run": per_run.round(4).tolist()}


def paper_conditions(path: Path = PAPER) -> dict:
    """The released curves (raw, every 50 games), per condition."""
    rows = list(csv.DictReader(path.open()))
    out = {}
    for cond in ("dream", "no_dream"):
        runs = sorted({int(r["run"]) for r in rows if r["condition"] == cond})
        per_run = np.array([[float(r["mean_return_last_50_games"]) for r in rows
                             if r["condition"] == cond and int(r["run"]) == k] for k in runs])
        games = np.array([int(r["games"]) for r in rows if r["condition"] == cond and int(r["run"]) == runs[0]])
        out[f"paper_{cond}"] = {**summarize(per_run, games), "backend": "DYNAP-SE1 chip (released results)"}
    return out


def condition_record(run_dir: Path) -> dict | None:
    """A finished condition's summary from its run directory (None if not finished)."""
    f = run_dir / "results.json"
    if not f.exists():
        return None
    rec = json.loads(f.read_text())
    per_run = np.array(rec["curve"]["per_run"])
    return {**summarize(per_run, np.array(rec["curve"]["games"])), "backend": rec["backend"],
            "protocol": rec["config"]["protocol"], "wall_s": rec["wall_s"], "config": rec["config"]}


def mann_whitney(a: list[float], b: list[float]) -> float:
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def collect(runs: Path, previous: dict) -> dict:
    # kept entries are summarized again, so that fields added to `summarize` since reach them too
    conditions = {name: {**old, **summarize(np.array(old["per_run"]), np.array(old["games"]))}
                  for name, old in previous.get("conditions", {}).items()}
    for name in CONDITIONS:
        rec = condition_record(runs / name)
        if rec is not None:
            conditions[name] = rec
    for name, parts in POOLED.items():
        if all(part in conditions for part in parts):
            per_run = np.concatenate([np.array(conditions[part]["per_run"]) for part in parts])
            first = conditions[parts[0]]
            conditions[name] = {**summarize(per_run, np.array(first["games"])), "backend": first["backend"],
                                "protocol": first.get("protocol"), "pooled_from": list(parts)}
    conditions.update(paper_conditions())
    p = {f"{a} vs {b}": mann_whitney(conditions[a]["finals"], conditions[b]["finals"])
         for a, b in PAIRS if a in conditions and b in conditions}
    lava = {c: (conditions.get(f"lava_{c}") or {}).get("wall_s") for c in LAVA_RUNS}
    target = {c: f"{c}_run_0" if f"{c}_run_0" in conditions else c for c in LAVA_RUNS}
    same = {c: conditions[f"lava_{c}"]["per_run"][0] == conditions[target[c]]["per_run"][0]
            for c in LAVA_RUNS if f"lava_{c}" in conditions and target[c] in conditions}
    return {"benchmark": "neuromorphic dreaming, Pong from RAM (PAPERS.md section 3)",
            "settings": "10 runs x 2000 games, dynapse1, mismatch sigma 0.2, chip instance 0, seeds 0-9; "
                        "value: mean return over the last 50 games, every 50 games",
            "conditions": conditions, "pending": [c for c in CONDITIONS if c not in conditions],
            "mann_whitney_p": p, "lava_full_run_seconds": lava, "lava_curve_equals_emulator_run_0": same,
            "lava_compared_with": {c: target[c] for c in same},
            "mismatch_sweep": mismatch_sweep(conditions, previous.get("mismatch_sweep") or [])}


def mismatch_sweep(conditions: dict, previous: list[dict]) -> list[dict]:
    """Per sigma of SWEEP_SIGMAS, our protocol with dreaming: its finished condition (the entry
    names it in "condition"), else the previous results file's entry (without "condition": an
    earlier version's, with fewer runs)."""
    old = {e["mismatch_sigma"]: e for e in previous}
    out = []
    for sigma in SWEEP_SIGMAS:
        name = "dream" if sigma == 0.2 else f"dream_sigma_{sigma}"
        rec = conditions.get(name)
        if rec is None:
            if sigma in old:
                out.append(old[sigma])
            continue
        out.append({"mismatch_sigma": sigma, "condition": name, "runs": rec["runs"], "final_mean": rec["final_mean"],
                    "final_sd": rec["final_sd"], "first_game_mean_ge_-0.5": rec["games_to_minus_half"]})
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = res["conditions"]
    fig, (ax, ox, bx) = plt.subplots(1, 3, figsize=(18, 5), gridspec_kw={"width_ratios": [3, 3, 2]})
    released = {"paper_dream": ("released, dreaming", "k", "-"), "paper_no_dream": ("released, no dreaming", "k", "--")}
    panels = {
        ax: ("the authors' code (reference protocol)", {
            "reference_dream": ("reference protocol, dreaming", "C3", "-"),
            "reference_no_dream": ("reference protocol, no dreaming", "C3", "--"),
            "reference_dream_lr_0.002": ("reference, policy lr 0.002, dreaming", "C1", "-"),
            "reference_no_dream_lr_0.002": ("reference, policy lr 0.002, no dreaming", "C1", "--")}),
        ox: ("our protocol", {
            "dream": ("ours, dreaming", "C0", "-"), "no_dream": ("ours, no dreaming", "C0", "--"),
            "paired_coding_dream": ("ours fixed (paired, coding 0.1), dreaming", "C2", "-"),
            "paired_coding_no_dream": ("ours fixed (paired, coding 0.1), no dreaming", "C2", "--"),
            "paired_coding_dream_per_action": ("ours fixed, dreaming, world model per action", "C4", "-"),
            "paired_coding_dream_entropy": ("ours fixed + entropy 0.05, dreaming", "C5", "-"),
            "paired_coding_no_dream_entropy": ("ours fixed + entropy 0.05, no dreaming", "C5", "--"),
            "paired_coding_dream_lr_0.002": ("ours fixed, policy lr 0.002, dreaming", "C1", "-"),
            "paired_coding_no_dream_lr_0.002": ("ours fixed, policy lr 0.002, no dreaming", "C1", "--")})}
    for axis, (title, styles) in panels.items():
        for name, (label, color, ls) in {**released, **styles}.items():
            if name in c and "mean" in c[name]:
                g, m, s = (np.array(c[name][k]) for k in ("games", "mean", "sd"))
                axis.plot(g, m, ls, color=color, label=label)
                axis.fill_between(g, m - s, m + s, color=color, alpha=0.06)
        axis.axhline(-0.5, color="grey", lw=0.6)
        axis.set(xlabel="game", ylabel=f"mean return over the last {CURVE_EVERY} games", ylim=(-2.1, 1.2),
                 title=f"{title}: mean ± SD over runs")
        axis.legend(fontsize=6.5, loc="upper left")
    names = [n for n in c if (n.startswith("reference") or n.startswith("paper")) and n != REF_RUN_0
             and not n.endswith("_seeds10")]
    finals = [c[n]["final_mean"] for n in names]
    bx.barh(range(len(names)), finals, xerr=[c[n]["final_sd"] for n in names], color="C3", alpha=0.6)
    bx.set_yticks(range(len(names)), [n.replace("reference_", "ref ") for n in names], fontsize=8)
    bx.axvline(0, color="grey", lw=0.6)
    bx.set(xlabel="final (game 2000), mean ± SD over runs", title="reference protocol: ablations")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", nargs="+", choices=list(CONDITIONS), default=[], help="play these conditions first")
    p.add_argument("--runs-dir", type=Path, default=RUNS)
    args = p.parse_args()
    import lavaloop

    for name in args.run:
        lavaloop.dream("pong", args.runs_dir / name, progress=True, **CONDITIONS[name])
    json_path = OUT.with_suffix(".json")
    previous = json.loads(json_path.read_text()) if json_path.exists() else {}
    res = collect(args.runs_dir, previous)
    write_json(json_path, res)
    plot(res, OUT.with_suffix(".png"))
    for name, rec in res["conditions"].items():
        print(f"{name:34s} final {rec['final_mean']:+.2f} ± {rec['final_sd']:.2f}, "
              f"-0.5 at {rec['games_to_minus_half']}, stopped scoring {rec['collapsed_runs']}/{rec['runs']}")
    for pair, pv in res["mann_whitney_p"].items():
        print(f"Mann-Whitney U  {pair}: p = {pv:.3g}")


if __name__ == "__main__":
    main()
