"""Running a sweep's cells as Ray tasks, keeping each finished cell as it completes.

A local Ray instance with this machine's cores by default (nothing to start by hand), or an
existing cluster by address. Conversions are tasks too; the cells that share one wait on it.
Ctrl-C or SIGTERM cancels the outstanding tasks (a Lava run ends through its cleanup), stops
the Ray instance this sweep started, and keeps every cell that had finished.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

from tqdm import tqdm

from lavaloop.deploy.sweep import tasks
from lavaloop.deploy.sweep.spec import Cell, SpecError, SweepSpec
from lavaloop.deploy.sweep.store import SweepStore
from lavaloop.errors import LavaloopError

CANCEL_GRACE_S = 10.0   # how long cancelled tasks get to clean up before Ray is stopped
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class SweepError(LavaloopError):
    """A sweep that could not start, or cells that failed."""


def probe(address: str) -> None:
    """Fail in one line unless something listens at a Ray address ("auto" is left to Ray)."""
    if address == "auto":
        return
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"Ray address {address!r} is not HOST:PORT (or 'auto')")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise SweepError(f"no Ray cluster answers at {address} ({exc.strerror or exc})") from None


@contextlib.contextmanager
def ray_session(address: str | None, workers: int | None) -> Iterator:
    """Ray, started here with `workers` CPUs (default: all) or joined at `address`; stopped after."""
    import ray

    quiet = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                 runtime_env={"env_vars": ONE_THREAD})   # before a worker loads numpy: one core per cell
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SweepError(f"cannot start Ray{f' at {address}' if address else ''}: {str(exc).splitlines()[0]}") from None
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):   # Ray's own handler aborts the driver: take ours back
            signal.signal(signum, signal.getsignal(signum))
    try:
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def signals_noted() -> Iterator[list[int]]:
    """Within the block, SIGINT, SIGTERM and SIGHUP are only noted (Ray turns an exception a
    handler raises inside its calls into SystemExit); the caller acts on them between calls."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, lambda signum, frame: noted.append(signum)) for s in signums}
    try:
        yield noted
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def interrupt(signum: int) -> KeyboardInterrupt:
    """The exception a noted signal stands for (the CLI's and Lava runners' convention)."""
    from lavaloop.runtime import Terminated

    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def failure_line(exc: BaseException) -> str:
    """One line for a failed task: the worker's own error where Ray kept it."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def cost_hint(cell: Cell) -> float:
    """A cell's likely cost, for ordering: the product of its steps-like options (T, episodes,
    games, runs, training steps). Longest first keeps a long cell from finishing alone at the end."""
    opts = {**(cell.convert or {}), **cell.options}
    cost = 1.0
    for name in ("timesteps", "episodes", "games", "runs", "total_steps"):
        if isinstance(opts.get(name), (int, float)):
            cost *= opts[name]
    return cost


def execute(ray, spec: SweepSpec, store: SweepStore, todo: list[Cell], finished: dict, progress: bool,
            total: int) -> list[tuple[Cell, str]]:
    """Submit `todo` and keep each cell as it finishes (in `finished` and its file); the failures."""
    convert = ray.remote(num_cpus=1, max_retries=0)(tasks.convert_task)
    run = ray.remote(num_cpus=1, max_retries=0)(tasks.run_task)
    dream = ray.remote(num_cpus=1, max_retries=0)(tasks.dream_task)
    train = ray.remote(num_cpus=1, max_retries=0)(tasks.train_task)
    inputs: dict[str, object] = {}        # conversion key or source path -> artifact bytes (ref)
    conversions: dict = {}                # ref of a conversion task -> its key
    cells: dict = {}                      # ref of a cell task -> the cell
    for cell in sorted(todo, key=cost_hint, reverse=True):
        if spec.task == "dream":
            cells[dream.remote(cell.options, str(store.run_dir(cell).resolve()))] = cell
            continue
        if spec.task == "train":
            cells[train.remote(cell.options)] = cell
            continue
        key = cell.conversion_key or str(cell.source.path)
        if key not in inputs:
            stored = store.artifact_path(key) if cell.conversion_key else cell.source.path
            if stored.exists():
                inputs[key] = ray.put(stored.read_bytes())
            else:
                ref = convert.remote(cell.source.label, cell.source.path.read_bytes(), cell.env, cell.convert)
                inputs[key] = ref
                conversions[ref] = key
        cells[run.remote(inputs[key], cell.options)] = cell
    failures = []
    pending = [*conversions, *cells]
    bar = tqdm(total=total, initial=total - len(todo), unit="cell", desc=spec.name, disable=not progress)
    with signals_noted() as noted:
        try:
            while pending:
                if noted:
                    raise interrupt(noted[0])
                ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                for ref in ready:
                    try:
                        out = ray.get(ref)
                    except Exception as exc:      # noqa: BLE001  (a task's own error, reported per cell)
                        if ref in cells:
                            failures.append((cells[ref], failure_line(exc)))
                            bar.update()
                        continue
                    if ref in conversions:
                        store.save_artifact(conversions[ref], out)
                    else:
                        cell = cells[ref]
                        finished[cell.key] = store.save_cell(cell, out)
                        bar.update()
        finally:
            bar.close()
            if pending:                           # interrupted: let the running tasks clean up
                for ref in pending:
                    ray.cancel(ref)
                with contextlib.suppress(Exception):
                    ray.wait(pending, num_returns=len(pending), timeout=CANCEL_GRACE_S)
    return failures


def sweep(spec: SweepSpec, out=None, address: str | None = None, workers: int | None = None,
          progress: bool = True) -> dict:
    """Run (or resume) a sweep; its results record (also written to the sweep's folder).

    Parameters
    ----------
    spec: the parsed spec (lavaloop.deploy.sweep.spec.load_spec).
    out: the sweep's folder (default: the spec's `out`).
    address: an existing Ray cluster's address (HOST:PORT or "auto"); None starts Ray here.
    workers: CPUs of the Ray instance started here (default: all of this machine's), >= 1.
    progress: show a progress bar over the cells, with an ETA.

    Raises
    ------
    SweepError: Ray cannot be reached or started; cells failed (the others are kept, and a
        rerun of the spec retries only the failed ones).
    """
    from lavaloop.deploy.sweep.report import write_report
    from lavaloop.options import at_least

    at_least("workers", workers, 1)
    if address and workers:
        raise SpecError("workers applies to a Ray started here; a cluster at --address brings its own CPUs")
    if address:
        probe(address)
    cells = spec.cells()
    store = SweepStore(out if out is not None else spec.out, spec)
    store.open()
    finished = store.finished()
    todo = [c for c in cells if c.key not in finished]
    t0, failures, cpus = time.time(), [], None
    if todo:
        with ray_session(address, workers) as ray:
            cpus = int(ray.cluster_resources().get("CPU", 0))
            failures = execute(ray, spec, store, todo, finished, progress, len(cells))
    wall = time.time() - t0
    ran = len(todo) - len(failures)
    invocation = {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "cells": len(cells),
                  "cells_before": len(cells) - len(todo), "cells_run": ran, "cells_failed": len(failures),
                  "wall_s": wall, "ray_cpus": cpus, "address": address,
                  "cells_per_hour": 3600 * ran / wall if ran else None}
    record = write_report(spec, store, cells, finished, invocation, store.log_invocation(invocation))
    if failures:
        cell, line = failures[0]
        where = ", ".join(f"{k}={v}" for k, v in cell.params.items())
        raise SweepError(f"{len(failures)} of {len(todo)} cells failed (a rerun retries them); first, {where}: {line}")
    return record
