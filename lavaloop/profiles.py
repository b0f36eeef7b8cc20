"""Chip profiles: the fixed-point rules and limits of a target chip, as data."""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from lavaloop.errors import ProfileError


@dataclass(frozen=True)
class ChipProfile:
    """Numbers that describe a fixed-point chip; `neurons_per_core` and `fan_in` may be None (unconstrained)."""

    name: str
    weight_bits: int                 # signed weight mantissa width
    weight_exp_min: int              # per-layer weight exponent range (weight = mant * 2**exp)
    weight_exp_max: int
    state_bits: int                  # membrane potential / current width
    input_bits: int                  # graded-spike payload width of the input layer
    threshold_bits: int              # target resolution of the threshold (vth ~ 2**threshold_bits)
    per_neuron_threshold: bool = False   # thresholds are per-neuron parameters
    message_bits: int = 16           # graded-spike payload width between layers (sigma-delta)
    neurons_per_core: int | None = None
    fan_in: int | None = None
    description: str = ""

    kind = "fixed_point"

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict):
        return _from_dict(cls, d)


@dataclass(frozen=True)
class MixedSignalProfile:
    """An analog/mixed-signal chip (DYNAP-SE family): shared weights, few levels, mismatch.

    Neurons are leaky integrate-and-fire with an exponential (DPI) synapse, simulated at
    `dt_ms`: `tau_syn_ms` is the slow excitatory type (NMDA, the dreaming agent's),
    `tau_syn_fast_ms` the fast ones (AMPA, GABA_A, mapped DQNs'); the threshold is 1 in
    units of the synaptic current. Device mismatch scales every neuron's threshold, time
    constants and synaptic gain (and a mapped network's shared weight currents) by
    1 + N(0, mismatch_sigma), frozen per chip instance (a seed). Weights: a connection of multiplicity m has weight
    m * the core's shared weight; `repeated_synapses` chips build it from m 1-bit synapses
    (each uses one of the `fan_in` entries), others store m as one code < `weight_levels`.
    """

    name: str
    neurons_per_core: int
    cores_per_chip: int
    fan_in: int                     # input synapses (CAM entries) per neuron
    synapse_types: int              # synapse types per neuron, each with one shared weight per core
    weight_levels: int              # distinct weight values of one synapse (2 = on/off)
    repeated_synapses: bool         # multiplicity m uses m synapse entries
    dt_ms: float
    tau_mem_ms: float
    tau_syn_ms: float
    refractory_ms: float
    mismatch_sigma: float           # coefficient of variation of every analog parameter
    noise_sigma: float = 0.0        # membrane noise per step, in threshold units
    tau_syn_fast_ms: float = 5.0    # the fast synapse types (AMPA, GABA_A) a mapped DQN uses
    description: str = ""

    kind = "mixed_signal"

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict):
        return _from_dict(cls, d)


def _from_dict(cls, d: dict):
    d = {k: v for k, v in d.items() if k != "kind"}
    required = [f.name for f in fields(cls) if f.default is MISSING]
    missing = [k for k in required if k not in d]
    if missing:
        raise ProfileError(f"profile {d.get('name', '?')!r} is missing fields: {', '.join(missing)}")
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ProfileError(f"profile {d.get('name', '?')!r} has unknown fields: {', '.join(unknown)}")
    return cls(**d)


PROFILES = {
    "loihi2": ChipProfile(
        name="loihi2", weight_bits=8, weight_exp_min=-8, weight_exp_max=7, state_bits=24,
        input_bits=16, threshold_bits=12, per_neuron_threshold=True, neurons_per_core=8192,
        description="Intel Loihi 2: 8-bit weight mantissa with a per-layer exponent, "
                    "24-bit neuron states, graded spikes, per-neuron thresholds"),
    "dynapse1": MixedSignalProfile(
        name="dynapse1", neurons_per_core=256, cores_per_chip=4, fan_in=64, synapse_types=4,
        weight_levels=2, repeated_synapses=True, dt_ms=1.0, tau_mem_ms=20.0, tau_syn_ms=50.0,
        refractory_ms=1.0, mismatch_sigma=0.2,
        description="DYNAP-SE1: 4 cores x 256 AdExp/ExLIF neurons per chip, 64 1-bit CAM synapses "
                    "per neuron, weights shared per core, mismatch 1 + N(0, 0.2)"),
    "dynapse2": MixedSignalProfile(
        name="dynapse2", neurons_per_core=256, cores_per_chip=4, fan_in=64, synapse_types=4,
        weight_levels=16, repeated_synapses=False, dt_ms=1.0, tau_mem_ms=20.0, tau_syn_ms=50.0,
        refractory_ms=1.0, mismatch_sigma=0.1,
        description="DYNAP-SE2: 4 cores x 256 neurons, 64 synapses per neuron with 4-bit weights "
                    "from 4 shared bit-currents per core, mismatch 1 + N(0, 0.1)"),
}


PROFILE_KINDS = {cls.kind: cls for cls in (ChipProfile, MixedSignalProfile)}


def profile_from_dict(d: dict) -> ChipProfile | MixedSignalProfile:
    """A profile from its `to_dict()` form (its `kind` picks the schema)."""
    kind = d.get("kind", ChipProfile.kind)
    if kind not in PROFILE_KINDS:
        raise ProfileError(f"unknown profile kind {kind!r} (known: {', '.join(PROFILE_KINDS)})")
    return PROFILE_KINDS[kind].from_dict(d)


def load_profile(name_or_path: str) -> ChipProfile | MixedSignalProfile:
    """A built-in profile by name, or a profile JSON file (its `kind` picks the schema)."""
    if name_or_path in PROFILES:
        return PROFILES[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        try:
            return profile_from_dict(json.loads(path.read_text()))
        except (ValueError, AttributeError) as exc:
            raise ProfileError(f"{path}: not a valid profile JSON file ({exc})") from exc
    raise ProfileError(f"unknown chip profile {name_or_path!r} (known: {', '.join(sorted(PROFILES))})")
