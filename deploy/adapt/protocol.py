"""An adaptation run: episodes on the chip, the readout trained between them, checkpointed.

After every episode the run directory holds the trainer's whole state (readout, optimizer,
replay, random generator) and the curve, written atomically: an interrupted run resumes at
the next episode and ends as an uninterrupted one would. Asking the same run directory for
more episodes continues the run (episode k always uses seed `seed + k`).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lavaloop.atomic import write_json
from lavaloop.deploy.adapt.chips import CHIPS, with_readout
from lavaloop.deploy.adapt.readout import Readout
from lavaloop.deploy.adapt.rules import BEST_WINDOW, TRAINERS, AdaptConfig, Episode
from lavaloop.deploy.episodes import replay
from lavaloop.deploy.kinds.dqn import source_network
from lavaloop.deploy.results import versions
from lavaloop.envs import episode_limit
from lavaloop.errors import LavaloopError
from lavaloop.fixedpoint import int_max
from lavaloop.rundir import RunDir


def adapt(art, cfg: AdaptConfig, out: str | Path, backend: str, progress: bool = True) -> tuple[dict, object]:
    """Adapt `art`'s readout on its environment (`art.env_spec`, already moved where it should
    run) for `cfg.episodes` episodes, resuming the run in `out`.

    Returns (the run record, also written to out/results.json; the adapted artifact).
    """
    if art.kind == "sigma-delta" and cfg.timesteps is not None:
        raise LavaloopError("timesteps apply to rate-coded artifacts only, not sigma-delta")
    if cfg.rule == "td" and art.manifest["normalization"].get("readout_centred"):
        raise LavaloopError("rule td learns Q-values, but this artifact's readout is centred (advantages): "
                            "convert it with --no-centre-readout")
    timesteps = None if art.kind == "sigma-delta" else cfg.timesteps or art.timesteps
    readout = Readout.of(art, timesteps, cfg.headroom_bits)
    spec, amap = art.env_spec, art.manifest["action_map"]
    q = art.layers[-1]
    origin = fingerprint(art)
    # more episodes continue the run; which readout to keep can be chosen again afterwards
    run_config = {k: v for k, v in cfg.to_dict().items() if k not in ("episodes", "keep")}
    rundir = RunDir(out, {"backend": backend, "artifact": origin, "env": spec.to_dict(), **run_config})
    data = rundir.open()
    source = source_network(art).q_values
    w0, b0 = q.effective()
    trainer = TRAINERS[cfg.rule](cfg, readout, w0, b0, source)
    curve: list[dict] = []
    weight, bias = readout.quantize(w0, b0)      # the converted readout at the run's exponent
    best = {"episode": None, "window_mean": None, "weight": weight, "bias": bias}
    if data is not None:
        trainer.load(data)
        trainer.rng.bit_generator.state = data["meta"]["rng"]
        curve, weight, bias = data["meta"]["curve"], data["weight"], data["bias"]
        best = {**data["meta"]["best"], "weight": data["best_weight"], "bias": data["best_bias"]}
        if len(curve) > cfg.episodes:
            raise LavaloopError(f"{out} holds {len(curve)} adaptation episodes already; ask for at least that many")
    seeds = [cfg.seed + k for k in range(cfg.episodes)]
    chip = CHIPS[backend](with_readout(art, weight, bias, readout.chip), seeds[len(curve):], timesteps, cfg.epsilon)
    limit, t0 = episode_limit(spec), time.time()
    wall = data["meta"]["wall_s"] if data is not None else 0.0
    bar = tqdm(total=cfg.episodes, initial=len(curve), desc=f"adapting ({cfg.rule}, {backend})", unit="ep",
               disable=not progress)
    try:
        for k in range(len(curve), cfg.episodes):
            played = chip.play()
            obs, rewards = replay(spec, seeds[k], [amap[a] for a in played.actions], played.ret)
            ep = Episode(played.features, played.actions, rewards, obs, terminated=len(rewards) < limit)
            agreement = float(np.mean(source(obs).argmax(1) == played.greedy))
            stats = trainer.update(ep)
            curve.append({"episode": k, "seed": seeds[k], "return": played.ret, "length": len(rewards),
                          "agreement": agreement, **stats})
            window = [c["return"] for c in curve[-BEST_WINDOW:]]
            if len(window) >= min(BEST_WINDOW, cfg.episodes) and (best["window_mean"] is None
                                                                   or np.mean(window) > best["window_mean"]):
                best = {"episode": k, "window_mean": float(np.mean(window)), "weight": weight, "bias": bias}
            weight, bias = readout.quantize(trainer.w, trainer.b, trainer.features())
            chip.set_readout(weight, bias)
            rundir.save({**trainer.state(), "weight": weight, "bias": bias,
                         "best_weight": best["weight"], "best_bias": best["bias"]},
                        {"curve": curve, "rng": trainer.rng.bit_generator.state, "wall_s": wall + time.time() - t0,
                         "best": {k_: best[k_] for k_ in ("episode", "window_mean")}})
            bar.update(1)
            bar.set_postfix(ret=f"{played.ret:.1f}", agree=f"{agreement:.2f}")
    except BaseException as exc:
        chip.close(interrupted=isinstance(exc, KeyboardInterrupt))
        raise
    finally:
        bar.close()
    chip.close()
    kept = {"readout": "last"}
    if cfg.keep == "best" and best["episode"] is not None:
        kept = {"readout": "best", "episode": best["episode"], "window_mean": best["window_mean"]}
        weight, bias = best["weight"], best["bias"]
    record = {"backend": backend, "artifact_env": spec.to_dict(), "config": cfg.to_dict(), "timesteps": timesteps,
              "curve": curve, "wall_s": wall + time.time() - t0, "readout": readout_summary(q, weight, bias, readout),
              "kept": kept, "versions": versions(), "out": str(out)}
    write_json(Path(out) / "results.json", record)
    adapted = with_readout(art, weight, bias, readout.chip)
    returns = [c["return"] for c in curve]
    adapted.manifest = {**art.manifest, "adaptation": {
        "rule": cfg.rule, "episodes": cfg.episodes, "backend": backend, "env": spec.to_dict(),
        "config": cfg.to_dict(), "from_artifact": origin, "kept": kept,
        "first_returns_mean": float(np.mean(returns[:10])), "last_returns_mean": float(np.mean(returns[-10:]))}}
    return record, adapted


def fingerprint(art) -> str:
    """SHA-256 of an artifact's manifest and integer layers: which network a run adapts. Wall
    times are left out, so the same network converted again resumes the same run."""
    manifest = {k: v for k, v in art.manifest.items() if k != "conversion_seconds"}
    if manifest.get("distillation"):
        manifest["distillation"] = {k: v for k, v in manifest["distillation"].items() if k != "seconds"}
    h = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode())
    for q in art.layers:
        for a in (q.weight, q.bias, q.vth):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def readout_summary(q, weight: np.ndarray, bias: np.ndarray, readout: Readout) -> dict:
    """How far the readout moved, and how close it is to the profile's limits."""
    m_max = int_max(readout.weight_bits)
    w_before, _ = q.effective()
    return {**readout.chip, "mantissa_max_abs": int(np.abs(weight).max()), "mantissa_limit": m_max,
            "at_limit_fraction": float(np.mean(np.abs(weight) == m_max)),
            "changed_fraction": float(np.mean(np.abs(weight * readout.w_step[:, None] - w_before)
                                              > readout.w_step[:, None] / 2)),
            "bias_before": q.bias.tolist(), "bias_after": bias.tolist()}
