"""Where a mapped DQN errs on its chip: its own states against the source's, by action gap.

    lavaloop convert checkpoints/cartpole_dqn.pt --env CartPole-v1 --profile dynapse2 --fan-in prune \\
        --distill --distill-mismatch 0 -o cp_nominal.h5
    python -m benchmarks.mixed_signal_shift cp_nominal.h5        # results/mixed_signal_shift.json

The nominal chip (`conversion.mismatch_training.ChipModel`, which decides as the emulator)
plays `--steps` greedy env steps, and so does the source; on both sets of states the chip's
decisions are compared with the source's, per quartile of the source's action gap
|Q(a) - Q(b)| (two actions; for more, the gap between the best two), quartiles taken over
both sets together. Also the median |observation| per component on each set.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

OUT = Path("results/mixed_signal_shift.json")


def action_gap(q: np.ndarray) -> np.ndarray:
    """The gap between the best two actions' values, per row of q (B, |A|)."""
    top = np.sort(q, axis=1)
    return top[:, -1] - top[:, -2]


def shift_report(chip, source, spec, steps: int, seed: int) -> dict:
    """Agreement of `chip` with `source` on each one's own greedy states, by action-gap quartile.

    Parameters
    ----------
    chip, source: objects with q_values(obs) -> (B, |A|). spec: the environment.
    steps: env steps each policy plays. seed: the episodes' seed.
    """
    from lavaloop.conversion.normalize import collect_observations

    sets = {"chip_states": collect_observations(chip, spec, steps, seed, 0.0),
            "source_states": collect_observations(source, spec, steps, seed, 0.0)}
    gaps = {k: action_gap(source.q_values(o)) for k, o in sets.items()}
    agree = {k: chip.q_values(o).argmax(1) == source.q_values(o).argmax(1) for k, o in sets.items()}
    edges = np.quantile(np.concatenate(list(gaps.values())), [0.0, 0.25, 0.5, 0.75, 1.0])
    out = {"steps": steps, "seed": seed, "gap_quartile_edges": edges.tolist()}
    for k, o in sets.items():
        bins = np.clip(np.searchsorted(edges, gaps[k], side="right") - 1, 0, 3)
        out[k] = {"agreement": float(agree[k].mean()), "median_gap": float(np.median(gaps[k])),
                  "agreement_by_gap_quartile": [float(agree[k][bins == b].mean()) if np.any(bins == b) else None
                                                for b in range(4)],
                  "states_by_gap_quartile": [int(np.sum(bins == b)) for b in range(4)],
                  "median_abs_observation": np.median(np.abs(o.reshape(len(o), -1)), axis=0).tolist()}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifact", type=Path, help="a mixed-signal artifact (.h5)")
    p.add_argument("--steps", type=int, default=1500, help="env steps each policy plays")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    import lavaloop
    from lavaloop.atomic import write_json
    from lavaloop.conversion.mismatch_training import ChipModel
    from lavaloop.deploy.kinds.dqn import source_network

    art = lavaloop.load_artifact(args.artifact)
    res = {"artifact": args.artifact.name, "mismatch_training": art.manifest.get("mismatch_training", {}).get("sigma"),
           **shift_report(ChipModel(art), source_network(art), art.env_spec, args.steps, args.seed)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, res)
    for k in ("chip_states", "source_states"):
        r = res[k]
        print(f"{k:14s} agreement {r['agreement']:.3f}  median gap {r['median_gap']:.3f}  by gap quartile "
              + " ".join("-" if a is None else f"{a:.3f}" for a in r["agreement_by_gap_quartile"]))


if __name__ == "__main__":
    main()
