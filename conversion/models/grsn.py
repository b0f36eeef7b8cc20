"""Recurrent policies of the GRSN paper (Qin et al., AAAI 2025) and their baselines, in PyTorch.

The GRSN cell (the authors' first version: gates driven by the current input only):

    F_t = sigmoid(W_f x_t + b_f)              forget gate
    C_t = ReLU(W_c x_t + b_c)                 candidate current
    h_t = F_t * h_{t-1} + (1 - F_t) * C_t     gated recurrent current (carried state)
    v_t = v_{t-1} + (h_t - v_{t-1}) / tau     LIF membrane, tau = 2
    o_t = [v_t >= 1];  v_t <- v_t - o_t       soft reset, ATan surrogate gradient (alpha 2)

With the Temporal Alignment Paradigm (TAP) the cell takes one step per environment step
and (h, v) is carried like an RNN state, zero at episode start. Since the gates see only
x_t, both gate products of a whole sequence are one matrix product; only the elementwise
recurrence loops. (The authors' later variant drives the gates from the previous spikes;
it would add a recurrent weight to `GRSNCell.gates` and nothing else.)

Baselines with the same sizes: `gru` (torch GRU), `lif` (LIF neurons with TAP, input
current W x_t + b), `grsn_notap` (GRSN run for 4 sub-steps per env step on the held input,
state reset every env step; the head sees the firing rate).

The policy (`RecurrentQNet`): ReLU embeddings of the observation (32), the previous action
(one-hot, 8) and the previous reward (8) form x_t (48); the recurrent layer (128) outputs
spikes (or GRU states), concatenated with a ReLU shortcut embedding of the observation (32);
an MLP [128, 128] gives one value per action.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

CELLS = ("grsn", "gru", "lif", "grsn_notap")
CHECKPOINT_FORMAT = "lavaloop-recurrent-policy"


class ATanSpike(torch.autograd.Function):
    """Heaviside forward; ATan surrogate gradient alpha / 2 / (1 + (pi/2 alpha x)^2)."""

    alpha = 2.0

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        a = ATanSpike.alpha
        return grad * (a / 2) / (1 + (math.pi / 2 * a * x) ** 2)


spike = ATanSpike.apply


def lif_update(v: torch.Tensor, current: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """v += (current - v) / tau; spike at v >= 1; soft reset v -= spike."""
    v = v + (current - v) / tau
    s = spike(v - 1.0)
    return v - s, s


class GRSNCell(nn.Module):
    """Gated recurrent spiking neurons; state (h, v)."""

    def __init__(self, n_in: int, hidden: int, tau: float = 2.0):
        super().__init__()
        self.hidden, self.tau = hidden, tau
        self.f = nn.Linear(n_in, hidden)
        self.c = nn.Linear(n_in, hidden)
        bound = 1 / math.sqrt(hidden)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def zero_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        z = torch.zeros(batch, self.hidden)
        return z, z.clone()

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sigmoid(self.f(x)), F.relu(self.c(x))

    def forward(self, x: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
        """x (L, B, n_in) -> spikes (L, B, hidden), final (h, v)."""
        f, c = self.gates(x)
        h, v = state
        out = []
        for t in range(x.shape[0]):
            h = f[t] * h + (1 - f[t]) * c[t]
            v, s = lif_update(v, h, self.tau)
            out.append(s)
        return torch.stack(out), (h, v)


class GRSNNoTAPCell(GRSNCell):
    """GRSN without TAP: `substeps` steps on the held input per env step, state reset each env step."""

    substeps = 4

    def forward(self, x, state):
        f, c = self.gates(x)
        h = v = torch.zeros_like(f[0])
        rates = []
        for t in range(x.shape[0]):
            h, v = torch.zeros_like(h), torch.zeros_like(v)
            count = 0
            for _ in range(self.substeps):
                h = f[t] * h + (1 - f[t]) * c[t]
                v, s = lif_update(v, h, self.tau)
                count = count + s
            rates.append(count / self.substeps)
        return torch.stack(rates), state


class LIFCell(nn.Module):
    """LIF neurons with TAP: input current W x_t + b, membrane carried across env steps; state (v,)."""

    def __init__(self, n_in: int, hidden: int, tau: float = 2.0):
        super().__init__()
        self.hidden, self.tau = hidden, tau
        self.w = nn.Linear(n_in, hidden)

    def zero_state(self, batch: int):
        return (torch.zeros(batch, self.hidden),)

    def forward(self, x, state):
        current = self.w(x)
        (v,) = state
        out = []
        for t in range(x.shape[0]):
            v, s = lif_update(v, current[t], self.tau)
            out.append(s)
        return torch.stack(out), (v,)


class GRUCell(nn.Module):
    """torch GRU (the RNN baseline); state (h,)."""

    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gru = nn.GRU(n_in, hidden)

    def zero_state(self, batch: int):
        return (torch.zeros(batch, self.hidden),)

    def forward(self, x, state):
        out, h = self.gru(x, state[0][None])
        return out, (h[0],)


@dataclass(frozen=True)
class PolicyConfig:
    obs_dim: int
    n_actions: int
    cell: str = "grsn"
    hidden: int = 128
    obs_embed: int = 32
    action_embed: int = 8
    reward_embed: int = 8
    shortcut_embed: int = 32
    head: tuple[int, ...] = (128, 128)


def make_cell(cfg: PolicyConfig, n_in: int) -> nn.Module:
    if cfg.cell == "grsn":
        return GRSNCell(n_in, cfg.hidden)
    if cfg.cell == "grsn_notap":
        return GRSNNoTAPCell(n_in, cfg.hidden)
    if cfg.cell == "lif":
        return LIFCell(n_in, cfg.hidden)
    if cfg.cell == "gru":
        return GRUCell(n_in, cfg.hidden)
    raise ValueError(f"unknown cell {cfg.cell!r} (choose from {', '.join(CELLS)})")


class RecurrentQNet(nn.Module):
    """Q-values from (observation, previous action, previous reward) sequences and a carried state."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        self.obs_embed = nn.Linear(cfg.obs_dim, cfg.obs_embed)
        self.action_embed = nn.Linear(cfg.n_actions, cfg.action_embed)
        self.reward_embed = nn.Linear(1, cfg.reward_embed)
        self.shortcut = nn.Linear(cfg.obs_dim, cfg.shortcut_embed)
        self.rnn = make_cell(cfg, cfg.obs_embed + cfg.action_embed + cfg.reward_embed)
        sizes = [cfg.hidden + cfg.shortcut_embed, *cfg.head]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.head = nn.Sequential(*layers, nn.Linear(sizes[-1], cfg.n_actions))

    def zero_state(self, batch: int):
        return self.rnn.zero_state(batch)

    def embed(self, obs, prev_action, prev_reward) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, shortcut_t); prev_action is one-hot, prev_reward has a trailing dim of 1."""
        x = torch.cat([F.relu(self.obs_embed(obs)), F.relu(self.action_embed(prev_action)),
                       F.relu(self.reward_embed(prev_reward))], dim=-1)
        return x, F.relu(self.shortcut(obs))

    def forward(self, obs, prev_action, prev_reward, state):
        """Sequences (L, B, ...) -> Q (L, B, n_actions), next state, recurrent outputs (L, B, hidden)."""
        x, short = self.embed(obs, prev_action, prev_reward)
        out, state = self.rnn(x, state)
        return self.head(torch.cat([out, short], dim=-1)), state, out


def save_policy(net: RecurrentQNet, path, meta: dict) -> None:
    """A checkpoint of tensors and one JSON string: loadable with torch.load(weights_only=True)."""
    torch.save({"format": CHECKPOINT_FORMAT, "config": json.dumps(asdict(net.cfg)),
                "meta": json.dumps(meta), "state_dict": net.state_dict()}, path)
