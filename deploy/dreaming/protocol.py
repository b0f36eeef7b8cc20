"""The paper's protocol: R runs x G games, checkpointed in a run directory, summarized as curves.

The emulator plays all runs as one batch and checkpoints every few games; Lava plays the runs
one after another (one runtime per run, for all its games) and checkpoints after each run.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from lavaloop.atomic import write_json
from lavaloop.deploy.dreaming.agent import DreamConfig, DreamingAgent
from lavaloop.deploy.dreaming.drive import calibrate_drive
from lavaloop.deploy.dreaming.emulator import EmulatedChip
from lavaloop.deploy.dreaming.network import Topology
from lavaloop.deploy.dreaming.paired import PairedAgent
from lavaloop.deploy.dreaming.reference import ReferenceAgent
from lavaloop.deploy.results import versions
from lavaloop.errors import LavaloopError
from lavaloop.rundir import RunDir

BACKENDS = ("emulator", "lava")
CURVE_EVERY = 50          # the curve: mean return over the last 50 games, every 50 games


def make_agent(cfg: DreamConfig, chip, first_run: int = 0, runs: int | None = None) -> DreamingAgent:
    """The agent of the configuration's protocol and window structure."""
    cls = (ReferenceAgent if cfg.protocol == "reference" else PairedAgent if cfg.paired_windows
           else DreamingAgent)
    return cls(cfg, chip, first_run, runs)


def run_emulator(cfg: DreamConfig, rundir: RunDir, data: dict | None, checkpoint_every: int,
                 progress: bool) -> tuple[np.ndarray, dict]:
    chip = EmulatedChip(cfg.setups())
    agent = make_agent(cfg, chip)
    returns = np.zeros((cfg.runs, cfg.games))
    done, wall = 0, 0.0
    if data is not None:
        meta = data["meta"]
        done, wall = meta["games_done"], meta["wall_s"]
        returns[:, :done] = data["returns"][:, :done]
        agent.load(data)
        agent.set_rng_states(meta["rng"])
        chip.set_state(data, meta["noise_rng"])
    t0 = time.time() - wall
    try:
        # one BLAS thread: the products are small, and threads only fight other jobs for the cores
        with threadpool_limits(1), tqdm(total=cfg.games, initial=done, desc=f"games ({cfg.runs} runs, emulator)",
                                        unit="game", disable=not progress) as bar:
            for g in range(done, cfg.games):
                returns[:, g] = agent.play(g)
                if cfg.dream:
                    agent.dream(g)
                bar.update(1)
                if (g + 1) % checkpoint_every == 0 or g + 1 == cfg.games:
                    meta = {"games_done": g + 1, "wall_s": time.time() - t0, "rng": agent.rng_states(),
                            "noise_rng": chip.noise_states()}
                    rundir.save({"returns": returns, **agent.state(), **chip.get_state()}, meta)
                    if progress:
                        bar.set_postfix(last50=f"{returns[:, max(0, g - 49):g + 1].mean():+.2f}")
    finally:
        chip.close()
    return returns, {"wall_s": time.time() - t0}


def run_lava(cfg: DreamConfig, rundir: RunDir, data: dict | None, progress: bool) -> tuple[np.ndarray, dict]:
    from lavaloop.deploy.dreaming.lava_chip import LavaChip

    setups = cfg.setups()
    returns = np.zeros((cfg.runs, cfg.games))
    run_walls: list[float] = []
    if data is not None:
        run_walls = data["meta"]["run_walls"]
        returns[:len(run_walls)] = data["returns"][:len(run_walls)]
    with tqdm(total=cfg.runs * cfg.games, initial=len(run_walls) * cfg.games, desc="games (lava)",
              unit="game", disable=not progress) as bar:
        for r in range(len(run_walls), cfg.runs):
            t0 = time.time()
            chip = LavaChip(setups[r])
            try:
                agent = make_agent(cfg, chip, first_run=r, runs=1)
                for g in range(cfg.games):
                    returns[r, g] = agent.play(g)[0]
                    if cfg.dream:
                        agent.dream(g)
                    bar.update(1)
            except BaseException as exc:
                chip.close(interrupted=isinstance(exc, KeyboardInterrupt))
                raise
            chip.close()
            run_walls.append(time.time() - t0)
            rundir.save({"returns": returns}, {"run_walls": run_walls})
    return returns, {"wall_s": float(sum(run_walls)), "wall_s_per_run": run_walls}


def curve(returns: np.ndarray) -> dict:
    """Mean return over the last 50 games every 50 games: per run, and mean and SD across runs."""
    games = np.arange(CURVE_EVERY, returns.shape[1] + 1, CURVE_EVERY)
    per_run = np.stack([returns[:, g - CURVE_EVERY:g].mean(1) for g in games], 1)
    mean = per_run.mean(0)

    def first(level):
        hit = np.nonzero(mean >= level)[0]
        return int(games[hit[0]]) if len(hit) else None

    final = per_run[:, -1]
    return {"games": games.tolist(), "mean": mean.round(4).tolist(), "sd": per_run.std(0).round(4).tolist(),
            "per_run": per_run.round(4).tolist(), "first_game_mean_ge_-0.5": first(-0.5),
            "first_game_mean_ge_0": first(0.0), "final_mean": float(final.mean()),
            "final_sd": float(final.std()), "start_mean": float(mean[0])}


def recorded_drive(cfg: DreamConfig, out: str | Path) -> DreamConfig | None:
    """The configuration with the calibrated weights and filter gains that a run directory made
    with the same coding level recorded, if any."""
    f = Path(out) / "config.json"
    if not f.is_file():
        return None
    try:
        old = json.loads(f.read_text())
        if old.get("coding_level") != cfg.coding_level:
            return None
        rules = dataclasses.replace(cfg.rules, **{k: old["rules"][k] for k in ("filter_gain", "model_filter_gain")})
        return dataclasses.replace(cfg, topology=Topology(**old["topology"]), rules=rules)
    except (ValueError, KeyError, TypeError):
        return None          # RunDir reports a broken config.json


def run(cfg: DreamConfig, out: str | Path, backend: str = "emulator", checkpoint_every: int = 50,
        progress: bool = True) -> dict:
    """Run (or resume) the protocol in `out`; writes and returns out/results.json's record."""
    if backend not in BACKENDS:
        raise LavaloopError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    cfg.setups()                      # profile and chip limits, before anything is written
    if cfg.coding_level is not None:  # a resumed run keeps the weights and gains it recorded
        cfg = recorded_drive(cfg, out) or calibrate_drive(cfg, cfg.coding_level)
    rundir = RunDir(out, {"backend": backend, **cfg.to_dict()}, defaults=DreamConfig().to_dict())
    data = rundir.open()
    if backend == "emulator":
        returns, timing = run_emulator(cfg, rundir, data, checkpoint_every, progress)
    else:
        returns, timing = run_lava(cfg, rundir, data, progress)
    profile = cfg.chip_profile()
    record = {"protocol": "neuromorphic dreaming, Pong from RAM", "out": str(out), "backend": backend,
              "config": cfg.to_dict(),
              "profile": profile.to_dict(),
              "mismatch_sigma": profile.mismatch_sigma if cfg.mismatch_sigma is None else cfg.mismatch_sigma,
              "curve": curve(returns) if cfg.games >= CURVE_EVERY else None,
              "returns": returns.astype(int).tolist(), **timing, "versions": versions()}
    write_json(Path(out) / "results.json", record)
    return record
