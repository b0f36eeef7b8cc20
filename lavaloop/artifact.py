"""The artifact schema: one HDF5 file, the contract between conversion and deployment.

Every artifact, whatever its network kind, has this frame:

    /   attrs  format="lavaloop-artifact", format_version, network=<kind>,
               manifest (JSON: env spec, observation shape, actions, profile, source hash,
               lavaloop version, and the kind's own keys), sha256 (digest, see `digest`)

and below it the datasets of its kind (see the kind's class, registered in
`lavaloop.kinds`). Writes are atomic; loading checks the digest before anything else,
then validates the kind's structure and the profile's limits.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import ClassVar

import h5py
import numpy as np

from lavaloop.atomic import atomic_path
from lavaloop.envs import EnvSpec
from lavaloop.errors import ArtifactError
from lavaloop.profiles import ChipProfile, MixedSignalProfile

FORMAT = "lavaloop-artifact"
FORMAT_VERSION = 5   # 2: conv layers; 3: `network`, GRSN; 4: continuous GRSN; 5: sha256 digest
COMMON_KEYS = ("env", "obs_shape", "n_actions", "action_map", "epsilon", "profile", "source", "lavaloop_version")


def lavaloop_version() -> str:
    try:
        return version("lavaloop")
    except PackageNotFoundError:
        return "unknown"


def digest(f: h5py.File) -> str:
    """SHA-256 over every attribute (but the digest itself) and every dataset of the file:
    names, dtypes, shapes and bytes, in sorted order."""
    h = hashlib.sha256()

    def add(name: str, obj) -> None:
        h.update(name.encode())
        for key in sorted(obj.attrs):
            if name == "/" and key == "sha256":
                continue
            h.update(key.encode() + repr(obj.attrs[key]).encode())
        if isinstance(obj, h5py.Dataset):
            data = np.ascontiguousarray(obj[()])
            h.update(f"{data.dtype.str}{data.shape}".encode())
            h.update(data.tobytes())

    add("/", f)
    names: list[str] = []
    f.visit(names.append)
    for name in sorted(names):
        add(name, f[name])
    return h.hexdigest()


@dataclass
class Artifact:
    """Base of every network kind's artifact: a manifest plus the kind's arrays.

    A kind subclass sets `kind` and `manifest_keys` and implements `_write`, `_read`,
    `validate` and `describe`; it is registered in `lavaloop.kinds`.
    """

    kind: ClassVar[str] = ""
    manifest_keys: ClassVar[tuple[str, ...]] = COMMON_KEYS
    manifest: dict

    @property
    def env_spec(self) -> EnvSpec:
        return EnvSpec.from_dict(self.manifest["env"])

    @property
    def env_id(self) -> str:
        return self.manifest["env"]["id"]

    @property
    def profile(self) -> ChipProfile | MixedSignalProfile:
        from lavaloop.profiles import profile_from_dict

        return profile_from_dict(self.manifest["profile"])

    def save(self, path: str | Path) -> None:
        """Write atomically (a half-written file never appears at `path`), with its digest."""
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"], f.attrs["format_version"] = FORMAT, FORMAT_VERSION
                f.attrs["network"], f.attrs["manifest"] = self.kind, json.dumps(self.manifest)
                self._write(f)
                f.attrs["sha256"] = digest(f)

    @classmethod
    def load(cls, path: str | Path) -> Artifact:
        """Read an artifact of this class (any kind when called on the base class)."""
        return read_artifact(path, None if cls is Artifact else cls)

    def describe(self) -> list[str]:
        """Lines for `lavaloop info` below the header."""
        raise NotImplementedError

    def validate(self, what: str = "artifact") -> None:
        """Check internal consistency and the profile's limits; raise ArtifactError naming the first problem."""
        raise NotImplementedError

    def _write(self, f: h5py.File) -> None:
        raise NotImplementedError

    @classmethod
    def _read(cls, f: h5py.File, what: str, manifest: dict) -> Artifact:
        raise NotImplementedError


def read_artifact(path: str | Path, cls: type | None = None) -> Artifact:
    """Load, verify and validate an artifact.

    Parameters
    ----------
    path: the .h5 file.
    cls: expect this artifact class (None: whichever kind the file holds).
    """
    from lavaloop.kinds import artifact_class, known_kinds

    path = Path(path)
    what = path.name
    if not path.is_file():
        raise ArtifactError(f"no such artifact file: {path}")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise ArtifactError(f"{what}: not a lavaloop artifact (no '{FORMAT}' marker)")
            ver = int(f.attrs.get("format_version", -1))
            if ver != FORMAT_VERSION:
                raise ArtifactError(f"{what}: artifact format version {ver}, this lavaloop reads "
                                    f"{FORMAT_VERSION}; convert the checkpoint again")
            if f.attrs.get("sha256") != digest(f):
                raise ArtifactError(f"{what}: digest mismatch: the file was modified or corrupted after it was written")
            kind = f.attrs.get("network")
            if kind not in known_kinds():
                raise ArtifactError(f"{what}: unknown network kind {kind!r} (known: {', '.join(known_kinds())})")
            found = artifact_class(kind)
            if cls is not None and found is not cls:
                raise ArtifactError(f"{what}: holds a {kind!r} network, expected {cls.kind!r}")
            manifest = json.loads(f.attrs["manifest"])
            missing = [k for k in found.manifest_keys if k not in manifest]
            if missing:
                raise ArtifactError(f"{what}: manifest lacks {', '.join(missing)}")
            art = found._read(f, what, manifest)
        art.validate(what)
    except ArtifactError:
        raise
    except (OSError, KeyError, IndexError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{what}: corrupted or not a lavaloop artifact ({exc})") from exc
    return art
