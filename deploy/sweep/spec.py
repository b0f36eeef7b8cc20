"""Sweep specs: a TOML file that names the sources, the fixed options and the grid axes,
expanded into cells.

    name = "cartpole"                       # optional; default: the file's stem
    task = "run"                            # "run": convert (if needed) and run; "dream"; "train"
    checkpoint = "../checkpoints/cartpole_dqn.pt"   # or a list; or artifact = "policy.h5"
    env = "CartPole-v1"                     # with checkpoints
    out = "../results/sweeps/cartpole"      # optional; default: a folder named `name` beside the file
    record = ["agreement", "mean_return"]   # metrics (dotted paths into each cell's record)

    [convert]                               # fixed options of every cell (task "run")
    calib_steps = 5000
    [run]
    episodes = 20
    backend = "emulator"

    [grid]                                  # the axes; [[grid]] tables: a union of grids
    percentile = [99.0, 99.9]
    timesteps = [8, 16, 32]

    [plot]                                  # optional
    x = "timesteps"
    log_x = true

    [summary]                               # optional: distributions over chip instances
    over = "mismatch_seed"

An axis is any option of the task: for "run", a `lavaloop.ConvertOptions` (or the GRSN
kind's) field or a `lavaloop.RunSettings` field. A name both take (timesteps, readout,
epsilon, env_params) is a run setting, which keeps one artifact for all its values; write
`convert.timesteps` to convert at each value instead. For "dream", any `lavaloop.DreamConfig`
field and `backend`. For "train" (a recurrent policy from scratch, `lavaloop.trainers.recurrent`),
env, cell, seed, eval_every, weight_bits and any of its `Config` fields. Relative paths are
relative to the spec file.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import tomli

from lavaloop.errors import LavaloopError

TASKS = ("run", "dream", "train")
TABLES = ("convert", "run", "dream", "train")
TOP_LEVEL = {"name", "task", "checkpoint", "artifact", "env", "out", "record", *TABLES, "grid", "plot", "summary"}
DEFAULT_RECORD = {"run": ["agreement", "mean_return", "normalized_score", "spikes_per_decision"],
                  "dream": ["curve.final_mean", "curve.first_game_mean_ge_-0.5"],
                  "train": ["best_eval", "final_eval"]}


class SpecError(LavaloopError):
    """A sweep spec that cannot be run as written."""


def digest(obj) -> str:
    """A short, stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Source:
    """A checkpoint to convert or an artifact to run (task "run")."""

    path: Path
    is_artifact: bool
    sha256: str

    @property
    def label(self) -> str:
        return self.path.name


@dataclass
class Cell:
    """One point of the grid.

    Parameters
    ----------
    params: the axis values that vary between cells (what tables and plots show).
    source: the checkpoint or artifact (None for tasks "dream" and "train").
    convert: conversion options (None: the source is an artifact, or another task).
    options: run settings (task "run"), DreamConfig fields plus backend ("dream"), or the
        trainer's options ("train").
    """

    params: dict
    source: Source | None
    convert: dict | None
    options: dict
    env: str | None = None
    key: str = field(init=False)

    def __post_init__(self):
        self.key = digest({"source": self.source and self.source.sha256, "env": self.env, "convert": self.convert,
                           "options": self.options})

    @property
    def conversion_key(self) -> str | None:
        """Cells with the same conversion key share one artifact."""
        if self.convert is None:
            return None
        return digest({"source": self.source.sha256, "env": self.env, "convert": self.convert})


@dataclass
class SweepSpec:
    """A parsed, checked sweep spec (see the module docstring for the TOML layout)."""

    name: str
    task: str
    sources: list[Source]
    env: str | None
    fixed: dict                   # {"convert": {...}, "run": {...}}, {"dream": {...}} or {"train": {...}}
    grids: list[dict]             # axis name -> list of values
    record: list[str]
    plot: dict
    over: str | None
    out: Path
    text: str = ""

    def fingerprint(self) -> dict:
        """What every cell's numbers depend on besides its own axis values; a sweep directory
        resumes only a spec with the same fingerprint."""
        return {"task": self.task, "env": self.env, "fixed": self.fixed,
                "sources": [{"file": s.label, "sha256": s.sha256, "artifact": s.is_artifact} for s in self.sources]}

    @property
    def axes(self) -> dict:
        """Every axis with the values any grid gives it, in first-seen order (sources as "source")."""
        out: dict[str, list] = {}
        if len(self.sources) > 1:
            out["source"] = [s.label for s in self.sources]
        for grid in self.grids:
            for name, values in grid.items():
                seen = out.setdefault(name, [])
                seen += [v for v in values if v not in seen]
        return out

    def cells(self) -> list[Cell]:
        """The grid's cells, in spec order; a cell two grids share, once."""
        cells, keys = [], set()
        for grid in self.grids:
            names = list(grid)
            for source in self.sources or [None]:
                for values in itertools.product(*grid.values()):
                    cell = self._cell(source, dict(zip(names, values)))
                    if cell.key not in keys:
                        keys.add(cell.key)
                        cells.append(cell)
        return cells

    def _cell(self, source: Source | None, point: dict) -> Cell:
        params = ({"source": source.label} if len(self.sources) > 1 else {}) | point
        if self.task != "run":
            return Cell(params, None, None,
                        {**self.fixed[self.task], **{k.rpartition(".")[2]: v for k, v in point.items()}})
        convert, run = dict(self.fixed["convert"]), dict(self.fixed["run"])
        for name, value in point.items():
            table, _, option = name.rpartition(".")
            (convert if (table or axis_table(name)) == "convert" else run)[option] = value
        if source.is_artifact:
            if convert:
                raise SpecError(f"{source.label} is an artifact: it takes no conversion options "
                                f"({', '.join(sorted(convert))})")
            return Cell(params, source, None, run)
        return Cell(params, source, convert, run, env=self.env)


def axis_table(name: str) -> str:
    """Where an unqualified task-"run" axis goes: "run" if `RunSettings` takes it, else "convert"."""
    from lavaloop.options import RunSettings

    return "run" if name in {f.name for f in fields(RunSettings)} else "convert"


def option_names(task: str) -> dict[str, set]:
    """The option names each table of a task takes."""
    from lavaloop.options import ConvertOptions, GRSNConvertOptions, RunSettings

    if task == "dream":
        from lavaloop.deploy.dreaming.agent import DreamConfig

        return {"dream": {f.name for f in fields(DreamConfig)} | {"backend"}}
    if task == "train":
        from lavaloop.deploy.sweep.tasks import TRAIN_OPTIONS
        from lavaloop.trainers.recurrent import Config

        return {"train": {f.name for f in fields(Config)} | set(TRAIN_OPTIONS)}
    return {"convert": {f.name for f in fields(ConvertOptions)} | {f.name for f in fields(GRSNConvertOptions)},
            "run": {f.name for f in fields(RunSettings)}}


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file (one SpecError line for anything wrong, before anything runs).

    Parameters
    ----------
    path: the TOML file.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        raw = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        raise SpecError(f"{path} is not valid TOML ({exc})") from exc
    return parse_spec(raw, path.parent, path.stem, text)


def parse_spec(raw: dict, base: str | Path = ".", default_name: str = "sweep", text: str = "") -> SweepSpec:
    """Check a spec given as a dict (the TOML's tables); relative paths are taken from `base`."""
    base = Path(base)
    unknown = sorted(set(raw) - TOP_LEVEL)
    if unknown:
        raise SpecError(f"unknown spec entry {', '.join(unknown)} (entries: {', '.join(sorted(TOP_LEVEL))})")
    task = raw.get("task", "run")
    if task not in TASKS:
        raise SpecError(f"unknown task {task!r} (choose from {', '.join(TASKS)})")
    names = option_names(task)
    fixed = {table: _table(raw, table, names[table]) for table in names}
    for table in set(TABLES) - set(names):
        if table in raw:
            raise SpecError(f"task {task!r} takes no [{table}] table")
    sources, env = _sources(raw, task, base)
    grids = _grids(raw.get("grid"), names)
    record = raw.get("record", DEFAULT_RECORD[task])
    if not (isinstance(record, list) and record and all(isinstance(m, str) for m in record)):
        raise SpecError("record must be a non-empty list of metric names")
    spec = SweepSpec(name=str(raw.get("name", default_name)), task=task, sources=sources, env=env, fixed=fixed,
                     grids=grids, record=record, plot=_plot(raw.get("plot", {})),
                     over=_over(raw.get("summary", {})),
                     out=Path(os.path.normpath(base / raw.get("out", str(raw.get("name", default_name))))),
                     text=text)
    axes = spec.axes
    if spec.plot.get("x") is not None and spec.plot["x"] not in axes:
        raise SpecError(f"plot x {spec.plot['x']!r} is not an axis (axes: {', '.join(axes)})")
    if spec.over is not None and spec.over not in axes:
        raise SpecError(f"summary over {spec.over!r} is not an axis (axes: {', '.join(axes)})")
    check_cells(spec)
    return spec


def _table(raw: dict, table: str, names: set) -> dict:
    values = raw.get(table, {})
    if not isinstance(values, dict):
        raise SpecError(f"[{table}] must be a table of options")
    unknown = sorted(set(values) - names)
    if unknown:
        raise SpecError(f"[{table}] takes no option {', '.join(unknown)} (options: {', '.join(sorted(names))})")
    return dict(values)


def _sources(raw: dict, task: str, base: Path) -> tuple[list[Source], str | None]:
    if task != "run":
        given = [k for k in ("checkpoint", "artifact", "env") if k in raw]
        if given:
            where = "it plays Pong from RAM" if task == "dream" else "give env in [train] or as an axis"
            raise SpecError(f"task {task!r} takes no top-level {', '.join(given)} ({where})")
        return [], None
    sources = []
    for key in ("checkpoint", "artifact"):
        given = raw.get(key, [])
        for p in [given] if isinstance(given, str) else given:
            path = (base / p).resolve()
            if not path.is_file():
                raise SpecError(f"{key} {p} does not exist ({path})")
            sources.append(Source(path, key == "artifact", file_sha256(path)))
    if not sources:
        raise SpecError("task 'run' needs a checkpoint or an artifact")
    env = raw.get("env")
    if any(not s.is_artifact for s in sources) and not isinstance(env, str):
        raise SpecError("checkpoints need env = \"ENV_ID\" (the environment to convert for)")
    if len({s.label for s in sources}) < len(sources):
        raise SpecError("two sources share a file name; rename one (cells are labelled by file name)")
    return sources, env


def _grids(grid, names: dict[str, set]) -> list[dict]:
    grids = [grid] if isinstance(grid, dict) else grid
    if not grids or not isinstance(grids, list) or not all(isinstance(g, dict) and g for g in grids):
        raise SpecError("the grid is empty: give a [grid] table with at least one axis, e.g. timesteps = [16, 32]")
    known = set().union(*names.values()) | {f"{t}.{n}" for t, ns in names.items() for n in ns}
    for g in grids:
        for name, values in g.items():
            if name not in known:
                raise SpecError(f"unknown axis {name!r} (an axis is an option of {' or '.join(names)})")
            if not isinstance(values, list) or not values:
                raise SpecError(f"axis {name!r} has no values: give a non-empty list")
            if len({json.dumps(v, sort_keys=True) for v in values}) < len(values):
                raise SpecError(f"axis {name!r} repeats a value")
            table, _, option = name.rpartition(".")
            if table and option not in names[table]:
                raise SpecError(f"[{table}] takes no option {option!r}")
    return [dict(g) for g in grids]


def _plot(plot: dict) -> dict:
    if not isinstance(plot, dict) or set(plot) - {"x", "log_x", "metrics"}:
        raise SpecError("[plot] takes x (an axis), log_x (true/false) and metrics (a list)")
    return dict(plot)


def _over(summary: dict) -> str | None:
    if not isinstance(summary, dict) or set(summary) - {"over"}:
        raise SpecError("[summary] takes over = \"AXIS\" (the chip-instance axis, e.g. mismatch_seed)")
    return summary.get("over")


def check_cells(spec: SweepSpec) -> None:
    """Build every cell's option objects, so a bad value is one line before anything runs."""
    from lavaloop.kinds import kind_for_checkpoint, resolve
    from lavaloop.options import RunSettings, from_kwargs

    option_classes = {}
    for cell in spec.cells():
        where = ", ".join(f"{k}={v}" for k, v in cell.params.items())
        try:
            if spec.task != "run":
                (check_dreaming if spec.task == "dream" else check_training)(cell.options)
                continue
            from_kwargs(RunSettings, cell.options, "run")
            if cell.convert is not None:
                src = cell.source.path
                if src not in option_classes:
                    option_classes[src] = resolve(kind_for_checkpoint(src).options)
                from_kwargs(option_classes[src], cell.convert, f"converting {src.name}")
        except LavaloopError as exc:
            raise SpecError(f"cell {where}: {exc}") from exc


def check_dreaming(options: dict) -> None:
    """A dreaming cell's options, as `lavaloop.dream` will take them (the chip profile included)."""
    from lavaloop.deploy.dreaming.agent import dream_config
    from lavaloop.options import BACKENDS, one_of

    opts = dict(options)
    one_of("backend", opts.pop("backend", "emulator"), BACKENDS)
    dream_config(opts).chip_profile()


def check_training(options: dict) -> None:
    """A training cell's options, as `trainers.recurrent` will take them."""
    from lavaloop.conversion.models.grsn import CELLS
    from lavaloop.deploy.sweep.tasks import TRAIN_OPTIONS
    from lavaloop.envs import check_env_id
    from lavaloop.options import at_least, from_kwargs, one_of
    from lavaloop.trainers.recurrent import Config

    one_of("cell", options.get("cell", "grsn"), CELLS)
    check_env_id(options.get("env", "CartPole-V"))
    for name in ("seed", "weight_bits"):
        at_least(name, options.get(name), 0)
    at_least("eval_every", options.get("eval_every"), 1)
    cfg = from_kwargs(Config, {k: v for k, v in options.items() if k not in TRAIN_OPTIONS}, "train")
    at_least("total_steps", cfg.total_steps, 1)
