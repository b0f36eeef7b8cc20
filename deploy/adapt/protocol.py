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
from lavaloop.deploy.adapt.rules import TRAINERS, AdaptConfig, Episode
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
    timesteps = None if art.kind == "sigma-delta" else cfg.timesteps or art.timesteps
    readout = Readout.of(art, timesteps, cfg.headroom_bits)
    spec, amap = art.env_spec, art.manifest["action_map"]
    q = art.layers[-1]
    origin = fingerprint(art)
    run_config = {k: v for k, v in cfg.to_dict().items() if k != "episodes"}   # more episodes: continue
    rundir = RunDir(out, {"backend": backend, "artifact": origin, "env": spec.to_dict(), **run_config})
    data = rundir.open()
    source = source_network(art).q_values
    w0, b0 = q.effective()
    trainer = TRAINERS[cfg.rule](cfg, readout, w0, b0, source)
    curve: list[dict] = []
    weight, bias = readout.quantize(w0, b0)      # the converted readout at the run's exponent
    if data is not None:
        trainer.load(data)
        trainer.rng.bit_generator.state = data["meta"]["rng"]
        curve, weight, bias = data["meta"]["curve"], data["weight"], data["bias"]
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
            weight, bias = readout.quantize(trainer.w, trainer.b, trainer.features())
            chip.set_readout(weight, bias)
            curve.append({"episode": k, "seed": seeds[k], "return": played.ret, "length": len(rewards),
                          "agreement": agreement, **stats})
            rundir.save({**trainer.state(), "weight": weight, "bias": bias},
                        {"curve": curve, "rng": trainer.rng.bit_generator.state, "wall_s": wall + time.time() - t0})
            bar.update(1)
            bar.set_postfix(ret=f"{played.ret:.1f}", agree=f"{agreement:.2f}")
    except BaseException as exc:
        chip.close(interrupted=isinstance(exc, KeyboardInterrupt))
        raise
    finally:
        bar.close()
    chip.close()
    record = {"backend": backend, "artifact_env": spec.to_dict(), "config": cfg.to_dict(), "timesteps": timesteps,
              "curve": curve, "wall_s": wall + time.time() - t0, "readout": readout_summary(q, weight, bias, readout),
              "versions": versions(), "out": str(out)}
    write_json(Path(out) / "results.json", record)
    adapted = with_readout(art, weight, bias, readout.chip)
    returns = [c["return"] for c in curve]
    adapted.manifest = {**art.manifest, "adaptation": {
        "rule": cfg.rule, "episodes": cfg.episodes, "backend": backend, "env": spec.to_dict(),
        "config": cfg.to_dict(), "from_artifact": origin,
        "first_returns_mean": float(np.mean(returns[:10])), "last_returns_mean": float(np.mean(returns[-10:]))}}
    return record, adapted


def fingerprint(art) -> str:
    """SHA-256 of an artifact's manifest and integer layers: which network a run adapts."""
    h = hashlib.sha256(json.dumps(art.manifest, sort_keys=True).encode())
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
