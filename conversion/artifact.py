"""The artifact: one HDF5 file, the contract between conversion and deployment.

Layout (lava-dl netx conventions, plus what deployment needs):

    /                      attrs: format="lavaloop-artifact", format_version, manifest (JSON)
    /layer/{i}/            type="dense", shape=[n_out], weight (int mantissa, (out, in)), weight_exp, bias
                           or type="conv", shape=[O, Ho, Wo], weight ((O, C, kh, kw)), weight_exp,
                           bias (per channel), stride, inShape=[C, H, W] (valid padding)
    /layer/{i}/neuron/     type="IF", vThMant, vInit (per neuron; per channel for conv), vDecay=0,
                           iDecay=4096, refDelay=0, reset="subtract"
    /source/{i}/           weight, bias (, stride, inShape): the float source network, for fidelity

A GRSN policy (root attr network="grsn", see conversion.grsn) stores its fixed-point stages
instead of IF layers:

    /stage/{i}/            attrs kind ("dense" | "grsn"), name and the integer parameters;
                           datasets weight, bias (dense) or w_f, b_f, w_c, b_c, table (grsn)
    /source/               the float policy's state dict (one dataset per tensor)

The manifest holds the env spec and observation shape, action map, T, readout,
normalization statistics, profile, quantization report, source checkpoint hash and
the lavaloop version. Writes are atomic; loading validates everything.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import h5py
import numpy as np

from conversion.envs import EnvSpec, game, is_atari
from conversion.errors import ArtifactError
from conversion.network import ConvLayer, DenseLayer, Layer
from conversion.profiles import ChipProfile
from conversion.quantize import QuantizedLayer

FORMAT = "lavaloop-artifact"
FORMAT_VERSION = 4          # 2: convolutional layers; 3: the `network` attribute, GRSN policies; 4: continuous GRSN
READOUTS = ("robust", "spike_count")
MANIFEST_KEYS = ("env", "obs_shape", "n_actions", "action_map", "timesteps", "readout",
                 "input_scale_bits", "epsilon", "normalization", "profile", "quantization",
                 "source", "lavaloop_version")


@contextlib.contextmanager
def atomic_h5(path: str | Path, network: str, manifest: dict):
    """An HDF5 file with the artifact header, moved to `path` only once completely written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".h5.tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"], f.attrs["format_version"] = FORMAT, FORMAT_VERSION
            f.attrs["network"], f.attrs["manifest"] = network, json.dumps(manifest)
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_artifact(path: str | Path, kind: type | None = None):
    """Load and validate an artifact: of class `kind`, or of whichever network the file holds."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no such artifact file: {path}")
    try:
        with h5py.File(path, "r") as f:
            what = path.name
            if f.attrs.get("format") != FORMAT:
                raise ArtifactError(f"{what}: not a lavaloop artifact (no '{FORMAT}' marker)")
            ver = int(f.attrs.get("format_version", -1))
            if ver != FORMAT_VERSION:
                raise ArtifactError(f"{what}: artifact format version {ver}, this lavaloop reads {FORMAT_VERSION}")
            network = f.attrs.get("network")
            classes = {c.network: c for c in (Artifact, GRSNArtifact)}
            if network not in classes:
                raise ArtifactError(f"{what}: unknown network kind {network!r}")
            if kind is not None and classes[network] is not kind:
                raise ArtifactError(f"{what}: holds a {network!r} network, expected {kind.network!r}")
            cls = classes[network]
            manifest = json.loads(f.attrs["manifest"])
            missing = [k for k in cls.manifest_keys if k not in manifest]
            if missing:
                raise ArtifactError(f"{what}: manifest lacks {', '.join(missing)}")
            return cls._read(f, what, manifest)
    except ArtifactError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ArtifactError(f"{path.name}: corrupted or not a lavaloop artifact ({exc})") from exc


def lavaloop_version() -> str:
    try:
        return version("lavaloop")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class Artifact:
    """A rate-coded IF network (a converted DQN)."""

    network = "if"
    manifest_keys = MANIFEST_KEYS
    manifest: dict
    layers: list[QuantizedLayer]
    source: list[Layer]

    @property
    def timesteps(self) -> int:
        return int(self.manifest["timesteps"])

    @property
    def profile(self) -> ChipProfile:
        return ChipProfile.from_dict(self.manifest["profile"])

    def with_env(self, env_id: str | None = None, sticky: float | None = None) -> "Artifact":
        """This artifact deployed on another environment id and/or sticky-action probability.

        The preprocessing stays; an ALE artifact only moves between versions of its own game.
        """
        spec = EnvSpec.from_dict(self.manifest["env"])
        new_id = env_id or spec.id
        if spec.atari is not None:
            if not is_atari(new_id) or game(new_id) != game(spec.id):
                raise ArtifactError(f"artifact was converted for {spec.id}; {new_id} is a different game")
            pre = spec.atari if sticky is None else replace(spec.atari, repeat_action_probability=sticky)
            spec = replace(spec, id=new_id, atari=pre)
        elif sticky is not None:
            raise ArtifactError(f"sticky actions apply to ALE games only, not {spec.id}")
        else:
            spec = replace(spec, id=new_id)
        return Artifact({**self.manifest, "env": spec.to_dict()}, self.layers, self.source)

    def save(self, path: str | Path) -> None:
        """Write atomically: a half-written file never appears at `path`."""
        with atomic_h5(path, self.network, self.manifest) as f:
            for i, q in enumerate(self.layers):
                g = f.create_group(f"layer/{i}")
                g["type"] = "conv" if q.is_conv else "dense"
                g["weight"], g["weight_exp"], g["bias"] = q.weight, q.weight_exp, q.bias
                g["shape"] = list(q.out_shape)
                if q.is_conv:
                    g["stride"], g["inShape"] = q.stride, list(q.in_shape)
                g.attrs["name"] = q.name
                n = g.create_group("neuron")
                n["type"], n["vThMant"], n["vDecay"], n["iDecay"], n["refDelay"] = "IF", q.vth, 0, 4096, 0
                n["reset"], n["vInit"] = "subtract", q.v_init
            for i, s in enumerate(self.source):
                g = f.create_group(f"source/{i}")
                g["weight"], g["bias"] = s.weight, s.bias
                if isinstance(s, ConvLayer):
                    g["stride"], g["inShape"] = s.stride, list(s.in_shape)
                g.attrs["name"] = s.name

    @classmethod
    def load(cls, path: str | Path) -> "Artifact":
        return read_artifact(path, cls)

    @classmethod
    def _read(cls, f: h5py.File, what: str, manifest: dict) -> "Artifact":
        layers, source = [], []
        for i in range(len(f["layer"])):
            g = f[f"layer/{i}"]
            kind = g["type"][()].decode()
            if kind not in ("dense", "conv") or g["neuron/type"][()].decode() != "IF":
                raise ArtifactError(f"{what}: layer {i} is not a dense or conv IF layer")
            conv = (int(g["stride"][()]), tuple(int(n) for n in g["inShape"][()])) if kind == "conv" else (None, None)
            layers.append(QuantizedLayer(g.attrs["name"], g["weight"][()], int(g["weight_exp"][()]),
                                         g["bias"][()].astype(np.int64),
                                         np.asarray(g["neuron/vThMant"][()], np.int64),
                                         np.asarray(g["neuron/vInit"][()], np.int64), *conv))
        for i in range(len(f["source"])):
            g = f[f"source/{i}"]
            if "stride" in g:
                source.append(ConvLayer(g.attrs["name"], g["weight"][()], g["bias"][()], int(g["stride"][()]),
                                        tuple(int(n) for n in g["inShape"][()])))
            else:
                source.append(DenseLayer(g.attrs["name"], g["weight"][()], g["bias"][()]))
        art = cls(manifest, layers, source)
        art.validate(what)
        return art

    def validate(self, what: str = "artifact") -> None:
        """Check internal consistency; raise ArtifactError naming the first problem."""
        m = self.manifest
        if not self.layers or len(self.layers) != len(self.source):
            raise ArtifactError(f"{what}: {len(self.layers)} layers but {len(self.source)} source layers")
        n_in = int(np.prod(m["obs_shape"]))
        for i, (q, s) in enumerate(zip(self.layers, self.source)):
            if (q.weight.shape != s.weight.shape or q.in_size != n_in or q.bias.shape != (q.weight.shape[0],)
                    or q.is_conv != isinstance(s, ConvLayer) or (q.is_conv and q.weight.shape[1] != q.in_shape[0])):
                raise ArtifactError(f"{what}: layer {i} has inconsistent shapes "
                                    f"(weight {q.weight.shape}, bias {q.bias.shape}, expected {n_in} inputs)")
            if q.vth.shape != q.bias.shape or q.v_init.shape != q.bias.shape or q.vth.min() < 1:
                raise ArtifactError(f"{what}: layer {i} needs one threshold >= 1 and one "
                                    "initial potential per neuron (per channel for a convolution)")
            n_in = q.out_size
        if self.layers[-1].is_conv or len(set(self.layers[-1].vth.tolist())) != 1:
            raise ArtifactError(f"{what}: output neurons must share one threshold (comparable readouts)")
        if n_in != m["n_actions"] or len(m["action_map"]) != m["n_actions"]:
            raise ArtifactError(f"{what}: output layer has {n_in} neurons for {m['n_actions']} actions")
        if m["readout"] not in READOUTS:
            raise ArtifactError(f"{what}: unknown readout {m['readout']!r}")
        if int(m["timesteps"]) < 1:
            raise ArtifactError(f"{what}: timesteps must be >= 1")
        prof = self.profile
        # processes.dynamics.dense computes in float64: exact only within these widths
        fan_in = max(int(np.prod(q.weight.shape[1:])) for q in self.layers)
        if prof.weight_bits > 16 or max(prof.state_bits, prof.input_bits) > 24 or fan_in >= 1 << 13:
            raise ArtifactError(f"{what}: profile {prof.name!r} / fan-in {fan_in} exceed the exact "
                                "arithmetic range (weights <= 16 bits, states and inputs <= 24 bits, "
                                "fan-in < 8192)")
        mant_max = (1 << (prof.weight_bits - 1)) - 1
        for i, q in enumerate(self.layers):
            if np.abs(q.weight.astype(np.int64)).max() > mant_max or not (
                    prof.weight_exp_min <= q.weight_exp <= prof.weight_exp_max):
                raise ArtifactError(f"{what}: layer {i} weights break profile {prof.name!r} "
                                    f"({prof.weight_bits}-bit mantissa, exponent "
                                    f"{prof.weight_exp_min}..{prof.weight_exp_max})")


GRSN_MANIFEST_KEYS = ("env", "obs_shape", "n_actions", "continuous", "action_map", "input_scale_bits", "epsilon",
                      "policy", "profile", "quantization", "source", "lavaloop_version")
STAGE_ARRAYS = {"dense": ("weight", "bias", "out_shift"),
                "grsn": ("w_f", "b_f", "shift_f", "w_c", "b_c", "shift_c", "table")}


@dataclass
class GRSNArtifact:
    """A GRSN policy as fixed-point stages (conversion.grsn) plus its float source."""

    network = "grsn"
    manifest_keys = GRSN_MANIFEST_KEYS
    manifest: dict
    stages: list[dict]
    source: dict[str, np.ndarray]

    @property
    def profile(self) -> ChipProfile:
        return ChipProfile.from_dict(self.manifest["profile"])

    def save(self, path: str | Path) -> None:
        with atomic_h5(path, self.network, self.manifest) as f:
            for i, st in enumerate(self.stages):
                g = f.create_group(f"stage/{i}")
                for k, val in st.items():
                    if k in STAGE_ARRAYS[st["kind"]]:
                        g[k] = val
                    else:
                        g.attrs[k] = val
            src = f.create_group("source")
            for k, val in self.source.items():
                src[k] = val

    @classmethod
    def load(cls, path: str | Path) -> "GRSNArtifact":
        return read_artifact(path, cls)

    @classmethod
    def _read(cls, f: h5py.File, what: str, manifest: dict) -> "GRSNArtifact":
        stages = []
        for i in range(len(f["stage"])):
            g = f[f"stage/{i}"]
            st = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in g.attrs.items()}
            if st.get("kind") not in STAGE_ARRAYS:
                raise ArtifactError(f"{what}: stage {i} has unknown kind {st.get('kind')!r}")
            st.update({k: g[k][()].astype(np.int64) for k in STAGE_ARRAYS[st["kind"]]})
            stages.append(st)
        source = {k: f["source"][k][()] for k in f["source"]}
        art = cls(manifest, stages, source)
        art.validate(what)
        return art

    def validate(self, what: str = "artifact") -> None:
        """Shapes chain from the input through the stages to the actions, within the profile's widths."""
        m, prof = self.manifest, self.profile
        kinds = [st["kind"] for st in self.stages]
        if len(kinds) < 3 or kinds[0] != "dense" or kinds[1] != "grsn" or "grsn" in kinds[2:]:
            raise ArtifactError(f"{what}: stages {kinds} are not embed, grsn, head...")
        n = int(np.prod(m["obs_shape"])) + int(m["n_actions"]) + 1
        mant_max = (1 << (prof.weight_bits - 1)) - 1
        for i, st in enumerate(self.stages):
            ws = [st["weight"]] if st["kind"] == "dense" else [st["w_f"], st["w_c"]]
            bs = [st["bias"]] if st["kind"] == "dense" else [st["b_f"], st["b_c"]]
            n_in = n if st["kind"] == "dense" else st["n_in"]
            if st["kind"] == "grsn" and not 0 < n_in <= n:
                raise ArtifactError(f"{what}: stage {i} ({st['name']}) takes {n_in} of {n} inputs")
            for w, b in zip(ws, bs):
                if w.ndim != 2 or w.shape[1] != n_in or b.shape != (w.shape[0],):
                    raise ArtifactError(f"{what}: stage {i} ({st['name']}) has weights {w.shape} and bias "
                                        f"{b.shape} for {n_in} inputs")
                if np.abs(w).max(initial=0) > mant_max or w.shape[1] >= 1 << 13:
                    raise ArtifactError(f"{what}: stage {i} ({st['name']}) weights break profile "
                                        f"{prof.name!r} ({prof.weight_bits}-bit mantissa, fan-in < 8192)")
            n = len(bs[0]) + (n - n_in if st["kind"] == "grsn" else 0)
        if n != m["n_actions"] or len(m["action_map"]) != (0 if m["continuous"] else m["n_actions"]):
            raise ArtifactError(f"{what}: last stage has {n} outputs for {m['n_actions']} actions")
        if max(prof.state_bits, prof.input_bits) > 24:
            raise ArtifactError(f"{what}: profile {prof.name!r} exceeds 24-bit states and payloads")
