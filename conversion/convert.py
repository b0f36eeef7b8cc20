"""Checkpoint -> calibrated, normalized, quantized artifact."""
from __future__ import annotations

import functools
import time
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np

from lavaloop.artifact import lavaloop_version
from lavaloop.conversion.artifact_if import IFArtifact
from lavaloop.conversion.artifact_ms import MixedSignalArtifact
from lavaloop.conversion.artifact_sd import SDArtifact, held_input_values
from lavaloop.conversion.auto_timesteps import choose_timesteps
from lavaloop.conversion.distill import HELDOUT_SEED_OFFSET, DistillConfig, distill, own_agreement
from lavaloop.conversion.distill import agreement as distill_agreement
from lavaloop.conversion.dither import dither, unit_phases, widen
from lavaloop.conversion.loaders import load_checkpoint
from lavaloop.conversion.mixed_signal import INPUT_BITS, RATE, check_mappable, map_network
from lavaloop.conversion.models.qnet import FeedForwardQ
from lavaloop.conversion.network import ConvLayer, Layer, SourceNetwork
from lavaloop.conversion.normalize import (
    centre_readout,
    channel_peaks,
    collect_observations,
    equalize,
    layer_scales,
    normalize,
)
from lavaloop.conversion.quantize import input_scale_bits, quantization_report, quantize, rate_limit
from lavaloop.conversion.sigma_delta import SDLayer, quantize_sd, sd_report, split_bits_per_layer
from lavaloop.envs import EnvSpec, is_atari, make_env
from lavaloop.errors import ProfileError, ShapeMismatchError
from lavaloop.options import ConvertOptions, from_kwargs
from lavaloop.profiles import ChipProfile, MixedSignalProfile, load_profile

ATARI_EPISODE_STEPS = 18_000   # the paper's evaluation cap, in agent steps
ATARI_EPSILON = 0.05           # the paper's evaluation epsilon
EQUALIZE_SWEEPS = 3      # sigma-delta: equalization sweeps tried (docs/conversion.md measures 1-10)
CENTRE_MARGIN = 0.005    # sigma-delta: calibration agreement a centred readout must gain (docs/conversion.md)
# distillation objectives (conversion.distill; docs/conversion.md): Q-values with a cross-entropy as strong as
# their MSE at a temperature of 0.002 (in Q / lambda units, near the decisions' gaps) and a 10x larger, annealed rate
# (since 2026-12-05; before: 0.01 x cross-entropy at 0.02, constant lr 1e-4), or advantages in RMS units with
# 0.3 x the cross-entropy at 0.03 of that RMS and an annealed rate
DISTILL_OBJECTIVES = {"q": {"ce_weight": 1.0, "temperature": 0.002, "lr": 1e-3, "anneal": True},
                      "advantage": {"target": "advantage", "ce_weight": 0.3, "temperature": 0.03, "anneal": True}}


def check_env_fits(net: SourceNetwork, env: gym.Env, env_id: str) -> tuple[list[int], int]:
    """Observation shape and action count of `env`, checked against the network."""
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(act_space, gym.spaces.Discrete):
        raise ShapeMismatchError(f"{env_id} has a {type(act_space).__name__} action space; "
                                 "a Q-network needs Discrete actions")
    if not isinstance(obs_space, gym.spaces.Box):
        raise ShapeMismatchError(f"{env_id} has a {type(obs_space).__name__} observation space; need Box")
    n_obs = int(np.prod(obs_space.shape))
    if n_obs != net.in_features or (len(net.in_shape) > 1 and tuple(obs_space.shape) != net.in_shape):
        takes = f"{net.in_features} inputs" if len(net.in_shape) == 1 else f"inputs of shape {net.in_shape}"
        raise ShapeMismatchError(f"network takes {takes} but {env_id} observations "
                                 f"have shape {tuple(obs_space.shape)}")
    if int(act_space.n) != net.n_actions:
        raise ShapeMismatchError(f"network has {net.n_actions} outputs but {env_id} has "
                                 f"{act_space.n} actions")
    return list(obs_space.shape), int(act_space.n)


def ceiling_agreement(q: FeedForwardQ, values, obs: np.ndarray, max_obs: int = 2_000, chunk: int = 256) -> float:
    """How often values(batch of raveled observations) picks the source network's action, on up to
    `max_obs` calibration observations: for `quantize.rate_limit` (the T -> infinity limit of a
    rate-coded network) the ceiling of the conversion rate that longer windows approach."""
    x = obs[::max(1, len(obs) // max_obs)]
    same = 0
    for i in range(0, len(x), chunk):
        batch = x[i:i + chunk]
        same += int((values(batch.reshape(len(batch), -1)).argmax(1) == q.q_values(batch).argmax(1)).sum())
    return same / len(x)


def distill_layers(q: FeedForwardQ, normed: list, layers: list, obs: np.ndarray, spec: EnvSpec,
                   opts: ConvertOptions, out_scale: float, *, model: str, timesteps: int, per_neuron: list[bool],
                   requantize, profile: ChipProfile, **chip) -> tuple[list, list, dict]:
    """(float layers, integer layers, report): `distill` through `model`, with the agreement of
    that model of the network before and after, on held-out source episodes and on episodes
    the network itself plays (both held out from training).

    Training starts from the converted network (its bias-corrected biases), once per objective
    of `distill_objectives` (`DISTILL_OBJECTIVES`); of several, the one that decides best on its
    own episodes is kept (report "objectives"). If that ends below where it started on its own
    episodes, where the conversion rate is measured, the converted network is kept (report
    "kept": "converted"), so distillation never makes the artifact worse by that measure.
    requantize(float layers) -> integer layers, without bias correction (the training saw the
    rounding). chip: the sigma-delta model's `in_scale`, `shift` and `split_bits`, the rate
    model's `v0` (see `distill.ChipForward`).
    """
    seed, v0 = opts.calib_seed + HELDOUT_SEED_OFFSET, chip.get("v0")
    base = DistillConfig(steps=opts.distill_steps, seed=opts.calib_seed, model=model,
                         dagger_rounds=opts.distill_dagger_rounds, dagger_steps=opts.distill_dagger_steps)
    heldout = collect_observations(q, spec, base.heldout_steps, seed, opts.calib_epsilon)
    before = distill_agreement(q, layers, heldout, timesteps, model, v0=v0)
    own_before = own_agreement(q, layers, spec, base.heldout_steps, seed + 1, opts.calib_epsilon, timesteps, model, v0)
    start = [replace(l, bias=np.asarray(ql.effective()[1], np.float64)) for l, ql in zip(normed, layers)]
    tried = {}
    for name in distill_objectives(opts, model):
        tuned, report = distill(q, start, profile, per_neuron, obs, spec, timesteps, float(out_scale),
                                opts.calib_epsilon, replace(base, **DISTILL_OBJECTIVES[name]), **chip)
        tuned_q = requantize(tuned)
        report.update(objective=name,
                      heldout_agreement_after=distill_agreement(q, tuned_q, heldout, timesteps, model, v0=v0),
                      own_agreement_after=own_agreement(q, tuned_q, spec, base.heldout_steps, seed + 1,
                                                        opts.calib_epsilon, timesteps, model, v0))
        tried[name] = (tuned, tuned_q, report)
    tuned, tuned_q, report = max(tried.values(), key=lambda t: t[2]["own_agreement_after"])   # first on a tie
    better = report["own_agreement_after"] >= own_before
    report.update(heldout_steps=base.heldout_steps, heldout_seed=seed, heldout_agreement_before=before,
                  own_agreement_before=own_before, kept="distilled" if better else "converted")
    if len(tried) > 1:
        report["objectives"] = {name: {k: r[k] for k in ("heldout_agreement_after", "own_agreement_after", "seconds")}
                                for name, (_, _, r) in tried.items()}
    return (tuned, tuned_q, report) if better else (normed, layers, report)


def distill_objectives(opts: ConvertOptions, model: str) -> list[str]:
    """The objectives `distill_layers` tries: `opts.distill_objective`, or by default "advantage"
    for sigma-delta and both for rate coding (which fits best depends on the network,
    docs/conversion.md)."""
    choice = opts.distill_objective or ("advantage" if model == "sigma-delta" else "both")
    return ["q", "advantage"] if choice == "both" else [choice]


def convert_dqn(checkpoint: str | Path, env_id: str, **options) -> IFArtifact | SDArtifact | MixedSignalArtifact:
    """Load a DQN checkpoint, calibrate, normalize and quantize it: the converter of the DQN
    kinds, a rate-coded IF network ("if"), with coding="sigma-delta" a sigma-delta network, or
    with a mixed-signal profile (dynapse1, dynapse2) a network mapped onto that chip ("mixed-signal").

    Parameters
    ----------
    checkpoint: an SB3 DQN .zip (MlpPolicy or CnnPolicy) or a PyTorch/CleanRL state dict (.pt)
        of an MLP or the Nature DQN.
    env_id: the gymnasium environment id the network acts in.
    options: fields of `lavaloop.options.ConvertOptions`.

    Returns the artifact (not yet saved).
    """
    opts = from_kwargs(ConvertOptions, options, "a DQN conversion")
    t0 = time.time()
    profile = load_profile(opts.profile)
    mixed = isinstance(profile, MixedSignalProfile)
    if mixed:
        check_mixed_signal_options(opts)
    elif (opts.fan_in != "split" or opts.distill_mismatch is not None or opts.spike_rate is not None
          or opts.replicas != 1 or opts.distill_readout != "shared"):
        raise ProfileError("fan_in, spike_rate, replicas, distill_mismatch and distill_readout apply to mixed-signal "
                           "profiles (dynapse1, dynapse2) only")
    net = load_checkpoint(checkpoint)
    if mixed:
        check_mappable(net.layers, profile)
    limit = opts.max_episode_steps or (ATARI_EPISODE_STEPS if is_atari(env_id) else None)
    spec = EnvSpec.for_id(env_id, opts.sticky, limit)
    if opts.env_params:
        spec = replace(spec, physics=dict(opts.env_params))
    env = make_env(spec)
    try:
        obs_shape, n_actions = check_env_fits(net, env, env_id)
    finally:
        env.close()
    q = net.to_torch()
    obs = collect_observations(q, spec, opts.calib_steps, opts.calib_seed, opts.calib_epsilon)
    in_bits = INPUT_BITS if mixed else profile.input_bits
    common = {
        "env": spec.to_dict(), "obs_shape": obs_shape, "n_actions": n_actions,
        "action_map": list(range(n_actions)), "input_scale_bits": input_scale_bits(obs, in_bits),
        "epsilon": opts.epsilon if opts.epsilon is not None else (ATARI_EPSILON if is_atari(env_id) else 0.0),
        "profile": profile.to_dict(),
        "source": {"file": Path(checkpoint).name, "format": net.format, "sha256": net.sha256,
                   "layers": [l.name for l in net.layers]},
        "lavaloop_version": lavaloop_version(),
    }
    build = convert_mixed_signal if mixed else convert_sigma_delta if opts.coding == "sigma-delta" else convert_rate
    art = build(net, q, obs, profile, spec, opts, common)
    art.manifest["conversion_seconds"] = round(time.time() - t0, 2)
    art.validate()
    return art


def convert_rate(net: SourceNetwork, q: FeedForwardQ, obs: np.ndarray, profile: ChipProfile, spec: EnvSpec,
                 opts: ConvertOptions, common: dict) -> IFArtifact:
    """The rate-coded IF network (Tan et al.): normalize, optionally widen to phase-dithered
    copies (`conversion.dither`), quantize, optionally distill."""
    channels = None if opts.normalization == "layer" else [   # lambdas per layer (None: one)
        l.weight.shape[0] if opts.normalization == "neuron" or isinstance(l, ConvLayer) else None for l in net.layers]
    scales = layer_scales(q, obs, opts.percentile, channels)
    normed = widen(normalize(net.layers, scales), opts.dither)
    layers = dither(quantize(normed, profile, obs, opts.v_init), opts.dither, opts.v_init)
    distilled = None
    if opts.distill:
        per_neuron = [profile.per_neuron_threshold and i < len(normed) - 1 for i in range(len(normed))]
        normed, layers, distilled = distill_layers(
            q, normed, layers, obs, spec, opts, scales[-1], model=opts.distill_model, timesteps=opts.timesteps,
            per_neuron=per_neuron, profile=profile, v0=unit_phases(normed, opts.dither, opts.v_init),
            requantize=lambda tuned: dither(quantize(tuned, profile, obs, opts.v_init, bias_correction=False),
                                            opts.dither, opts.v_init))
    report = [quantization_report(ql, l) for ql, l in zip(layers, normed)]
    timesteps, auto = opts.timesteps, None
    manifest = {
        **common, "timesteps": 1 if timesteps == "auto" else timesteps, "readout": opts.readout, "v_init": opts.v_init,
        "dither": opts.dither,
        "normalization": {"mode": opts.normalization, "percentile": opts.percentile, "scales": scales,
                          "calib_steps": opts.calib_steps, "calib_seed": opts.calib_seed,
                          "calib_epsilon": opts.calib_epsilon},
        "quantization": report,
        "rate_limit_agreement": ceiling_agreement(q, functools.partial(rate_limit, layers), obs),
        "distillation": distilled, "timesteps_auto": auto,
    }
    art = IFArtifact(manifest, layers, net.layers)
    if timesteps == "auto":
        heldout = collect_observations(q, spec, min(2_000, opts.calib_steps), opts.calib_seed + HELDOUT_SEED_OFFSET,
                                       opts.calib_epsilon)
        auto = choose_timesteps(art, q, heldout, opts.timesteps_target)
        art.manifest.update(timesteps=auto["chosen"], timesteps_auto=auto)
    return art


def check_mixed_signal_options(opts: ConvertOptions) -> None:
    """Options a mixed-signal mapping does not take, refused in one line."""
    fixed_point = {"coding": "rate", "readout": "robust", "v_init": "half", "normalization": "layer",
                   "distill_model": "spikes", "distill_objective": None, "dither": 1}
    given = [k for k, v in fixed_point.items() if getattr(opts, k) != v]
    if given or opts.timesteps == "auto":
        raise ProfileError(f"{', '.join(given) or 'timesteps auto'} do not apply to a mixed-signal profile "
                           f"({opts.profile}): its network is rate coded with LIF neurons and a host readout")


def convert_mixed_signal(net: SourceNetwork, q: FeedForwardQ, obs: np.ndarray, profile: MixedSignalProfile,
                         spec: EnvSpec, opts: ConvertOptions, common: dict) -> MixedSignalArtifact:
    """The network mapped onto a mixed-signal chip (conversion.mixed_signal), its host readout
    fitted to the nominal chip, optionally trained through the chip's dynamics and sampled
    mismatch (conversion.mismatch_training)."""
    scales = layer_scales(q, obs, opts.percentile)
    normed = normalize(net.layers, scales)
    mapped = map_network(normed, obs, profile, opts.timesteps, common["input_scale_bits"], opts.fan_in,
                         RATE if opts.spike_rate is None else opts.spike_rate)
    manifest = {**common, "timesteps": opts.timesteps, "input_bits": INPUT_BITS, "mapping": mapped.report,
                "normalization": {"mode": "layer", "percentile": opts.percentile, "scales": scales,
                                  "calib_steps": opts.calib_steps, "calib_seed": opts.calib_seed,
                                  "calib_epsilon": opts.calib_epsilon},
                "readout_calibration": None, "mismatch_training": None}
    from lavaloop.conversion.mismatch_training import calibrate_readout, heldout_observations, train_through_chip

    heldout = heldout_observations(q, spec, opts)
    art = calibrate_readout(MixedSignalArtifact(manifest, mapped, net.layers), q, obs, heldout)
    if opts.distill:
        art = train_through_chip(art, q, obs, spec, heldout, opts)
    return art.replicated(opts.replicas)   # trained as one copy, deployed as several


def convert_sigma_delta(net: SourceNetwork, q: FeedForwardQ, obs: np.ndarray, profile: ChipProfile,
                        spec: EnvSpec, opts: ConvertOptions, common: dict) -> SDArtifact:
    """The sigma-delta network: max-normalize, equalize, quantize to graded spikes
    (conversion.sigma_delta). Of the candidates, 0 to EQUALIZE_SWEEPS sweeps of equalization,
    each with the readout as trained and centred (`normalize.centre_readout`), it keeps the one
    whose network agrees with the source on the most calibration decisions (on a tie: the
    fewest sweeps), the centred readout only where it gains CENTRE_MARGIN over the Q-values."""
    isb, shift = common["input_scale_bits"], opts.message_shift
    plain = layer_scales(q, obs, 100.0)
    if opts.equalize:   # every hidden channel's largest activation, in units of its layer's lambda
        peaks = [p / s for p, s in zip(channel_peaks(q, obs, net.layers), plain[:-1])]
    candidates = []
    for centred in (False, True) if opts.centre_readout else (False,):
        source, base = net.layers, plain
        if centred:   # the hidden layers' lambdas stay; the readout's: the largest advantage
            source = centre_readout(net.layers)
            base = plain[:-1] + layer_scales(FeedForwardQ.from_layers(source), obs, 100.0)[-1:]
        for sweeps in range(EQUALIZE_SWEEPS + 1 if opts.equalize else 1):
            scales = equalize(source, base, peaks, sweeps) if sweeps else base
            normed = normalize(source, scales)
            split = split_bits_per_layer(normed, profile, isb, opts.weight_split_bits, obs, shift)
            layers = quantize_sd(normed, profile, isb, opts.delta_threshold, obs, shift=shift, split_bits=split)
            ceiling = ceiling_agreement(q, functools.partial(held_input_values, layers), obs)
            candidates.append({"ceiling": ceiling, "centred": centred, "sweeps": sweeps, "source": source,
                               "scales": scales, "normed": normed, "layers": layers, "split": split})
    best_of = {c: max((d for d in candidates if d["centred"] == c), key=lambda d: (d["ceiling"], -d["sweeps"]),
                      default=None) for c in (False, True)}
    keep_centred = best_of[True] is not None and best_of[True]["ceiling"] >= best_of[False]["ceiling"] + CENTRE_MARGIN
    best = best_of[keep_centred]
    ceiling, sweeps, scales, normed, layers, split = (best[k] for k in ("ceiling", "sweeps", "scales", "normed",
                                                                           "layers", "split"))
    distilled = None

    def requantize(tuned: list[Layer]) -> list[SDLayer]:   # training may have grown the states: k can only fall
        fits = split_bits_per_layer(tuned, profile, isb, split, obs, shift)
        return quantize_sd(tuned, profile, isb, opts.delta_threshold, shift=shift, split_bits=fits)

    if opts.distill:
        normed, layers, distilled = distill_layers(
            q, normed, layers, obs, spec, opts, scales[-1], model="sigma-delta", timesteps=1,
            per_neuron=[False] * len(normed), profile=profile, in_scale=2.0 ** isb, shift=shift, split_bits=split,
            requantize=requantize)
    manifest = {
        **common, "threshold": opts.delta_threshold, "message_shift": shift,
        "weight_split_bits": opts.weight_split_bits,
        "normalization": {"mode": "equalized" if sweeps else "layer", "equalization_sweeps": sweeps,
                          "equalization_ceilings": [d["ceiling"] for d in candidates if d["centred"] == keep_centred],
                          "readout_centred": keep_centred,
                          "readout_ceilings": {name: best_of[c]["ceiling"] for name, c in
                                               (("q_values", False), ("centred", True)) if best_of[c]},
                          "percentile": 100.0,
                          "scales": scales, "calib_steps": opts.calib_steps, "calib_seed": opts.calib_seed,
                          "calib_epsilon": opts.calib_epsilon},
        "quantization": [sd_report(ql, l) for ql, l in zip(layers, normed)],
        "held_input_agreement": (ceiling_agreement(q, functools.partial(held_input_values, layers), obs)
                                 if distilled else ceiling),
        "distillation": distilled,
    }
    return SDArtifact(manifest, layers, best["source"])
