"""Chip profiles: the fixed-point rules and limits of a target chip, as data."""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from conversion.errors import ProfileError


@dataclass(frozen=True)
class ChipProfile:
    """Numbers that describe a chip. `None` means unconstrained."""

    name: str
    weight_bits: int | None          # signed weight mantissa width
    weight_exp_min: int              # per-layer weight exponent range (weight = mant * 2**exp)
    weight_exp_max: int
    state_bits: int                  # membrane potential / current width
    input_bits: int                  # graded-spike payload width of the input layer
    threshold_bits: int              # target resolution of the threshold (vth ~ 2**threshold_bits)
    per_neuron_threshold: bool = False   # thresholds are per-neuron parameters
    neurons_per_core: int | None = None
    fan_in: int | None = None
    description: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ChipProfile":
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
}


def load_profile(name_or_path: str) -> ChipProfile:
    """A built-in profile by name, or a profile JSON file."""
    if name_or_path in PROFILES:
        return PROFILES[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        try:
            return ChipProfile.from_dict(json.loads(path.read_text()))
        except ValueError as exc:
            raise ProfileError(f"{path}: not a valid profile JSON file ({exc})") from exc
    raise ProfileError(f"unknown chip profile {name_or_path!r} (known: {', '.join(sorted(PROFILES))})")
