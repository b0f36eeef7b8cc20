"""Run directories of resumable jobs (dreaming, adaptation): what was asked, where it stands."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lavaloop.atomic import atomic_path, interrupts_deferred, write_json
from lavaloop.errors import LavaloopError


class RunDirError(LavaloopError):
    """A run directory that cannot be resumed with this configuration."""


class RunDir:
    """config.json (what was asked) and checkpoint.npz (where it stands), both written atomically.

    Parameters
    ----------
    path: the directory (created on `open`).
    config: the run's configuration, JSON-able; a directory holding another is refused.
    defaults: what an option absent from a stored configuration was (the option's default,
        which is what the code did before it existed), nested like `config`; an option
        absent from it counts as None.
    """

    def __init__(self, path: str | Path, config: dict, defaults: dict | None = None):
        self.path, self.config = Path(path), config
        self.defaults = json.loads(json.dumps(defaults or {}))     # compared as stored: lists, not tuples

    def open(self) -> dict | None:
        """Create the directory, or check it holds the same configuration; the last checkpoint or None
        (its arrays, and its `meta` dict)."""
        cfg_file = self.path / "config.json"
        if cfg_file.exists():
            try:
                old = json.loads(cfg_file.read_text())
            except ValueError as exc:
                raise RunDirError(f"{cfg_file} is not valid JSON ({exc})") from exc
            new = json.loads(json.dumps(self.config))
            diff = differences(old, new, self.defaults)
            if diff:
                raise RunDirError(f"{self.path} holds a run with a different configuration (differs in: "
                                  f"{', '.join(diff)}); use another --out or the same options")
        else:
            write_json(cfg_file, self.config)     # creates the folder, or says in one line why it cannot
        ckpt = self.path / "checkpoint.npz"
        if not ckpt.exists():
            return None
        with np.load(ckpt, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
        data["meta"] = json.loads(str(data["meta"]))
        return data

    def save(self, arrays: dict, meta: dict) -> None:
        """Replace the checkpoint: named arrays plus a JSON-able `meta` dict. A Ctrl-C or SIGTERM
        during the write is delivered once the new checkpoint is in place (stopped inside
        `np.savez`, the zip writer would be left open on a closed file)."""
        with interrupts_deferred(), atomic_path(self.path / "checkpoint.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def differences(old: dict, new: dict, defaults: dict) -> list[str]:
    """The (dotted) keys whose values differ between two configurations; a key absent from one
    side counts as its value in `defaults` (None if absent there too)."""
    out = []
    for k in sorted(set(old) | set(new)):
        d = defaults.get(k)
        a, b = old.get(k, d), new.get(k, d)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{sub}" for sub in differences(a, b, d if isinstance(d, dict) else {})]
        elif a != b:
            out.append(k)
    return out
