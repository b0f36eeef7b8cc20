"""The artifact: one HDF5 file, the contract between conversion and deployment.

Layout (lava-dl netx conventions, plus what deployment needs):

    /                      attrs: format="lavaloop-artifact", format_version, manifest (JSON)
    /layer/{i}/            type="dense", shape=[n_out], weight (int mantissa, (out, in)), weight_exp, bias
                           or type="conv", shape=[O, Ho, Wo], weight ((O, C, kh, kw)), weight_exp,
                           bias (per channel), stride, inShape=[C, H, W] (valid padding)
    /layer/{i}/neuron/     type="IF", vThMant, vInit (per neuron; per channel for conv), vDecay=0,
                           iDecay=4096, refDelay=0, reset="subtract"
    /source/{i}/           weight, bias (, stride, inShape): the float source network, for fidelity

The manifest holds the env spec and observation shape, action map, T, readout,
normalization statistics, profile, quantization report, source checkpoint hash and
the lavaloop version. Writes are atomic; loading validates everything.
"""
from __future__ import annotations

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
FORMAT_VERSION = 2          # 2: convolutional layers
READOUTS = ("robust", "spike_count")
MANIFEST_KEYS = ("env", "obs_shape", "n_actions", "action_map", "timesteps", "readout",
                 "input_scale_bits", "epsilon", "normalization", "profile", "quantization",
                 "source", "lavaloop_version")


def lavaloop_version() -> str:
    try:
        return version("lavaloop")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class Artifact:
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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".h5.tmp", dir=path.parent)
        os.close(fd)
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = FORMAT
                f.attrs["format_version"] = FORMAT_VERSION
                f.attrs["manifest"] = json.dumps(self.manifest)
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
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def load(cls, path: str | Path) -> "Artifact":
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"no such artifact file: {path}")
        try:
            with h5py.File(path, "r") as f:
                return cls._read(f, path.name)
        except ArtifactError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{path.name}: corrupted or not a lavaloop artifact ({exc})") from exc

    @classmethod
    def _read(cls, f: h5py.File, what: str) -> "Artifact":
        if f.attrs.get("format") != FORMAT:
            raise ArtifactError(f"{what}: not a lavaloop artifact (no '{FORMAT}' marker)")
        ver = int(f.attrs.get("format_version", -1))
        if ver != FORMAT_VERSION:
            raise ArtifactError(f"{what}: artifact format version {ver}, this lavaloop reads {FORMAT_VERSION}")
        manifest = json.loads(f.attrs["manifest"])
        missing = [k for k in MANIFEST_KEYS if k not in manifest]
        if missing:
            raise ArtifactError(f"{what}: manifest lacks {', '.join(missing)}")
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
