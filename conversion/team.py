"""QMIX team checkpoint -> the fixed-point agent network every agent of the team runs.

The team's agents share one GRSN agent network (`conversion.models.qmix`), so converting a
team is converting that network (`conversion.grsn.quantize_policy`: the same five stages,
scales and weight rounding as a single-agent GRSN policy); calibration runs the float team
on its task, all agents' tensors together. The mixer is training-only and stays behind.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from lavaloop.artifact import lavaloop_version
from lavaloop.conversion.artifact_team import TeamArtifact
from lavaloop.conversion.grsn import CALIB_EPSILON, float_step, policy_inputs, quantize_policy
from lavaloop.conversion.models.grsn import RecurrentNet
from lavaloop.conversion.models.qmix import TEAM_FORMAT, load_team
from lavaloop.errors import CheckpointError, ProfileError
from lavaloop.options import GRSNConvertOptions, from_kwargs
from lavaloop.profiles import ChipProfile, load_profile
from lavaloop.rollout import epsilon_greedy
from lavaloop.teams import TeamShape, TeamSpec


def team_inputs(shape: TeamShape, obs: dict, prev_actions: np.ndarray, prev_rewards: np.ndarray) -> np.ndarray:
    """Every agent's network input [padded observation + one-hot index, previous action
    (one-hot; index -1 at an episode's start gives zeros), previous reward], (n_agents, n_u)."""
    return policy_inputs(shape.agent_obs(obs), prev_actions, prev_rewards, shape.max_actions)


def team_shape_for(trained: TeamShape, trained_on: str, env_id: str) -> tuple[TeamSpec, TeamShape]:
    """The task `env_id` and its team shape, checked against the team the network was trained for."""
    spec = TeamSpec.for_id(env_id)
    shape = TeamShape.of(spec)
    trained.check_fits(shape, trained_on, env_id)
    return spec, shape


def calibrate_team(net: RecurrentNet, spec: TeamSpec, shape: TeamShape, episodes: int, seed: int,
                   epsilon: float) -> dict[str, float]:
    """Largest magnitude of every tensor of the float agents over seeded epsilon-greedy team episodes."""
    peaks: dict[str, float] = {}
    head = f"head{len(net.cfg.head)}"
    env = spec.make()
    try:
        for ep in range(episodes):
            rng = np.random.default_rng(seed + ep)
            obs, _ = env.reset(seed=seed + ep)
            state = net.zero_state(shape.n_agents)
            prev_a, prev_r = np.full(shape.n_agents, -1), np.zeros(shape.n_agents)
            for _ in range(spec.max_cycles):
                t, state = float_step(net, team_inputs(shape, obs, prev_a, prev_r), state)
                for k, val in t.items():
                    peaks[k] = max(peaks.get(k, 0.0), float(np.abs(val).max()))
                prev_a = np.array([epsilon_greedy(rng, t[head][i, :n], epsilon)[1]
                                   for i, n in enumerate(shape.n_actions)])
                obs, rewards, term, trunc, _ = env.step(dict(zip(shape.agents, map(int, prev_a))))
                prev_r = np.array([rewards[a] for a in shape.agents], float)
                if any(term.values()) or any(trunc.values()) or not env.agents:
                    break
    finally:
        env.close()
    return peaks


def convert_team(checkpoint: str | Path, env_id: str, **options) -> TeamArtifact:
    """Load, calibrate and quantize a QMIX team of GRSN agents: the "grsn-team" kind's converter.

    Parameters
    ----------
    checkpoint: a lavaloop QMIX team checkpoint (lavaloop.trainers.qmix).
    env_id: the cooperative task, e.g. "mpe2:simple_spread_v3" (same agents and sizes as in training).
    options: fields of `lavaloop.options.GRSNConvertOptions`.

    Returns the team artifact (not yet saved).
    """
    opts = from_kwargs(GRSNConvertOptions, options, "a GRSN team conversion")
    t0 = time.time()
    profile = load_profile(opts.profile)
    if not isinstance(profile, ChipProfile):
        raise ProfileError(f"profile {profile.name!r} is a {profile.kind} chip; "
                           "a GRSN team needs a fixed-point profile")
    net, _, trained_spec, trained_shape, meta, sha = load_team(checkpoint)
    if net.cfg.cell != "grsn":
        raise CheckpointError(f"{Path(checkpoint).name} holds {net.cfg.cell} agents; only GRSN agents convert "
                              "to the chip (the others are float baselines)")
    spec, shape = team_shape_for(trained_shape, trained_spec.id, env_id)
    peaks = calibrate_team(net, spec, shape, opts.calib_episodes, opts.calib_seed, CALIB_EPSILON)
    stages, quant = quantize_policy(net, peaks, profile)
    manifest = {
        "env": spec.to_dict(), "team": shape.to_dict(), "obs_shape": [shape.agent_obs_dim],
        "n_actions": shape.max_actions, "continuous": False, "action_map": list(range(shape.max_actions)),
        "input_scale_bits": quant["frac_bits"]["input"], "epsilon": 0.0,
        "policy": json.loads(json.dumps(net.cfg.__dict__)), "profile": profile.to_dict(), "quantization": quant,
        "calibration": {"episodes": opts.calib_episodes, "seed": opts.calib_seed, "epsilon": CALIB_EPSILON},
        "source": {"file": Path(checkpoint).name, "format": TEAM_FORMAT, "sha256": sha, "meta": meta},
        "lavaloop_version": lavaloop_version(), "conversion_seconds": round(time.time() - t0, 2),
    }
    art = TeamArtifact(manifest, stages, {k: v.numpy() for k, v in net.state_dict().items()})
    art.validate()
    return art
