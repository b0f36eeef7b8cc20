"""The results record of a run (JSON), and its summary table."""
from __future__ import annotations

import json
import os
import platform
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from conversion.artifact import Artifact
from deploy.episodes import Agreement, EpisodeLog

PACKAGES = ("lavaloop", "lava-nc", "lava-dl", "torch", "numpy", "gymnasium", "ale-py")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def build_record(art: Artifact, artifact_path: str, settings, log: EpisodeLog, agreement: Agreement,
                 src_returns: np.ndarray) -> dict:
    """Everything a run measured, JSON-able."""
    decisions = max(log.decisions, 1)
    return {
        "artifact": str(artifact_path),
        "env": art.manifest["env"]["id"],
        "backend": settings.backend,
        "profile": art.manifest["profile"]["name"],
        "timesteps": settings.timesteps,
        "readout": settings.readout,
        "epsilon": settings.epsilon,
        "seeds": list(settings.seeds),
        "episodes": [
            {"seed": s, "return": float(r), "length": int(l), "agreement": a, "source_return": float(sr)}
            for s, r, l, a, sr in zip(log.seeds, log.returns, log.lengths, agreement.per_episode, src_returns)],
        "mean_return": float(np.mean(log.returns)),
        "std_return": float(np.std(log.returns)),
        "source_mean_return": float(np.mean(src_returns)),
        "return_ratio": float(np.mean(log.returns) / np.mean(src_returns)) if np.mean(src_returns) else None,
        "conversion_rate": agreement.rate,
        "outcome_agreement": agreement.outcome_rate,
        "decisions": log.decisions,
        "spikes_per_decision": sum(log.spikes) / decisions,
        "synops_per_decision": sum(log.synops) / decisions,
        "spikes_per_layer": log.spikes,
        "synops_per_layer": log.synops,
        "backend_steps": log.steps,
        "steps_per_s": log.steps / log.wall_s if log.wall_s > 0 else None,
        "wall_s": log.wall_s,
        **log.extra,
        "normalization_percentile": art.manifest["normalization"]["percentile"],
        "source_sha256": art.manifest["source"]["sha256"],
        "versions": versions(),
    }


def write_json(path: str | Path, record: dict) -> None:
    """Write atomically (no half-written file on failure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".json.tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=2)
    os.replace(tmp, path)


def summary_table(rec: dict) -> str:
    """A plain-text table of the episodes and the run's headline numbers."""
    lines = [f"{rec['env']} on {rec['backend']} ({rec['profile']}, T={rec['timesteps']}, "
             f"readout={rec['readout']}, epsilon={rec['epsilon']})",
             f"{'seed':>6} {'SNN return':>11} {'DQN return':>11} {'length':>7} {'agreement':>10}"]
    for e in rec["episodes"]:
        lines.append(f"{e['seed']:>6} {e['return']:>11.1f} {e['source_return']:>11.1f} "
                     f"{e['length']:>7d} {e['agreement']:>10.4f}")
    ratio = rec["return_ratio"]
    lines += [
        f"mean return: SNN {rec['mean_return']:.1f} +- {rec['std_return']:.1f}, "
        f"DQN {rec['source_mean_return']:.1f}" + (f" (ratio {ratio:.3f})" if ratio is not None else ""),
        f"conversion rate (decision agreement): {rec['conversion_rate']:.4f} over {rec['decisions']} decisions"
        + ("" if rec["outcome_agreement"] is None else
           f"; same outcome in the emulator: {rec['outcome_agreement']:.4f}"),
        f"per decision: {rec['spikes_per_decision']:.1f} spikes, {rec['synops_per_decision']:.0f} synaptic ops",
        f"{rec['backend']}: {rec['backend_steps']} steps in {rec['wall_s']:.1f} s "
        f"({rec['steps_per_s']:.0f} steps/s)",
    ]
    return "\n".join(lines)
