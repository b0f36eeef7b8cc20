"""The sigma-delta network artifact (kind "sigma-delta": a DQN run with graded spikes).

Datasets, below the frame of `lavaloop.artifact`:

    /layer/{i}/            type="dense", shape=[n_out], weight (int mantissa, (out, in), no exponent), bias
                           or type="conv", shape=[O, Ho, Wo], weight ((O, C, kh, kw)), bias (per channel),
                           stride, inShape=[C, H, W] (valid padding); bias in state units;
                           splitBits (if > 0: weight bits carried by a second synapse per connection)
    /layer/{i}/neuron/     type="SDNN" (hidden; ReLU) or "SIGMA" (output), vth (state units), msgShift (bits),
                           stateScale, inScale (see lavaloop.conversion.sigma_delta)
    /source/{i}/           the float source network, for fidelity

`lavaloop export --format netx` writes the file lava-dl's netx reads (lavaloop.deploy.export).
"""
from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from lavaloop.artifact import COMMON_KEYS
from lavaloop.conversion.artifact_dqn import ConvertedDQN
from lavaloop.conversion.network import ConvLayer, Layer
from lavaloop.conversion.quantize import forward
from lavaloop.conversion.sigma_delta import SDLayer
from lavaloop.errors import ArtifactError
from lavaloop.fixedpoint import int_max


@dataclass
class SDArtifact(ConvertedDQN):
    """A sigma-delta network (a converted DQN with graded spikes): integer layers plus the float source."""

    kind = "sigma-delta"
    manifest_keys = COMMON_KEYS + ("input_scale_bits", "threshold", "normalization", "quantization")
    layers: list[SDLayer]
    source: list[Layer]

    @property
    def window(self) -> int:
        """Lava steps per decision: one per layer, plus the readout's synaptic delay."""
        return len(self.layers) + 1

    def layer_params(self) -> list[dict]:
        """Per-layer numbers as the SigmaDelta processes and the emulator take them."""
        out = []
        for i, q in enumerate(self.layers):
            p = {"name": q.name, "weight": q.weight, "weight_exp": 0, "bias": q.per_neuron(q.bias), "vth": q.vth,
                 "msg_shift": q.msg_shift, "split_bits": q.split_bits,
                 "max_input": self.max_message(i)}
            if q.is_conv:
                p["stride"], p["in_shape"] = q.stride, q.in_shape
            out.append(p)
        return out

    def max_message(self, i: int) -> int:
        """The largest message magnitude layer i may receive (bounds its exact products)."""
        prof = self.profile
        return 1 << (prof.input_bits if i == 0 else prof.message_bits)

    def _write(self, f: h5py.File) -> None:
        last = len(self.layers) - 1
        for i, q in enumerate(self.layers):
            g = f.create_group(f"layer/{i}")
            g["type"] = "conv" if q.is_conv else "dense"
            g["weight"], g["bias"], g["shape"] = q.weight, q.bias, list(q.out_shape)
            if q.split_bits:
                g["splitBits"] = q.split_bits
            if q.is_conv:
                g["stride"], g["inShape"] = q.stride, list(q.in_shape)
            g.attrs["name"] = q.name
            n = g.create_group("neuron")
            n["type"] = "SIGMA" if i == last else "SDNN"
            n["vth"], n["msgShift"], n["stateScale"], n["inScale"] = q.vth, q.msg_shift, q.state_scale, q.in_scale
        self._write_source(f)

    @classmethod
    def _read(cls, f: h5py.File, what: str, manifest: dict) -> SDArtifact:
        layers = []
        n = len(f["layer"])
        for i in range(n):
            g = f[f"layer/{i}"]
            kind, neuron = g["type"][()].decode(), g["neuron/type"][()].decode()
            if kind not in ("dense", "conv") or neuron != ("SIGMA" if i == n - 1 else "SDNN"):
                raise ArtifactError(f"{what}: layer {i} is not a dense or conv sigma-delta layer")
            conv = (int(g["stride"][()]), tuple(int(v) for v in g["inShape"][()])) if kind == "conv" else (None, None)
            layers.append(SDLayer(g.attrs["name"], g["weight"][()], g["bias"][()].astype(np.int64),
                                  int(g["neuron/vth"][()]), float(g["neuron/stateScale"][()]),
                                  float(g["neuron/inScale"][()]), int(g["neuron/msgShift"][()]), *conv,
                                  int(g["splitBits"][()]) if "splitBits" in g else 0))
        return cls(manifest, layers, cls._read_source(f))

    def validate(self, what: str = "artifact") -> None:
        """Check internal consistency and the profile's limits; raise ArtifactError naming the first problem."""
        m, prof = self.manifest, self.profile
        if not self.layers or len(self.layers) != len(self.source):
            raise ArtifactError(f"{what}: {len(self.layers)} layers but {len(self.source)} source layers")
        n_in = int(np.prod(m["obs_shape"]))
        for i, (q, s) in enumerate(zip(self.layers, self.source)):
            if (q.weight.shape != s.weight.shape or q.in_size != n_in or q.bias.shape != (q.weight.shape[0],)
                    or q.is_conv != isinstance(s, ConvLayer) or (q.is_conv and q.weight.shape[1] != q.in_shape[0])):
                raise ArtifactError(f"{what}: layer {i} has inconsistent shapes "
                                    f"(weight {q.weight.shape}, bias {q.bias.shape}, expected {n_in} inputs)")
            if not np.issubdtype(q.weight.dtype, np.integer):
                raise ArtifactError(f"{what}: layer {i} weights are {q.weight.dtype}, not integer mantissas")
            if not 0 <= q.split_bits < prof.weight_bits:
                raise ArtifactError(f"{what}: layer {i} splits {q.split_bits} weight bits (0..{prof.weight_bits - 1})")
            bits = prof.weight_bits + q.split_bits
            if np.abs(q.weight.astype(np.int64)).max() > int_max(bits):
                split = f" and {q.split_bits} split bits" if q.split_bits else ""
                raise ArtifactError(f"{what}: layer {i} weights exceed {bits} bits (profile {prof.name!r}'s "
                                    f"{prof.weight_bits}-bit mantissa{split})")
            if q.vth < 0 or q.state_scale <= 0 or q.in_scale <= 0 or not 0 <= q.msg_shift < 32:
                raise ArtifactError(f"{what}: layer {i} needs a threshold >= 0, positive scales and a "
                                    "message shift in 0..31")
            n_in = q.out_size
        if self.layers[-1].is_conv or n_in != m["n_actions"] or len(m["action_map"]) != m["n_actions"]:
            raise ArtifactError(f"{what}: output layer has {n_in} neurons for {m['n_actions']} actions")
        fan_in = max(int(np.prod(q.weight.shape[1:])) for q in self.layers)
        bits = prof.weight_bits + max(q.split_bits for q in self.layers)
        if bits > 16 or max(prof.input_bits, prof.message_bits) > 24 or fan_in >= 1 << 13:
            raise ArtifactError(f"{what}: profile {prof.name!r} / fan-in {fan_in} exceed the exact arithmetic "
                                "range (weights <= 16 bits, messages <= 24 bits, fan-in < 8192)")

    def describe(self) -> list[str]:
        m = self.manifest
        lines = [f"coding     sigma-delta (graded spikes, {self.profile.message_bits}-bit messages), "
                 f"{self.window} Lava steps per decision, threshold {m['threshold']} (normalized units), "
                 f"input payload obs*2^{m['input_scale_bits']}, delta-encoded, epsilon {m['epsilon']}",
                 *([f"synapses   two {self.profile.weight_bits}-bit synapses per connection, the low one carrying "
                    f"{[q.split_bits for q in self.layers]} bits per layer (--weight-split-bits "
                    f"{m.get('weight_split_bits', 0)})"] if any(q.split_bits for q in self.layers) else []),
                 f"ceiling    the network with a held input agrees with the source on "
                 f"{100 * m['held_input_agreement']:.1f}% of calibration observations"]
        n = m["normalization"]
        if "equalization_ceilings" in n:
            tried = ", ".join(f"{100 * c:.1f}%" for c in n["equalization_ceilings"])
            lines.append(f"equalized  {n['equalization_sweeps']} sweep(s) of cross-layer equalization "
                         f"(0, 1, ... sweeps: {tried} of calibration decisions)")
        if "readout_ceilings" in n:
            c = n["readout_ceilings"]
            lines.append(f"readout    {'centred (advantages)' if n['readout_centred'] else 'Q-values'}: "
                         + ", ".join(f"{'Q-values' if k == 'q_values' else k} {100 * v:.1f}%" for k, v in c.items())
                         + " of calibration decisions at best")
        lines += self.distillation_line("the fixed-point network")
        lines += self.adaptation_line()
        for q, r in zip(self.layers, m["quantization"]):
            kind = self.layer_kind(q)
            lines.append(f"layer      {r['layer']:<24} {kind:<11} {q.in_size:>6} -> {q.out_size:<6} "
                         f"weights +-{r['weight_levels']} ({r['weight_bits_used']} bits), vth={q.vth}, "
                         f"weight error {100 * r['weight_rel_rms_error']:.2f}%")
        return lines


def held_input_values(layers: list[SDLayer], x: np.ndarray) -> np.ndarray:
    """Output values (B, |A|), normalized units, of the network with the observation held: the
    implemented weights as a ReLU network, messages unrounded (their resolution is below
    the weights'). `x` (B, n_in) is the observation."""
    for i, q in enumerate(layers):
        w, b = q.effective()
        x = forward(q, w, b, x)
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x
