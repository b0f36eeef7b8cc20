"""The rate-coded IF network artifact (kind "if": a converted DQN).

Datasets (lava-dl netx conventions, plus what deployment needs), below the frame of
`lavaloop.artifact`:

    /layer/{i}/            type="dense", shape=[n_out], weight (int mantissa, (out, in)), weight_exp, bias
                           or type="conv", shape=[O, Ho, Wo], weight ((O, C, kh, kw)), weight_exp,
                           bias (per channel), stride, inShape=[C, H, W] (valid padding)
    /layer/{i}/neuron/     type="IF", vThMant, vInit (per neuron; per channel for conv), vDecay=0,
                           iDecay=4096, refDelay=0, reset="subtract"
    /source/{i}/           weight, bias (, stride, inShape): the float source network, for fidelity

The manifest adds T, readout, input scale, normalization statistics and the quantization
report to the common keys.
"""
from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from lavaloop.artifact import COMMON_KEYS
from lavaloop.conversion.artifact_dqn import ConvertedDQN
from lavaloop.conversion.dither import widen
from lavaloop.conversion.network import ConvLayer, Layer
from lavaloop.conversion.quantize import QuantizedLayer
from lavaloop.errors import ArtifactError
from lavaloop.fixedpoint import int_max
from lavaloop.options import READOUTS


@dataclass
class IFArtifact(ConvertedDQN):
    """A rate-coded IF network (a converted DQN): quantized layers plus the float source."""

    kind = "if"
    manifest_keys = COMMON_KEYS + ("timesteps", "readout", "input_scale_bits", "normalization", "quantization")
    layers: list[QuantizedLayer]
    source: list[Layer]

    @property
    def timesteps(self) -> int:
        return int(self.manifest["timesteps"])

    def layer_params(self) -> list[dict]:
        """The concrete numbers of every layer, per neuron, as the IF processes and the emulator take them.

        The first layer's exponent also undoes the input payload scale; its inputs are payloads
        of up to `input_bits` bits, every other layer's are spikes.
        """
        prof = self.profile
        out = []
        for i, q in enumerate(self.layers):
            p = {"name": q.name, "weight": q.weight, "weight_exp": q.weight_exp, "bias": q.per_neuron(q.bias),
                 "vth": q.per_neuron(q.vth), "v_init": q.per_neuron(q.v_init),
                 "max_input": 1 << (prof.input_bits - 1) if i == 0 else 1}
            if q.is_conv:
                p["stride"], p["in_shape"] = q.stride, q.in_shape
            out.append(p)
        out[0]["weight_exp"] -= int(self.manifest["input_scale_bits"])
        return out

    def _write(self, f: h5py.File) -> None:
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
        self._write_source(f)

    @classmethod
    def _read(cls, f: h5py.File, what: str, manifest: dict) -> IFArtifact:
        layers = []
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
        return cls(manifest, layers, cls._read_source(f))

    def validate(self, what: str = "artifact") -> None:
        """Check internal consistency; raise ArtifactError naming the first problem."""
        m = self.manifest
        if not self.layers or len(self.layers) != len(self.source):
            raise ArtifactError(f"{what}: {len(self.layers)} layers but {len(self.source)} source layers")
        n_in = int(np.prod(m["obs_shape"]))
        copies = m.get("dither", 1)
        if not isinstance(copies, int) or copies < 1:
            raise ArtifactError(f"{what}: dither must be an integer >= 1, got {copies!r}")
        for i, (q, s) in enumerate(zip(self.layers, widen(self.source, copies))):
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
        mant_max = int_max(prof.weight_bits)
        for i, q in enumerate(self.layers):
            if np.abs(q.weight.astype(np.int64)).max() > mant_max or not (
                    prof.weight_exp_min <= q.weight_exp <= prof.weight_exp_max):
                raise ArtifactError(f"{what}: layer {i} weights break profile {prof.name!r} "
                                    f"({prof.weight_bits}-bit mantissa, exponent "
                                    f"{prof.weight_exp_min}..{prof.weight_exp_max})")

    def describe(self) -> list[str]:
        m, n = self.manifest, self.manifest["normalization"]
        scales = ", ".join(f"{min(s):.3g}..{max(s):.3g}" if isinstance(s, list) else f"{s:.3g}" for s in n["scales"])
        lines = [f"coding     rate-coded IF, T={m['timesteps']} steps per decision, readout={m['readout']}, "
                 f"input payload obs*2^{m['input_scale_bits']}, epsilon {m['epsilon']}",
                 f"normalize  {n.get('mode', 'layer')}-wise, percentile {n['percentile']} over {n['calib_steps']} "
                 f"calibration steps; scales {scales}",
                 f"ceiling    the T -> infinity limit agrees with the source on "
                 f"{100 * m['rate_limit_agreement']:.1f}% of calibration observations"]
        if m.get("dither", 1) > 1:
            k = m["dither"]
            lines.append(f"dither     {k} copies of every hidden neuron, started 1/{k} threshold apart: rates resolved "
                         f"as in {k * m['timesteps']} steps, in {m['timesteps']}")
        auto = m.get("timesteps_auto")
        if auto:
            curve = ", ".join(f"T={t}: {a:.3f}" for t, a in auto["curve"].items())
            lines.append(f"T auto     T={auto['chosen']}: first to reach {auto['goal']:.3f} agreement on "
                         f"{auto['observations']} held-out observations (ceiling {auto['ceiling']:.3f}); {curve}")
        d = m.get("distillation")
        lines += self.distillation_line(f"the T={m['timesteps']} {d['config']['model']} model" if d else "")
        lines += self.adaptation_line()
        for q, r in zip(self.layers, m["quantization"]):
            kind = self.layer_kind(q)
            lines.append(f"layer      {r['layer']:<24} {kind:<11} {q.in_size:>6} -> {q.out_size:<6} IF "
                         f"vth={q.vth.min()}..{q.vth.max()} exp={q.weight_exp} "
                         f"weight error {100 * r['weight_rel_rms_error']:.2f}%")
        return lines
