"""The mixed-signal artifact (kind "mixed-signal": a DQN mapped onto a DYNAP-SE profile).

Datasets, below the frame of `lavaloop.artifact` (see `conversion.mixed_signal`):

    /input/gain            generator increment per payload unit, per observation entry
    /layer/{i}/            code ((n, n_in + 1) signed level codes, last column the bias
                           generator), core (per neuron), currents ((cores, 2, bits) nominal
                           shared currents per core, type and bit); attrs name, role
    /readout/              weight, bias: the host's integer readout of the last layer's counts
    /source/{i}/           the float source network, for fidelity

The manifest adds T, the input payload's scale and width, the mapping report and the
normalization statistics to the common keys. Chip instances are not stored: `instance`
draws one from a seed.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import h5py
import numpy as np

from lavaloop.artifact import COMMON_KEYS
from lavaloop.conversion.artifact_dqn import ConvertedDQN
from lavaloop.conversion.mixed_signal import ChipLayer, MappedNetwork, bits_of, draw_instance, replicate
from lavaloop.conversion.network import Layer
from lavaloop.errors import ArtifactError
from lavaloop.profiles import MixedSignalProfile


@dataclass
class MixedSignalArtifact(ConvertedDQN):
    """A DQN mapped onto a mixed-signal chip: the mapped network plus the float source."""

    kind = "mixed-signal"
    manifest_keys = COMMON_KEYS + ("timesteps", "input_scale_bits", "input_bits", "mapping", "normalization")
    mapped: MappedNetwork
    source: list[Layer]

    @property
    def timesteps(self) -> int:
        return int(self.manifest["timesteps"])

    @property
    def window(self) -> int:
        """Lava steps per decision: T, one per chip layer, one for the host readout."""
        return self.timesteps + len(self.mapped.layers) + 1

    def instance(self, seed: int | None = None, sigma: float | None = None) -> list[dict]:
        """Every chip layer's parameters on chip instance `seed` (None: the nominal chip) with
        mismatch `sigma` (None: the profile's); see `conversion.mixed_signal.draw_instance`."""
        return draw_instance(self.mapped.layers, self.profile, seed, sigma)

    def with_timesteps(self, timesteps: int) -> MixedSignalArtifact:
        """The artifact deployed with a window of `timesteps` steps per decision instead of the one
        it was trained for; its host readout still reads the old window's counts, so refit it
        (`deploy.mixed_signal.calibrate_instance`) before deciding with it."""
        return replace(self, manifest={**self.manifest, "timesteps": int(timesteps)})

    def replicated(self, replicas: int) -> MixedSignalArtifact:
        """The artifact deployed as `replicas` copies of its chip network, one host readout
        (`conversion.mixed_signal.replicate`; the manifest's mapping report follows)."""
        copies = replicate(self.mapped, replicas, self.profile)
        return replace(self, mapped=copies, manifest={**self.manifest, "mapping": copies.report})

    def _write(self, f: h5py.File) -> None:
        f["input/gain"] = self.mapped.input_gain
        for i, l in enumerate(self.mapped.layers):
            g = f.create_group(f"layer/{i}")
            g["code"], g["core"], g["currents"] = l.code, l.core, l.currents
            g.attrs["name"], g.attrs["role"] = l.name, l.role
        f["readout/weight"], f["readout/bias"] = self.mapped.readout_weight, self.mapped.readout_bias
        self._write_source(f)

    @classmethod
    def _read(cls, f: h5py.File, what: str, manifest: dict) -> MixedSignalArtifact:
        layers = [ChipLayer(g.attrs["name"], g["code"][()].astype(np.int16), g["core"][()].astype(np.int64),
                            g["currents"][()].astype(np.float64), str(g.attrs["role"]))
                  for g in (f[f"layer/{i}"] for i in range(len(f["layer"])))]
        mapped = MappedNetwork(f["input/gain"][()].astype(np.float64), layers,
                               f["readout/weight"][()].astype(np.int64), f["readout/bias"][()].astype(np.int64),
                               manifest["mapping"])
        return cls(manifest, mapped, cls._read_source(f))

    def validate(self, what: str = "artifact") -> None:
        """Shapes chain from the observation to the actions; every layer keeps the profile's limits."""
        prof, m = self.profile, self.manifest
        if not isinstance(prof, MixedSignalProfile):
            raise ArtifactError(f"{what}: a mixed-signal network needs a mixed-signal profile, not {prof.name!r}")
        n_in = 2 * int(np.prod(m["obs_shape"]))
        if len(self.mapped.input_gain) * 2 != n_in:
            raise ArtifactError(f"{what}: {len(self.mapped.input_gain)} input gains for {n_in // 2} "
                                "observation entries")
        bits = bits_of(prof)
        for i, l in enumerate(self.mapped.layers):
            if l.code.shape != (l.size, n_in + 1) or l.core.shape != (l.size,):
                raise ArtifactError(f"{what}: layer {i} has codes {l.code.shape} for {n_in} inputs plus the bias")
            if l.currents.shape[1:] != (2, bits) or l.core.min() < 0 or l.core.max() >= len(l.currents):
                raise ArtifactError(f"{what}: layer {i} has shared currents {l.currents.shape} for its cores "
                                    f"(need (cores, 2, {bits}))")
            if np.bincount(l.core).max() > prof.neurons_per_core:
                raise ArtifactError(f"{what}: layer {i} puts more than {prof.neurons_per_core} neurons on a core")
            used = int(l.synapses(prof.repeated_synapses).max())
            if used > prof.fan_in:
                raise ArtifactError(f"{what}: layer {i} has a neuron with {used} input synapses; "
                                    f"{prof.name}'s fan-in limit is {prof.fan_in}")
            if not prof.repeated_synapses and np.abs(l.code).max() >= prof.weight_levels:
                raise ArtifactError(f"{what}: layer {i} uses codes beyond {prof.name}'s "
                                    f"{prof.weight_levels} levels")
            n_in = l.size
        ro_w, ro_b = self.mapped.readout_weight, self.mapped.readout_bias
        if ro_w.shape != (m["n_actions"], n_in) or len(ro_b) != m["n_actions"]:
            raise ArtifactError(f"{what}: the readout has weights {ro_w.shape} for "
                                f"{m['n_actions']} actions and {n_in} neurons")
        if int(m["timesteps"]) < 1:
            raise ArtifactError(f"{what}: timesteps must be >= 1")

    def describe(self) -> list[str]:
        m, r = self.manifest, self.manifest["mapping"]
        prof = self.profile
        f = r["fan_in"]
        lines = [f"chip       {prof.name}: {r['neurons']} neurons on {r['cores']} cores ({r['chips']} chip"
                 f"{'s' if r['chips'] > 1 else ''} of {prof.cores_per_chip}), {r['synapses']} synapses; "
                 f"mismatch sigma {prof.mismatch_sigma} (pick an instance with run --mismatch-seed)"
                 + (f"; {r['replicas']} copies of the network, one readout" if r.get("replicas", 1) > 1 else ""),
                 f"coding     rate, T={m['timesteps']} steps of {prof.dt_ms} ms per decision from rest, "
                 f"activation 1 = {r['rate']} spikes/step; current = {r['u0']:.2f} + {r['slope']:.2f} z; "
                 f"ON/OFF input generators; readout on the host",
                 f"fan-in     limit {f['limit']}, mode {f['mode']}: " + "; ".join(
                     f"{e['layer']} needs {e['inputs_needed']}" + (
                         f" -> {e['split']['partial_neurons']} partial + {e['split']['relay_neurons']} relay neurons"
                         if "split" in e else f" -> pruned {100 * e['pruned_weight_fraction']:.1f}% of |W|"
                         if "pruned_weight_fraction" in e else "") for e in f["layers"])]
        c = m.get("readout_calibration")
        if c:
            lines.append(f"readout    fitted on the host to the nominal chip's spike counts ({c['observations']} "
                         f"observations): held-out agreement {100 * c['heldout_before']:.1f}% -> "
                         f"{100 * c['heldout_after']:.1f}%")
        t = m.get("mismatch_training")
        if t:
            per_chip = ", readout refitted per instance" if t.get("readout") == "per-chip" else ""
            lines.append(f"trained    through the chip at sigma {t['sigma']}{per_chip} ({t['steps']} steps, "
                         f"{t['seconds']:.0f} s): "
                         f"nominal-chip agreement on held-out observations {100 * t['heldout_before']:.1f}% -> "
                         f"{100 * t['heldout_after']:.1f}%")
        for e in r["layers"]:
            lines.append(f"layer      {e['layer']:<24} {e['role']:<8} {e['neurons']:>6} neurons on "
                         f"{e['cores']:>3} cores,"
                         f" fan-in <= {e['max_fan_in']}, weight error {100 * e['weight_rel_rms_error']:.2f}%")
        return lines
