"""GRSN policy checkpoint -> fixed-point graded/GRSN stages (the GRSN artifact).

The policy becomes five stages, each one Lava pipeline step:

    0 embed  graded dense + ReLU: [obs, prev action, prev reward] -> [x (48), shortcut (32)]
    1 grsn   GRSN neurons on x (gate synapses, table sigmoid, 24-bit h and v); shortcut passes
    2 head1  graded dense + ReLU on [spikes, shortcut]
    3 head2  graded dense + ReLU
    4 q      graded dense: one value per action (a continuous policy: the mean per action
             dimension; the host decodes tanh(mean), see processes.dynamics.continuous_action)

Every tensor gets a power-of-two scale from calibration (the float policy's episodes):
its largest magnitude uses about half of its range (`ACT_MARGIN`): the observation's the
profile's `input_bits`, the graded messages between stages its `message_bits`. Weights are
the profile's signed mantissas with one exponent per synapse group; biases are in the
accumulator's units. GRSN states (threshold 1 = 2**k) take as many fraction bits k as the
profile's `state_bits` hold for the calibrated currents, at least its `threshold_bits`; the
forget gate is a 1025-knot sigmoid table over [-8, 8] with 16-bit outputs, linearly
interpolated over 8 more input bits; tau = 2 is a right shift by one.

The precision is measured, not assumed: the Pendulum-V SAC actor (50k steps, seed 0), whose
near-bang-bang action flips sign when one GRSN spike flips, kept 0.75 of its actions within
0.02 of the float actor's with 12 state fraction bits and a plain 12-bit table over 6 input
fraction bits; the interpolated table and calibrated state bits keep 0.86 on loihi2 and 0.98
with 24-bit graded spikes (input and messages; docs/grsn.md).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from lavaloop.artifact import lavaloop_version
from lavaloop.conversion.artifact_grsn import GRSNArtifact
from lavaloop.conversion.models.grsn import (
    CHECKPOINT_FORMAT,
    PolicyConfig,
    RecurrentNet,
    greedy_action,
    has_format,
    policy_config,
    quantize_rows,
    read_tagged,
)
from lavaloop.envs import EnvSpec, make_env
from lavaloop.errors import CheckpointError, LavaloopError, ProfileError, ShapeMismatchError
from lavaloop.fixedpoint import int_max
from lavaloop.options import GRSNConvertOptions, from_kwargs
from lavaloop.profiles import ChipProfile, load_profile
from lavaloop.rollout import epsilon_greedy, run_episode

LUT_INDEX_BITS, LUT_IN_FRAC, LUT_INTERP_BITS, GATE_BITS = 10, 6, 8, 16
ACT_MARGIN = 2.0


def is_policy_checkpoint(path: str | Path) -> bool:
    """True for a lavaloop recurrent-policy checkpoint (see conversion.models.grsn.save_policy)."""
    return has_format(path, CHECKPOINT_FORMAT)


def load_policy(path: str | Path) -> tuple[RecurrentNet, dict, str]:
    """(network, metadata, sha256) of a recurrent-policy checkpoint; CheckpointError if malformed."""
    path = Path(path)
    obj = read_tagged(path, CHECKPOINT_FORMAT, "recurrent-policy")
    try:
        cfg = policy_config(obj["config"])
        meta = json.loads(obj["meta"])
        state = obj["state_dict"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: malformed policy checkpoint ({exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path.name}: state_dict is not a dict of tensors")
    net = RecurrentNet(cfg)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        lines = [l.strip() for l in str(exc).splitlines()[1:] if l.strip()]
        raise CheckpointError(f"{path.name}: weights do not fit a {cfg.cell} policy with hidden size "
                              f"{cfg.hidden}: {lines[0] if lines else exc}"[:300]) from exc
    return net, meta, hashlib.sha256(path.read_bytes()).hexdigest()


def check_task(cfg: PolicyConfig, meta: dict, spec: EnvSpec) -> tuple[int, int]:
    """The env fits the policy: same observation dims (the POMDP mask), action count or dimensions."""
    env = make_env(spec)
    try:
        n_obs, space = int(np.prod(env.observation_space.shape)), env.action_space
    finally:
        env.close()
    trained = meta.get("env")
    if trained is not None and trained != spec.id:
        mask_then = EnvSpec.for_id(trained).obs_dims
        if mask_then != spec.obs_dims:
            raise ShapeMismatchError(f"policy was trained on {trained} (observation dims {list(mask_then or [])}); "
                                     f"{spec.id} observes {list(spec.obs_dims or []) or 'all dims'}")
    if n_obs != cfg.obs_dim:
        raise ShapeMismatchError(f"policy takes {cfg.obs_dim} observation dims but {spec.id} has {n_obs}")
    if cfg.continuous:
        if hasattr(space, "n") or space.shape != (cfg.n_actions,):
            raise ShapeMismatchError(f"policy has {cfg.n_actions} continuous action dims but {spec.id}'s "
                                     f"action space is {space}")
    elif not hasattr(space, "n") or int(space.n) != cfg.n_actions:
        raise ShapeMismatchError(f"policy has {cfg.n_actions} actions but {spec.id}'s action space is {space}")
    return n_obs, cfg.n_actions


def float_step(net: RecurrentNet, u: np.ndarray, state: tuple) -> tuple[dict[str, np.ndarray], tuple]:
    """One env step of the float GRSN policy on inputs u = [obs, prev action, prev reward]
    (batch, n_u), with every intermediate tensor (the stages' outputs and the gate inputs).
    A continuous policy's last output is its mean alone (the deployed part)."""
    cfg = net.cfg
    with torch.no_grad():
        u_t = torch.as_tensor(np.asarray(u, np.float32))
        o, pa, pr = torch.split(u_t, [cfg.obs_dim, cfg.n_actions, 1], dim=-1)
        x, short = net.embed(o, pa, pr)
        f, c = net.rnn.gates(x)
        h, v = state
        h = f * h + (1 - f) * c
        v = v + (h - v) / net.rnn.tau
        s = (v >= 1.0).to(v.dtype)
        v = v - s
        t = {"input": u_t, "embed": torch.cat([x, short], -1), "gate_pre": net.rnn.f(x), "cand": c,
             "h": h, "v": v, "spikes": s}
        z = torch.cat([s, short], -1)
        linears = [m for m in net.head if isinstance(m, torch.nn.Linear)]
        for i, lin in enumerate(linears):
            z = lin(z)
            z = torch.relu(z) if i < len(linears) - 1 else z[..., : cfg.n_actions]
            t[f"head{i}"] = z
    return {k: val.numpy() for k, val in t.items()}, (h, v)


def policy_inputs(obs: np.ndarray, prev_action: np.ndarray, prev_reward: np.ndarray, n_actions: int,
                  continuous: bool = False) -> np.ndarray:
    """u = [obs, previous action, previous reward], batched. The previous action is one-hot
    (discrete; index < 0 at an episode's start gives zeros) or the action itself
    (continuous, shape (batch, n_actions); zeros at the start)."""
    obs = np.atleast_2d(np.asarray(obs, np.float64))
    if continuous:
        prev = np.asarray(prev_action, np.float64).reshape(len(obs), n_actions)
    else:
        prev = (np.asarray(prev_action)[:, None] == np.arange(n_actions)).astype(np.float64)
    return np.concatenate([obs, prev, np.asarray(prev_reward, np.float64)[:, None]], axis=-1)


def explore(rng: np.random.Generator, cfg: PolicyConfig, out: np.ndarray, epsilon: float):
    """The policy's action for its outputs `out`, or with probability epsilon a uniform random one:
    `lavaloop.rollout.epsilon_greedy` for discrete actions, the same single draw per decision
    for continuous ones."""
    if not cfg.continuous:
        return epsilon_greedy(rng, out, epsilon)[1]
    return greedy_action(cfg, out) if rng.random() >= epsilon else rng.uniform(-1, 1, cfg.n_actions)


def calibrate(net: RecurrentNet, spec: EnvSpec, episodes: int, seed: int, epsilon: float) -> dict[str, float]:
    """Largest magnitude of every tensor of the float policy over seeded epsilon-greedy episodes."""
    peaks: dict[str, float] = {}
    cfg = net.cfg
    env, rng = make_env(spec), np.random.default_rng(seed)
    mem: dict = {}

    def act(obs):
        t, mem["state"] = float_step(net, policy_inputs(obs, [mem["a"]], [mem["r"]], cfg.n_actions, cfg.continuous),
                                     mem["state"])
        for k, val in t.items():
            peaks[k] = max(peaks.get(k, 0.0), float(np.abs(val).max()))
        mem["a"] = explore(rng, cfg, t[f"head{len(cfg.head)}"][0], epsilon)
        return mem["a"]

    def observe(obs, a, r, terminated, truncated):
        mem["r"] = r

    try:
        for ep in range(episodes):
            mem.update(state=net.zero_state(1), a=np.zeros(cfg.n_actions) if cfg.continuous else -1, r=0.0)
            run_episode(env, seed + ep, act, observe)
    finally:
        env.close()
    return peaks


def sigmoid_table(index_bits: int, in_frac_bits: int, out_frac_bits: int) -> np.ndarray:
    """Knots of the interpolated sigmoid (`processes.dynamics.sigmoid_lookup`):
    round(sigmoid(z) * 2**out_frac_bits) for z = i * 2**-in_frac_bits, i in
    [-2**(index_bits-1), 2**(index_bits-1)]; entry 0 is the most negative z."""
    half = 1 << (index_bits - 1)
    z = np.arange(-half, half + 1) / float(1 << in_frac_bits)
    return np.rint(1.0 / (1.0 + np.exp(-z)) * (1 << out_frac_bits)).astype(np.int64)


def frac_bits(peak: float, bits: int) -> int:
    """Fraction bits of a signed `bits`-bit tensor whose largest magnitude is `peak` (with margin)."""
    limit = int_max(bits)
    if peak <= 0:
        return bits - 2
    return min(bits - 2, int(math.floor(math.log2(limit / (peak * ACT_MARGIN)))))


def quantize_weight(w: np.ndarray, profile: ChipProfile, what: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(signed mantissa, exponent per output neuron, relative RMS error) of one synapse group.

    Each neuron's weights use the full mantissa range with their own power-of-two exponent
    when the profile has per-neuron parameters (`per_neuron_threshold`), else one exponent
    (`quantize_rows`, the rule quantization-aware training uses too). The exponent is
    folded into the neuron's output shift (its accumulator is in units of 2**(exp - f_in)),
    so only the mantissa width is the profile's.
    """
    if not np.isfinite(w).all():
        raise CheckpointError(f"{what}: weights are not finite")
    mant, exp = (t.numpy().astype(np.int64) for t in
                 quantize_rows(torch.from_numpy(w), profile.weight_bits, profile.per_neuron_threshold))
    err = float(np.sqrt(np.mean((mant * 2.0 ** exp[:, None] - w) ** 2)) / max(np.sqrt(np.mean(w ** 2)), 1e-12))
    return mant, exp, err


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def dense_stage(name: str, w: np.ndarray, b: np.ndarray, f_in: int, f_out: int, bits: int, relu: bool,
                profile: ChipProfile, max_input: int, spike_inputs: int = 0) -> tuple[dict, float]:
    mant, exp, err = quantize_weight(w, profile, name)
    bias = np.rint(b * 2.0 ** (f_in - exp)).astype(np.int64)
    return {"kind": "dense", "name": name, "weight": mant, "bias": bias, "out_shift": f_out + exp - f_in,
            "bits": bits, "relu": relu, "max_input": max_input, "spike_inputs": spike_inputs}, err


def quantize_policy(net: RecurrentNet, peaks: dict[str, float], profile: ChipProfile) -> tuple[list[dict], dict]:
    """The fixed-point stages (see module doc) and the quantization report."""
    cfg = net.cfg
    in_bits, msg_bits, state_bits = profile.input_bits, profile.message_bits, profile.state_bits
    f_u, f_x = frac_bits(peaks["input"], in_bits), frac_bits(peaks["embed"], msg_bits)
    current = max(peaks["h"], peaks["cand"])
    fs = frac_bits(current, state_bits)
    if fs < profile.threshold_bits:
        raise ProfileError(f"GRSN currents up to {current:.3g} do not fit {state_bits}-bit states at "
                           f"threshold 2**{profile.threshold_bits}")
    n_o, n_a = cfg.obs_dim, cfg.n_actions
    n_x = cfg.obs_embed + cfg.action_embed + cfg.reward_embed
    w0 = np.zeros((n_x + cfg.shortcut_embed, n_o + n_a + 1))
    rows = np.cumsum([0, cfg.obs_embed, cfg.action_embed, cfg.reward_embed, cfg.shortcut_embed])
    cols = [slice(0, n_o), slice(n_o, n_o + n_a), slice(n_o + n_a, n_o + n_a + 1), slice(0, n_o)]
    mods = [net.obs_embed, net.action_embed, net.reward_embed, net.shortcut]
    for r0, r1, c, m in zip(rows[:-1], rows[1:], cols, mods):
        w0[r0:r1, c] = _np(m.weight)
    b0 = np.concatenate([_np(m.bias) for m in mods])
    report, stages = {}, []
    st, report["embed"] = dense_stage("embed", w0, b0, f_u, f_x, msg_bits, True, profile, 1 << (in_bits - 1))
    stages.append(st)

    cell = net.rnn
    wf, ef, report["grsn_f"] = quantize_weight(_np(cell.f.weight), profile, "grsn forget gate")
    wc, ec, report["grsn_c"] = quantize_weight(_np(cell.c.weight), profile, "grsn candidate")
    tau_shift = int(round(math.log2(cell.tau)))
    if 2 ** tau_shift != cell.tau:
        raise LavaloopError(f"GRSN tau {cell.tau} is not a power of two (a shift on the chip)")
    stages.append({"kind": "grsn", "name": "grsn", "n_in": n_x,
                   "w_f": wf, "b_f": np.rint(_np(cell.f.bias) * 2.0 ** (f_x - ef)).astype(np.int64),
                   "shift_f": LUT_IN_FRAC + LUT_INTERP_BITS + ef - f_x,
                   "w_c": wc, "b_c": np.rint(_np(cell.c.bias) * 2.0 ** (f_x - ec)).astype(np.int64),
                   "shift_c": fs + ec - f_x,
                   "table": sigmoid_table(LUT_INDEX_BITS, LUT_IN_FRAC, GATE_BITS), "gate_bits": GATE_BITS,
                   "interp_bits": LUT_INTERP_BITS,
                   "tau_shift": tau_shift, "vth": 1 << fs, "payload": 1 << f_x, "bits": state_bits,
                   "max_input": 1 << (msg_bits - 1)})

    linears = [m for m in net.head if isinstance(m, torch.nn.Linear)]
    f_in = f_x
    for i, lin in enumerate(linears):
        last = i == len(linears) - 1
        bits = state_bits if last else msg_bits
        f_out = frac_bits(peaks[f"head{i}"], bits)
        rows = slice(0, cfg.n_actions) if last else slice(None)     # a continuous policy deploys its mean
        st, report[f"head{i}"] = dense_stage(f"head{i}", _np(lin.weight)[rows], _np(lin.bias)[rows], f_in, f_out, bits,
                                             not last, profile, 1 << (msg_bits - 1),
                                             spike_inputs=cfg.hidden if i == 0 else 0)
        stages.append(st)
        f_in = f_out
    formats = {"input": f_u, "embed": f_x, "state": fs, "q": f_in}
    return stages, {"weight_rel_rms_error": report, "frac_bits": formats, "peaks": peaks}


CALIB_EPSILON = 0.05


def convert_policy(checkpoint: str | Path, env_id: str, **options) -> GRSNArtifact:
    """Load, calibrate and quantize a GRSN policy: the "grsn" kind's converter.

    Parameters
    ----------
    checkpoint: a lavaloop recurrent-policy checkpoint (lavaloop.trainers.recurrent or .sac).
    env_id: the environment (or POMDP task id) the policy was trained on.
    options: fields of `lavaloop.options.GRSNConvertOptions`.

    Returns the GRSN artifact (not yet saved).
    """
    opts = from_kwargs(GRSNConvertOptions, options, "a GRSN policy conversion")
    calib_episodes, calib_seed, calib_epsilon = opts.calib_episodes, opts.calib_seed, CALIB_EPSILON
    t0 = time.time()
    profile = load_profile(opts.profile)
    if not isinstance(profile, ChipProfile):
        raise ProfileError(f"profile {profile.name!r} is a {profile.kind} chip; GRSN needs a fixed-point profile")
    net, meta, sha = load_policy(checkpoint)
    if net.cfg.cell != "grsn":
        raise CheckpointError(f"{Path(checkpoint).name} holds a {net.cfg.cell} policy; only GRSN policies "
                              "convert to the chip (the others are float baselines)")
    spec = EnvSpec.for_id(env_id)
    obs_dim, n_actions = check_task(net.cfg, meta, spec)
    peaks = calibrate(net, spec, calib_episodes, calib_seed, calib_epsilon)
    stages, quant = quantize_policy(net, peaks, profile)
    manifest = {
        "env": spec.to_dict(), "obs_shape": [obs_dim], "n_actions": n_actions,
        "continuous": net.cfg.continuous, "action_map": [] if net.cfg.continuous else list(range(n_actions)),
        "input_scale_bits": quant["frac_bits"]["input"], "epsilon": 0.0,
        "policy": json.loads(json.dumps(net.cfg.__dict__)), "profile": profile.to_dict(), "quantization": quant,
        "calibration": {"episodes": calib_episodes, "seed": calib_seed, "epsilon": calib_epsilon},
        "source": {"file": Path(checkpoint).name, "format": CHECKPOINT_FORMAT, "sha256": sha, "meta": meta},
        "lavaloop_version": lavaloop_version(), "conversion_seconds": round(time.time() - t0, 2),
    }
    art = GRSNArtifact(manifest, stages, {k: v.numpy() for k, v in net.state_dict().items()})
    art.validate()
    return art
