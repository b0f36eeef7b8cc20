"""The options of `convert` and the settings of `run`: plain dataclasses, checked in one place.

The CLI and the Python API build the same objects, so a bad value gets the same one-line
error (a `LavaloopError`) either way.
"""
from __future__ import annotations

import functools
import numbers
import typing
from dataclasses import dataclass, fields

from lavaloop.errors import LavaloopError

READOUTS = ("robust", "spike_count")
NORMALIZATIONS = ("layer", "channel", "neuron")
V_INITS = ("half", "zero")
BACKENDS = ("lava", "emulator")
DISTILL_MODELS = ("spikes", "staircase")
DISTILL_OBJECTIVES = ("q", "advantage", "both")
CODINGS = ("rate", "sigma-delta")
FAN_IN_MODES = ("split", "prune")
DISTILL_READOUTS = ("shared", "per-chip")
MAX_SPLIT_BITS = 7                      # the low synapse holds them in its 8-bit mantissa
LAYOUTS = ("per-agent", "shared")       # GRSN teams on Lava
READOUT_FITS = ("cv", "fixed")          # run --calibrate-readout: the ridge strength (deploy.mixed_signal)
RATE_ONLY = {"percentile": 99.9, "normalization": "layer", "timesteps": 32, "readout": "robust", "v_init": "half",
             "distill_model": "spikes"}


def number(name: str, value, integer: bool) -> None:
    kind = numbers.Integral if integer else numbers.Real
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise LavaloopError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")


def at_least(name: str, value, low) -> None:
    number(name, value, isinstance(low, int))
    if value is not None and value < low:
        raise LavaloopError(f"{name} must be >= {low}, got {value}")


def within(name: str, value, low, high, low_open: bool = False) -> None:
    number(name, value, integer=False)
    if value is not None and not (low < value <= high if low_open else low <= value <= high):
        bracket = "(" if low_open else "["
        raise LavaloopError(f"{name} must be in {bracket}{low}, {high}], got {value}")


def flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise LavaloopError(f"{name} must be True or False, got {value!r}")


def one_of(name: str, value, choices) -> None:
    if value is not None and value not in choices:
        raise LavaloopError(f"unknown {name} {value!r} (choose from {', '.join(choices)})")


@functools.cache
def takes_none(cls) -> frozenset[str]:
    """The fields of dataclass `cls` whose type admits None (X | None, Optional[X], Any)."""
    hints = typing.get_type_hints(cls)
    return frozenset(f.name for f in fields(cls)
                     if hints[f.name] is typing.Any or type(None) in typing.get_args(hints[f.name]))


def refuse_none(what: str, values: dict, cls) -> None:
    """One line for a None where `cls`'s field type has no None. The range checks skip None,
    which stands for "unset" where the type allows it, so this check comes first."""
    allowed = takes_none(cls)
    for name, value in values.items():
        if value is None and name not in allowed:
            raise LavaloopError(f"{what}{name} needs a value, got None")


def from_kwargs(cls, options: dict, what: str):
    """cls(**options), with unknown names, and None where a field's type has no None, reported in one line."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise LavaloopError(f"{what} takes no option {', '.join(unknown)} (options: {', '.join(sorted(names))})")
    refuse_none(f"{what}: ", options, cls)
    return cls(**options)


@dataclass
class ConvertOptions:
    """Options of a DQN conversion: a rate-coded IF network (the "if" kind) or a sigma-delta network.

    Parameters
    ----------
    coding: "rate" (spike counts over T steps, the paper's) or "sigma-delta" (graded spikes
        carrying ReLU activations and their changes; one Lava step per layer per decision).
        The options percentile, normalization, timesteps, readout, v_init and distill_model
        are the rate coding's.
    delta_threshold: sigma-delta only: a neuron sends a change of its activation once it
        reaches this many normalized units (1 = the largest calibrated activation), >= 0.
    equalize: sigma-delta only: express hidden channels in units that equalize the weight
        ranges of consecutive layers before quantizing (`normalize.equalize`; one layer-wide
        weight scale then wastes fewer levels); off: plain max-normalization.
    centre_readout: sigma-delta only: also try the output layer less its mean over actions
        (`normalize.centre_readout`: the same decisions, advantages instead of Q-values) and
        keep it where it agrees with the source on at least 0.005 more calibration decisions
        (`convert.CENTRE_MARGIN`); off: the Q-value readout.
    message_shift: sigma-delta only: shift every hidden layer's messages by this many bits, in
        0..24 (6: what lava-dl netx builds, needed for `export --format netx`); None: each
        layer's own, which keeps every layer's weights at full precision.
    weight_split_bits: sigma-delta only: K in 0..7. With K > 0 every connection of a layer is
        two 8-bit synapses into the same neuron, the high one with weight exponent k, the low
        one carrying the weight's k low bits: (8 + k)-bit weights for twice the synapses, k
        the largest <= K whose states fit the state width (lavaloop.conversion.sigma_delta);
        0: one synapse per connection.
    percentile: normalization percentile of the activations (100 = max-norm), in (0, 100].
    normalization: "layer" (one lambda per layer, the paper's), "channel" (per conv channel) or
        "neuron" (per conv channel and per dense hidden neuron; with `distill`, docs/conversion.md).
    timesteps: SNN steps per decision (T), >= 1, or "auto": the smallest power of two whose
        agreement with the source on held-out episodes reaches `timesteps_target`
        (lavaloop.conversion.auto_timesteps).
    timesteps_target: the agreement "auto" looks for, in (0, 1] (lowered to the network's
        ceiling minus 0.005 where that is lower).
    readout: "robust" (spike count x threshold + residual potential) or "spike_count".
    profile: chip profile name or JSON file (a fixed-point profile).
    calib_steps: calibration env steps, >= 1. calib_seed: their seed.
    calib_epsilon: exploration during calibration, in [0, 1].
    epsilon: evaluation epsilon recorded for `run` (None: 0.05 for ALE games as in the paper, else 0).
    v_init: membrane potential at each decision's start, "half" (of threshold) or "zero" (the paper's).
    sticky: ALE sticky-action probability in [0, 1] (None: 0, the paper's games).
    max_episode_steps: episode cap in agent steps, >= 1 (None: the env's; ALE games 18,000 as in the paper).
    env_params: numeric attributes of the environment to change (lavaloop.envs.set_physics), e.g.
        {"length": 1.0}: calibrate on, and record in the artifact, a changed task.
    distill: fine-tune the converted network through the chip's arithmetic at T so that it
        decides as the source (lavaloop.conversion.distill); off by default.
    distill_steps: its optimizer steps, >= 1.
    distill_model: what it trains through: "spikes" (simulated IF spike trains; closest to the
        chip, T times the work) or "staircase" (rounded rates; for large T and conv nets).
    distill_objective: what distillation fits: "q" (the source's Q-values and, as strongly,
        its greedy action at a temperature near the decisions' gaps), "advantage" (its
        advantages in units of their RMS, with a cross-entropy at 0.03 of that RMS) or "both"
        (each, keeping the network that decides better on its own episodes; twice the time);
        None: "both" for rate coding, "advantage" for sigma-delta (docs/conversion.md).
    fan_in: mixed-signal profiles only: a neuron with more inputs than the chip's fan-in is
        "split" into partial sums and a relay, or "prune"d to its largest weights
        (lavaloop.conversion.mixed_signal).
    spike_rate: mixed-signal profiles only: spikes per step of a hidden activation 1, in (0, 1]
        (None: `conversion.mixed_signal.RATE`, 0.3); the profile's refractory period bounds it
        (dynapse2: 0.5), and a rate its neurons cannot reach is refused.
    replicas: mixed-signal profiles only: copies (>= 1) of the chip network on their own cores,
        read by one host readout (`conversion.mixed_signal.replicate`; trained as one copy): a
        readout fitted per chip instance (run --calibrate-readout) combines their differently
        mismatched counts (docs/mixed_signal.md).
    distill_mismatch: mixed-signal profiles with distill only: the device mismatch sigma
        (>= 0) sampled while training through the chip (None: the profile's; 0: the nominal
        chip only); lavaloop.conversion.mismatch_training.
    distill_readout: mixed-signal profiles with distill only: "shared" (one host readout trained
        with the chip layers, for the nominal readout) or "per-chip" (the readout refitted on
        every sampled instance inside the loss, for chips deployed with run --calibrate-readout).
    dither: rate coding: K >= 1 copies of every hidden neuron, started at potentials spread over
        one threshold, so that T steps resolve a rate as a K T-step window would (neurons K
        times, synapses between hidden layers K^2 times; lavaloop.conversion.dither); 1: none.
    distill_dagger_rounds: with distill: times (>= 0) the network being trained plays
        `distill_dagger_steps` (>= 1) env steps whose observations, labelled by the source,
        join the training data (DAgger; the conversion rate is measured on its own states).
    """

    coding: str = "rate"
    delta_threshold: float = 0.0
    weight_split_bits: int = 0
    message_shift: int | None = None
    equalize: bool = True
    centre_readout: bool = True
    percentile: float = 99.9
    normalization: str = "layer"
    timesteps: int | str = 32
    timesteps_target: float = 0.99
    readout: str = "robust"
    profile: str = "loihi2"
    calib_steps: int = 5_000
    calib_seed: int = 0
    calib_epsilon: float = 0.05
    epsilon: float | None = None
    v_init: str = "half"
    sticky: float | None = None
    max_episode_steps: int | None = None
    env_params: dict | None = None
    distill: bool = False
    distill_steps: int = 3000
    distill_model: str = "spikes"
    distill_objective: str | None = None
    fan_in: str = "split"
    spike_rate: float | None = None
    replicas: int = 1
    distill_mismatch: float | None = None
    distill_readout: str = "shared"
    distill_dagger_rounds: int = 2
    distill_dagger_steps: int = 2000
    dither: int = 1

    def __post_init__(self):
        refuse_none("", vars(self), type(self))
        flag("distill", self.distill)
        flag("equalize", self.equalize)
        flag("centre_readout", self.centre_readout)
        one_of("fan-in mode", self.fan_in, FAN_IN_MODES)
        within("spike_rate", self.spike_rate, 0, 1, low_open=True)
        at_least("replicas", self.replicas, 1)
        at_least("dither", self.dither, 1)
        if self.dither != 1 and self.coding != "rate":
            raise LavaloopError("dither applies to rate coding only")
        at_least("distill_mismatch", self.distill_mismatch, 0.0)
        if self.distill_mismatch is not None and not self.distill:
            raise LavaloopError("distill_mismatch applies only with distill")
        one_of("distill readout", self.distill_readout, DISTILL_READOUTS)
        if self.distill_readout != "shared" and not self.distill:
            raise LavaloopError("distill_readout applies only with distill")
        if self.distill_objective is not None:
            one_of("distill objective", self.distill_objective, DISTILL_OBJECTIVES)
        within("percentile", self.percentile, 0, 100, low_open=True)
        one_of("normalization", self.normalization, NORMALIZATIONS)
        if self.timesteps != "auto":
            if isinstance(self.timesteps, str):
                raise LavaloopError(f"timesteps must be an integer >= 1 or 'auto', got {self.timesteps!r}")
            at_least("timesteps", self.timesteps, 1)
        elif self.distill:
            raise LavaloopError("--distill trains for one T: give --timesteps a number")
        within("timesteps_target", self.timesteps_target, 0, 1, low_open=True)
        if self.timesteps != "auto" and self.timesteps_target != 0.99:
            raise LavaloopError("timesteps_target applies to --timesteps auto only")
        one_of("readout", self.readout, READOUTS)
        at_least("calib_steps", self.calib_steps, 1)
        at_least("calib_seed", self.calib_seed, 0)
        within("calib_epsilon", self.calib_epsilon, 0, 1)
        within("epsilon", self.epsilon, 0, 1)
        one_of("v_init", self.v_init, V_INITS)
        within("sticky-action probability", self.sticky, 0, 1)
        at_least("max_episode_steps", self.max_episode_steps, 1)
        at_least("distill_steps", self.distill_steps, 1)
        one_of("distill model", self.distill_model, DISTILL_MODELS)
        one_of("coding", self.coding, CODINGS)
        at_least("delta_threshold", self.delta_threshold, 0.0)
        if self.coding == "sigma-delta":
            given = [k for k, v in RATE_ONLY.items() if getattr(self, k) != v]
            if given:
                raise LavaloopError(f"{', '.join(given)} apply to rate coding only, not sigma-delta")
        elif (self.delta_threshold != 0.0 or self.message_shift is not None or not self.equalize
              or self.weight_split_bits != 0 or not self.centre_readout):
            raise LavaloopError("delta_threshold, message_shift, equalize, centre_readout and weight_split_bits "
                                "apply to sigma-delta coding only")
        number("weight_split_bits", self.weight_split_bits, integer=True)
        within("weight_split_bits", self.weight_split_bits, 0, MAX_SPLIT_BITS)
        at_least("message_shift", self.message_shift, 0)
        if self.message_shift is not None and self.message_shift > 24:
            raise LavaloopError(f"message_shift must be <= 24, got {self.message_shift}")
        if self.distill and self.v_init != "half":
            raise LavaloopError("distillation models neurons that start at half threshold: use v_init 'half'")
        at_least("distill_dagger_rounds", self.distill_dagger_rounds, 0)
        at_least("distill_dagger_steps", self.distill_dagger_steps, 1)
        if not self.distill and (self.distill_steps != 3000 or self.distill_model != "spikes"
                                 or self.distill_objective is not None
                                 or self.distill_dagger_rounds != 2 or self.distill_dagger_steps != 2000):
            raise LavaloopError("distill_steps, distill_model, distill_objective and distill_dagger_* apply only "
                                "with distill")


@dataclass
class GRSNConvertOptions:
    """Options of a GRSN policy conversion (the "grsn" kind).

    Parameters
    ----------
    profile: chip profile name or JSON file (a fixed-point profile).
    calib_episodes: episodes of the float policy that calibrate the scales, >= 1.
    calib_seed: their first seed, >= 0.
    """

    profile: str = "loihi2"
    calib_episodes: int = 20
    calib_seed: int = 0

    def __post_init__(self):
        refuse_none("", vars(self), type(self))
        at_least("calib_episodes", self.calib_episodes, 1)
        at_least("calib_seed", self.calib_seed, 0)


@dataclass
class RunSettings:
    """How `run` plays an artifact. `None` means the artifact's own value.

    Parameters
    ----------
    episodes: episodes to play, >= 1; episode k uses seed `seed + k` (env reset and epsilon draws).
    seed: the first seed, >= 0.
    backend: "lava" (Lava's CPU simulator, fixed-point models) or "emulator" (the bit-exact
        vectorized emulator).
    epsilon: evaluation epsilon in [0, 1].
    timesteps, readout: rate-coded kinds: override T (>= 1) and the readout; mixed-signal kinds
        take timesteps with calibrate_readout (the readout is refitted to the new window's counts).
    per_layer_processes: rate-coded kinds on Lava: one process per layer instead of one for the network.
    env: deploy on this environment id instead of the artifact's (same shapes; ALE: same game).
    sticky_actions: ALE sticky-action probability in [0, 1].
    env_params: numeric attributes of the environment to change, e.g. {"length": 1.0} for
        CartPole's pole (lavaloop.envs.set_physics): the policy deployed on a drifted task.
    mismatch_seed: mixed-signal kinds: the chip instance, >= 0 (None: the nominal chip, no mismatch).
    mismatch_sigma: mixed-signal kinds: its device mismatch, >= 0 (None: the profile's).
    calibrate_readout: mixed-signal kinds: before running, fit the host readout to this chip
        instance on the artifact's calibration observations (lavaloop.deploy.mixed_signal).
    readout_fit: with calibrate_readout: "fixed" (a ridge of 1e-3 per window on raw counts,
        nearly unpenalized; None means this) or "cv" (the strength chosen by cross-validated
        decision agreement: better in closed loop only with many copies, docs/mixed_signal.md).
    layout: GRSN teams on Lava: "per-agent" (one process, one chip, per agent; the default) or
        "shared" (one process holding all agents).
    """

    episodes: int = 20
    seed: int = 0
    backend: str = "lava"
    epsilon: float | None = None
    timesteps: int | None = None
    readout: str | None = None
    per_layer_processes: bool = False
    env: str | None = None
    sticky_actions: float | None = None
    env_params: dict | None = None
    mismatch_seed: int | None = None
    mismatch_sigma: float | None = None
    calibrate_readout: bool = False
    readout_fit: str | None = None
    layout: str | None = None

    def __post_init__(self):
        refuse_none("", vars(self), type(self))
        flag("per_layer_processes", self.per_layer_processes)
        flag("calibrate_readout", self.calibrate_readout)
        at_least("episodes", self.episodes, 1)
        at_least("mismatch_seed", self.mismatch_seed, 0)
        at_least("mismatch_sigma", self.mismatch_sigma, 0.0)
        at_least("seed", self.seed, 0)
        one_of("backend", self.backend, BACKENDS)
        within("epsilon", self.epsilon, 0, 1)
        at_least("timesteps", self.timesteps, 1)
        one_of("readout", self.readout, READOUTS)
        within("sticky-action probability", self.sticky_actions, 0, 1)
        one_of("layout", self.layout, LAYOUTS)
        one_of("readout fit", self.readout_fit, READOUT_FITS)
        if self.readout_fit is not None and not self.calibrate_readout:
            raise LavaloopError("readout_fit applies only with calibrate_readout")

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.episodes))

    def overrides(self) -> list[str]:
        """Names of the kind-specific settings given (not left to the artifact)."""
        given = {"timesteps": self.timesteps is not None, "readout": self.readout is not None,
                 "per_layer_processes": self.per_layer_processes, "env": self.env is not None,
                 "sticky_actions": self.sticky_actions is not None, "env_params": bool(self.env_params),
                 "mismatch_seed": self.mismatch_seed is not None, "mismatch_sigma": self.mismatch_sigma is not None,
                 "calibrate_readout": self.calibrate_readout, "readout_fit": self.readout_fit is not None,
                 "layout": self.layout is not None}
        return [k for k, v in given.items() if v]
