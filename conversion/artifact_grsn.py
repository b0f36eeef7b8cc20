"""The GRSN policy artifact (kind "grsn"): fixed-point stages plus the float policy.

Datasets, below the frame of `lavaloop.artifact`:

    /stage/{i}/   attrs kind ("dense" | "grsn"), name and the integer parameters;
                  datasets weight, bias (dense) or w_f, b_f, w_c, b_c, table (grsn)
    /source/      the float policy's state dict (one dataset per tensor)

The manifest adds the policy config, the continuous flag, the input scale and the
quantization report (fraction bits, weight errors) to the common keys.
"""
from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from lavaloop.artifact import COMMON_KEYS, Artifact
from lavaloop.errors import ArtifactError
from lavaloop.fixedpoint import int_max

STAGE_ARRAYS = {"dense": ("weight", "bias", "out_shift"),
                "grsn": ("w_f", "b_f", "shift_f", "w_c", "b_c", "shift_c", "table")}


@dataclass
class GRSNArtifact(Artifact):
    """A GRSN policy as fixed-point stages (lavaloop.conversion.grsn) plus its float source."""

    kind = "grsn"
    manifest_keys = COMMON_KEYS + ("continuous", "input_scale_bits", "policy", "quantization")
    stages: list[dict]
    source: dict[str, np.ndarray]

    def _write(self, f: h5py.File) -> None:
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
    def _read(cls, f: h5py.File, what: str, manifest: dict) -> GRSNArtifact:
        stages = []
        for i in range(len(f["stage"])):
            g = f[f"stage/{i}"]
            st = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in g.attrs.items()}
            if st.get("kind") not in STAGE_ARRAYS:
                raise ArtifactError(f"{what}: stage {i} has unknown kind {st.get('kind')!r}")
            st.update({k: g[k][()].astype(np.int64) for k in STAGE_ARRAYS[st["kind"]]})
            stages.append(st)
        source = {k: f["source"][k][()] for k in f["source"]}
        return cls(manifest, stages, source)

    def validate(self, what: str = "artifact") -> None:
        """Shapes chain from the input through the stages to the actions, within the profile's widths."""
        m, prof = self.manifest, self.profile
        kinds = [st["kind"] for st in self.stages]
        if len(kinds) < 3 or kinds[0] != "dense" or kinds[1] != "grsn" or "grsn" in kinds[2:]:
            raise ArtifactError(f"{what}: stages {kinds} are not embed, grsn, head...")
        n = int(np.prod(m["obs_shape"])) + int(m["n_actions"]) + 1
        mant_max = int_max(prof.weight_bits)
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
            if st["kind"] == "grsn" and ("interp_bits" not in st or len(st["table"]) % 2 != 1):
                raise ArtifactError(f"{what}: stage {i} ({st['name']}) has a plain sigmoid table; the artifact "
                                    "predates the interpolated one: convert its checkpoint again")
            n = len(bs[0]) + (n - n_in if st["kind"] == "grsn" else 0)
        if n != m["n_actions"] or len(m["action_map"]) != (0 if m["continuous"] else m["n_actions"]):
            raise ArtifactError(f"{what}: last stage has {n} outputs for {m['n_actions']} actions")
        if max(prof.state_bits, prof.input_bits, prof.message_bits) > 24:
            raise ArtifactError(f"{what}: profile {prof.name!r} exceeds 24-bit states and payloads")

    def describe(self) -> list[str]:
        m = self.manifest
        fb = m["quantization"]["frac_bits"]
        actions = (f"{m['n_actions']} continuous action dims (readout tanh(mean))" if m["continuous"]
                   else f"{m['n_actions']} actions")
        lines = [f"coding     GRSN policy ({m['policy']['hidden']} neurons), one SNN step per env step, {actions}",
                 f"scales     2^-k: input {fb['input']}, embeddings {fb['embed']}, GRSN state {fb['state']}, "
                 f"values {fb['q']}"]
        for st in self.stages:
            w = st["weight"] if st["kind"] == "dense" else st["w_f"]
            lines.append(f"stage      {st['name']:<8} {st['kind']:<6} {w.shape[1]:>4} -> {w.shape[0]}")
        return lines
