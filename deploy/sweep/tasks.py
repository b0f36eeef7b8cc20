"""What a sweep's workers do: convert a checkpoint, run a cell, play a dreaming cell, train a policy.

Plain functions over bytes and dicts, so a worker on another machine needs nothing from the
driver's disk: checkpoints and artifacts travel as bytes, records come back as dicts, and
only the driver writes the sweep's folder. Each runs on one core, and a SIGTERM to the worker
(Ray stopping it) ends a Lava run through the runtime's usual cleanup.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def one_core() -> Iterator[None]:
    """One thread for BLAS and torch, and SIGTERM as an interrupt, for the task's duration."""
    import torch
    from threadpoolctl import threadpool_limits

    from lavaloop.runtime import signals_as_interrupts

    torch.set_num_threads(1)
    with threadpool_limits(1), signals_as_interrupts():
        yield


def where() -> dict:
    """The machine and the Ray node a task ran on (nodes of one machine share its host name)."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    return {"host": os.uname().nodename, "node": node}


def conversion_summary(manifest: dict) -> dict:
    """The manifest's scalar entries (T, readout, the rate limit's agreement, conversion time, ...),
    and those of its tables (e.g. "mismatch_training.heldout_after")."""
    def scalars(d: dict) -> dict:
        return {k: v for k, v in d.items() if isinstance(v, (int, float, str, bool))}

    return {**scalars(manifest), **{k: scalars(v) for k, v in manifest.items() if isinstance(v, dict)}}


def convert_task(file_name: str, data: bytes, env: str, options: dict) -> bytes:
    """Convert a checkpoint given as bytes; the artifact's bytes.

    Parameters
    ----------
    file_name: the checkpoint's file name (its suffix tells the loader the format).
    data: the checkpoint's bytes.
    env: the environment id to convert for.
    options: conversion options (the kind's options dataclass fields).
    """
    import lavaloop

    with one_core(), tempfile.TemporaryDirectory(prefix="lavaloop-sweep-") as tmp:
        src = Path(tmp) / file_name
        src.write_bytes(data)
        out = Path(tmp) / "artifact.h5"
        lavaloop.convert(src, env, **options).save(out)
        return out.read_bytes()


def run_task(artifact: bytes, options: dict) -> dict:
    """Run one cell: `lavaloop.run` of the artifact (given as bytes) with `options`.

    Returns {"result": RunResult.to_dict(), "conversion": the manifest's scalars, "wall_s",
    "host", "node"}.
    """
    import lavaloop

    t0 = time.time()
    with one_core(), tempfile.TemporaryDirectory(prefix="lavaloop-sweep-") as tmp:
        path = Path(tmp) / "artifact.h5"
        path.write_bytes(artifact)
        art = lavaloop.load_artifact(path)
        result = lavaloop.run(art, progress=False, **options).to_dict()
    return {"result": result, "conversion": conversion_summary(art.manifest), "wall_s": time.time() - t0,
            **where()}


def dream_task(options: dict, run_dir: str) -> dict:
    """Play one dreaming cell (`lavaloop.dream`), resumable in `run_dir`.

    Returns {"result": the protocol's record without the per-game returns, "wall_s", "host", "node"}.
    """
    from lavaloop.deploy.dreaming.agent import dream_config
    from lavaloop.deploy.dreaming.protocol import run

    t0 = time.time()
    opts = dict(options)
    backend = opts.pop("backend", "emulator")
    with one_core():
        record = run(dream_config(opts), run_dir, backend, progress=False)
    record.pop("returns")
    return {"result": record, "wall_s": time.time() - t0, **where()}


TRAIN_OPTIONS = ("env", "cell", "seed", "eval_every", "weight_bits")   # besides trainers.recurrent.Config's fields


def train_task(options: dict) -> dict:
    """Train one recurrent policy (`lavaloop.trainers.recurrent`: GRSN, GRU, LIF cells) from scratch.

    Parameters
    ----------
    options: env (a POMDP id, default "CartPole-V"), cell (default "grsn"), seed (default 0),
        eval_every (default 1000), weight_bits (quantization-aware training), and any
        `trainers.recurrent.Config` field.

    Returns {"result": the trainer's record (curve, best_eval, final_eval, config, ...),
    "files": {"policy.pt", "policy.csv"}: the best policy and its curve, "wall_s", "host", "node"}.
    """
    from lavaloop.trainers import recurrent

    t0 = time.time()
    opts = dict(options)
    named = {k: opts.pop(k) for k in TRAIN_OPTIONS if k in opts}
    cfg = recurrent.Config(**opts)
    with one_core(), tempfile.TemporaryDirectory(prefix="lavaloop-sweep-") as tmp:
        out = Path(tmp) / "policy.pt"
        record = recurrent.train(named.get("env", "CartPole-V"), named.get("cell", "grsn"), named.get("seed", 0), out,
                                 cfg, named.get("eval_every", 1_000), progress=False,
                                 weight_bits=named.get("weight_bits"))
        files = {"policy.pt": out.read_bytes(), "policy.csv": out.with_suffix(".csv").read_bytes()}
    return {"result": record, "files": files, "wall_s": time.time() - t0, **where()}
