"""A sweep's folder: what was asked, the shared artifacts, and one file per finished cell.

    OUT/spec.json         the spec's fingerprint (task, env, sources' sha256, fixed options)
    OUT/spec.toml         the spec file as last run
    OUT/artifacts/K.h5    one artifact per conversion (cells that share it read it)
    OUT/cells/K.json      one finished cell: its options and its record
    OUT/runs/K/           a dreaming cell's resumable run directory
    OUT/files/K/          what a training cell made (the policy and its learning curve)
    OUT/invocations.json  each run of the spec that ran cells: cells kept and run, wall time, Ray CPUs
    OUT/results.json, OUT/<name>.png, OUT/report.html   (lavaloop.deploy.sweep.report)

Every file is written atomically, so an interrupted sweep leaves only whole files and a
rerun of the same spec skips the finished cells. Only the driver writes here.
"""
from __future__ import annotations

import json
from pathlib import Path

from lavaloop.atomic import atomic_path, write_json
from lavaloop.deploy.sweep.spec import Cell, SpecError, SweepSpec


def flatten(d: dict, prefix: str = "") -> dict:
    """{"fixed": {"run": {"episodes": 2}}} -> {"fixed.run.episodes": 2} (lists stay values)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class SweepStore:
    """The sweep folder `path` of `spec`.

    Parameters
    ----------
    path: the folder (created on `open`).
    spec: the parsed spec.
    """

    def __init__(self, path: str | Path, spec: SweepSpec):
        self.path, self.spec = Path(path), spec

    def open(self) -> None:
        """Create the folder, or check it holds a sweep of the same fingerprint (a changed grid
        is fine: its new cells run, the others are kept)."""
        fp_file = self.path / "spec.json"
        new = json.loads(json.dumps(self.spec.fingerprint(), default=str))
        if fp_file.exists():
            try:
                old = json.loads(fp_file.read_text())
            except ValueError as exc:
                raise SpecError(f"{fp_file} is not valid JSON ({exc})") from exc
            if old != new:
                a, b = flatten(old), flatten(new)
                diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                raise SpecError(f"{self.path} holds a sweep with a different spec (differs in: {', '.join(diff)}); "
                                "use another --out, or change only the grid")
        else:
            write_json(fp_file, new)
        if self.spec.text:                       # a spec given as a dict has no TOML text
            with atomic_path(self.path / "spec.toml") as tmp:
                tmp.write_text(self.spec.text)

    def artifact_path(self, conversion_key: str) -> Path:
        return self.path / "artifacts" / f"{conversion_key}.h5"

    def run_dir(self, cell: Cell) -> Path:
        return self.path / "runs" / cell.key

    def finished(self) -> dict[str, dict]:
        """Finished cells by key (files that do not parse are ignored: they are rerun)."""
        out = {}
        for f in sorted((self.path / "cells").glob("*.json")):
            try:
                rec = json.loads(f.read_text())
            except ValueError:
                continue
            out[rec["key"]] = rec
        return out

    def log_invocation(self, invocation: dict) -> list[dict]:
        """Append an invocation that ran cells to OUT/invocations.json; all of them."""
        path = self.path / "invocations.json"
        log = json.loads(path.read_text()) if path.exists() else []
        if invocation["cells_run"] or invocation["cells_failed"]:
            log.append(invocation)
            write_json(path, log)
        return log

    def save_artifact(self, conversion_key: str, data: bytes) -> None:
        with atomic_path(self.artifact_path(conversion_key)) as tmp:
            tmp.write_bytes(data)

    def save_cell(self, cell: Cell, record: dict) -> dict:
        """Write a finished cell (and the files it made, under OUT/files/K/); its file's record."""
        record = dict(record)
        files = record.pop("files", {})
        for name, data in files.items():
            with atomic_path(self.path / "files" / cell.key / name) as tmp:
                tmp.write_bytes(data)
        if files:
            record["files"] = [str(Path("files") / cell.key / name) for name in files]
        rec = {"key": cell.key, "params": cell.params, "convert": cell.convert, "options": cell.options, **record}
        write_json(self.path / "cells" / f"{cell.key}.json", rec)
        return rec
