"""QMIX teams (Rashid et al., ICML 2018) whose agents are the GRSN paper's recurrent policies.

Every agent runs the same `RecurrentNet` (GRSN, or the GRU baseline of the same sizes) on
its own padded observation and agent one-hot (`lavaloop.teams.TeamShape`), its previous
action and its previous reward; its outputs are the agent's Q-values. In training only,
the monotonic mixing network combines the agents' chosen Q-values into the team's value,
its weights made by hypernetworks from the global state (absolute values: dQ_tot/dQ_a >= 0):

    Q_tot = w2(s)^T ELU(W1(s)^T q + b1(s)) + V(s)

A deployed team is the agent network alone, one copy per agent, each deciding from its own
observation; the mixer stays in the checkpoint for quantization-aware fine-tuning.

Checkpoints hold tensors and JSON strings only (torch.load(weights_only=True)).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from lavaloop.atomic import atomic_path
from lavaloop.conversion.models.grsn import PolicyConfig, RecurrentNet, has_format, policy_config, read_tagged
from lavaloop.errors import CheckpointError
from lavaloop.teams import TeamShape, TeamSpec

TEAM_FORMAT = "lavaloop-qmix-team"


def agent_config(shape: TeamShape, cell: str, weight_bits: int | None = None) -> PolicyConfig:
    """The shared agent network of a team: the GRSN trunk at QMIX's usual size (64 recurrent units)."""
    return PolicyConfig(obs_dim=shape.agent_obs_dim, n_actions=shape.max_actions, cell=cell, hidden=64,
                        obs_embed=32, action_embed=8, reward_embed=8, shortcut_embed=32, head=(64,),
                        weight_bits=weight_bits)


class QMixer(nn.Module):
    """Monotonic mixing of the agents' Q-values, conditioned on the global state."""

    def __init__(self, n_agents: int, state_dim: int, embed: int = 32, hyper: int = 64):
        super().__init__()
        self.n_agents, self.embed = n_agents, embed
        self.w1 = nn.Sequential(nn.Linear(state_dim, hyper), nn.ReLU(), nn.Linear(hyper, n_agents * embed))
        self.b1 = nn.Linear(state_dim, embed)
        self.w2 = nn.Sequential(nn.Linear(state_dim, hyper), nn.ReLU(), nn.Linear(hyper, embed))
        self.v = nn.Sequential(nn.Linear(state_dim, embed), nn.ReLU(), nn.Linear(embed, 1))

    def forward(self, q: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """q (..., n_agents), state (..., state_dim) -> Q_tot (...)."""
        w1 = self.w1(state).abs().view(*q.shape[:-1], self.n_agents, self.embed)
        hidden = F.elu(torch.einsum("...a,...ae->...e", q, w1) + self.b1(state))
        return (hidden * self.w2(state).abs()).sum(-1) + self.v(state)[..., 0]


def save_team(agent: RecurrentNet, mixer: QMixer, spec: TeamSpec, shape: TeamShape, path, meta: dict) -> None:
    """Write a team checkpoint atomically."""
    team = {"env": spec.to_dict(), "shape": shape.to_dict(), "mixer_embed": mixer.embed}
    with atomic_path(path) as tmp:
        torch.save({"format": TEAM_FORMAT, "config": json.dumps(asdict(agent.cfg)), "team": json.dumps(team),
                    "meta": json.dumps(meta), "agent": agent.state_dict(), "mixer": mixer.state_dict()}, tmp)


def is_team_checkpoint(path: str | Path) -> bool:
    """True for a lavaloop QMIX team checkpoint."""
    return has_format(path, TEAM_FORMAT)


def load_team(path: str | Path) -> tuple[RecurrentNet, QMixer, TeamSpec, TeamShape, dict, str]:
    """(agent network, mixer, task, team shape, metadata, sha256) of a team checkpoint;
    CheckpointError if it is not one or is malformed."""
    path = Path(path)
    obj = read_tagged(path, TEAM_FORMAT, "QMIX team")
    try:
        cfg = policy_config(obj["config"])
        team = json.loads(obj["team"])
        spec, shape = TeamSpec.from_dict(team["env"]), TeamShape.from_dict(team["shape"])
        meta = json.loads(obj["meta"])
        agent, mixer = RecurrentNet(cfg), QMixer(shape.n_agents, shape.state_dim, int(team["mixer_embed"]))
        agent.load_state_dict(obj["agent"])
        mixer.load_state_dict(obj["mixer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if isinstance(exc, RuntimeError) and len(lines) > 1 else (lines or [type(exc).__name__])[0]
        raise CheckpointError(f"{path.name}: malformed QMIX team checkpoint ({detail})"[:300]) from exc
    if cfg.obs_dim != shape.agent_obs_dim or cfg.n_actions != shape.max_actions:
        raise CheckpointError(f"{path.name}: agent network ({cfg.obs_dim} inputs, {cfg.n_actions} actions) does not "
                              f"fit its team ({shape.agent_obs_dim} inputs, {shape.max_actions} actions)")
    return agent, mixer, spec, shape, meta, hashlib.sha256(path.read_bytes()).hexdigest()
