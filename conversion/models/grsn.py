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
state reset every env step; the head sees the firing rate). `grsn_chip` is GRSN whose
membrane is a DYNAP-SE neuron's window (`window_update`: the deployment of
`deploy.mixed_signal_grsn`, gates on the host), optionally trained through sampled mismatch.

The policy (`RecurrentNet`): ReLU embeddings of the observation (32), the previous action
(one-hot, or the continuous action in [-1, 1]; 8) and the previous reward (8) form x_t
(48); the recurrent layer (128) outputs spikes (or GRU states), concatenated with a ReLU
shortcut embedding of the observation (32); an MLP [128, 128] gives one value per action
(Q-values or SAC-discrete logits), or a tanh-Gaussian's mean and log std per action
dimension (continuous SAC). `RecurrentEncoder` is the trunk alone (the SAC critics').

Quantization-aware training: with `PolicyConfig.weight_bits` set, every Linear that
becomes a fixed-point synapse group (`FakeQuantLinear`) rounds its weights in the
forward pass to signed mantissas of that width with one power-of-two exponent per output
neuron (`quantize_rows`, the rule `conversion.grsn` deploys with), and passes gradients
straight through. `snap_weights` stores the rounded weights, so the float policy computes
with exactly the weights the chip holds.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lavaloop.atomic import atomic_path
from lavaloop.errors import CheckpointError
from lavaloop.fixedpoint import int_max

CELLS = ("grsn", "gru", "lif", "grsn_notap", "grsn_chip")
CHIP_WINDOW = 14         # chip steps per env step of a `grsn_chip` membrane (deploy.mixed_signal_grsn)
CHIP_SYN_DECAY = math.exp(-1.0 / 5.0)   # its synapse per chip step: DYNAP-SE's fast types, 5 ms at 1 ms
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


def window_update(state: tuple[torch.Tensor, ...], current: torch.Tensor, tau: float, syn_decay: float = 0.0,
                  steps: int = CHIP_WINDOW, vth: torch.Tensor | float = 1.0, decay: torch.Tensor | float = 1.0,
                  gain: torch.Tensor | float = 1.0) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """One env step of chip neurons driven by `current` for `steps` steps, as
    `processes.dynamics.lif_step` computes them with the current's spike trains at their mean
    rate: the synapse i <- syn_decay i + (1 - syn_decay) gain current (0: an ideal current),
    the membrane v <- a v + (1 - a) i with a^steps = 1 - 1/tau (`decay` scales the time
    constant: a^(1/decay)), held at rest while refractory (one step after a spike), spike at
    `vth`, reset to rest. `state` (i, v, refractory). Returns the new state and whether each
    neuron spiked in the window; gradients through the ATan surrogate."""
    a = ((1.0 - 1.0 / tau) ** (1.0 / steps)) ** (1.0 / decay)
    i, v, refractory = state
    drive = (1 - syn_decay) * gain * current
    silent = torch.ones_like(v)
    for _ in range(steps):
        i = syn_decay * i + drive
        v = (1 - refractory) * (a * v + (1 - a) * i)
        s = spike(v / vth - 1.0)
        v = v * (1 - s.detach())
        refractory, silent = s.detach(), silent * (1 - s)
    return (i, v, refractory), 1 - silent


def quantize_rows(w: torch.Tensor, bits: int, per_row: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(signed mantissa, exponent per row) with w ~ mantissa * 2**exponent, |mantissa| <= 2**(bits-1) - 1.

    Each row (output neuron) uses the full mantissa range with its own exponent; with
    `per_row=False` all rows share the exponent of the largest magnitude.
    """
    mant_max = int_max(bits)
    peak = w.abs().amax(dim=1) if per_row else w.abs().max().expand(len(w))
    exp = torch.ceil(torch.log2(peak.clamp_min(1e-30) / mant_max))
    mant = torch.clamp(torch.round(w / 2.0 ** exp[:, None]), -mant_max, mant_max)
    return mant, exp


class FakeQuantLinear(nn.Linear):
    """nn.Linear whose forward uses `quantize_rows`-rounded weights when `bits` is set
    (straight-through gradient); `bits=None` is a plain Linear."""

    def __init__(self, n_in: int, n_out: int, bits: int | None = None):
        super().__init__(n_in, n_out)
        self.bits = bits

    def quantized_weight(self) -> torch.Tensor:
        if self.bits is None:
            return self.weight
        mant, exp = quantize_rows(self.weight.detach(), self.bits)
        return self.weight + (mant * 2.0 ** exp[:, None] - self.weight).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)


class GRSNCell(nn.Module):
    """Gated recurrent spiking neurons; state (h, v)."""

    def __init__(self, n_in: int, hidden: int, tau: float = 2.0, weight_bits: int | None = None):
        super().__init__()
        self.hidden, self.tau = hidden, tau
        self.f = FakeQuantLinear(n_in, hidden, weight_bits)
        self.c = FakeQuantLinear(n_in, hidden, weight_bits)
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
        for f_t, c_t in zip(f.unbind(0), c.unbind(0)):   # unbind: f[t]'s backward would copy all of f per step
            h = f_t * h + (1 - f_t) * c_t
            v, s = lif_update(v, h, self.tau)
            out.append(s)
        return torch.stack(out), (h, v)


class GRSNChipCell(GRSNCell):
    """GRSN whose membrane is a DYNAP-SE neuron fed by spike trains through a synapse
    (`window_update` with CHIP_SYN_DECAY); state (h, i, v, refractory). With
    `mismatch_sigma` > 0 each forward pass with gradients (a training update) draws every
    neuron's threshold, time constant and gain as 1 + N(0, sigma) per sequence (training
    through sampled chips); acting, evaluation and the trainer's bootstrap targets (computed
    without gradients) use the nominal chip. Synaptic time constants and shared weight
    currents, which the chip also mismatches, are not sampled."""

    mismatch_sigma = 0.0

    def zero_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        return tuple(torch.zeros(batch, self.hidden) for _ in range(4))

    def forward(self, x: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
        f, c = self.gates(x)
        h, *membrane = state
        factors = {}
        if self.mismatch_sigma > 0 and torch.is_grad_enabled():    # training updates, not acting
            factors = {k: (1 + self.mismatch_sigma * torch.randn_like(h)).clamp_min(0.05)
                       for k in ("vth", "decay", "gain")}
        out = []
        for f_t, c_t in zip(f.unbind(0), c.unbind(0)):
            h = f_t * h + (1 - f_t) * c_t
            membrane, s = window_update(membrane, h, self.tau, CHIP_SYN_DECAY, **factors)
            out.append(s)
        return torch.stack(out), (h, *membrane)


class GRSNNoTAPCell(GRSNCell):
    """GRSN without TAP: `substeps` steps on the held input per env step, state reset each env step."""

    substeps = 4

    def forward(self, x, state):
        f, c = self.gates(x)
        h = v = torch.zeros_like(f[0])
        rates = []
        for f_t, c_t in zip(f.unbind(0), c.unbind(0)):
            h, v = torch.zeros_like(h), torch.zeros_like(v)
            count = 0
            for _ in range(self.substeps):
                h = f_t * h + (1 - f_t) * c_t
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
        for current_t in current.unbind(0):
            v, s = lif_update(v, current_t, self.tau)
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
    """Sizes of a recurrent policy. `n_actions` counts discrete actions, or the action
    dimensions of a `continuous` policy (whose head outputs a mean and a log std per dimension)."""

    obs_dim: int
    n_actions: int
    cell: str = "grsn"
    hidden: int = 128
    obs_embed: int = 32
    action_embed: int = 8
    reward_embed: int = 8
    shortcut_embed: int = 32
    head: tuple[int, ...] = (128, 128)
    weight_bits: int | None = None      # quantization-aware training (GRSN only)
    continuous: bool = False
    mismatch_sigma: float = 0.0         # grsn_chip: training through sampled chip mismatch

    def __post_init__(self):
        if self.weight_bits is not None and self.cell != "grsn":
            raise ValueError(f"quantization-aware training applies to GRSN policies, not {self.cell!r}")
        if self.mismatch_sigma < 0:
            raise ValueError(f"mismatch_sigma must be >= 0, got {self.mismatch_sigma}")
        if self.mismatch_sigma and self.cell != "grsn_chip":
            raise ValueError(f"mismatch_sigma applies to grsn_chip policies, not {self.cell!r}")

    @property
    def n_outputs(self) -> int:
        return 2 * self.n_actions if self.continuous else self.n_actions


def make_cell(cfg: PolicyConfig, n_in: int) -> nn.Module:
    if cfg.cell == "grsn":
        return GRSNCell(n_in, cfg.hidden, weight_bits=cfg.weight_bits)
    if cfg.cell == "grsn_chip":
        cell = GRSNChipCell(n_in, cfg.hidden)
        cell.mismatch_sigma = cfg.mismatch_sigma
        return cell
    if cfg.cell == "grsn_notap":
        return GRSNNoTAPCell(n_in, cfg.hidden)
    if cfg.cell == "lif":
        return LIFCell(n_in, cfg.hidden)
    if cfg.cell == "gru":
        return GRUCell(n_in, cfg.hidden)
    raise ValueError(f"unknown cell {cfg.cell!r} (choose from {', '.join(CELLS)})")


def mlp(n_in: int, hidden: tuple[int, ...], n_out: int, bits: int | None = None) -> nn.Sequential:
    """ReLU MLP; the last layer is linear."""
    sizes, layers = [n_in, *hidden], []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [FakeQuantLinear(a, b, bits), nn.ReLU()]
    return nn.Sequential(*layers, FakeQuantLinear(sizes[-1], n_out, bits))


class RecurrentEncoder(nn.Module):
    """The paper's trunk: (observation, previous action, previous reward) sequences and a
    carried state -> [recurrent output, shortcut embedding of the observation]."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        bits = cfg.weight_bits
        self.obs_embed = FakeQuantLinear(cfg.obs_dim, cfg.obs_embed, bits)
        self.action_embed = FakeQuantLinear(cfg.n_actions, cfg.action_embed, bits)
        self.reward_embed = FakeQuantLinear(1, cfg.reward_embed, bits)
        self.shortcut = FakeQuantLinear(cfg.obs_dim, cfg.shortcut_embed, bits)
        self.rnn = make_cell(cfg, cfg.obs_embed + cfg.action_embed + cfg.reward_embed)

    @property
    def n_features(self) -> int:
        return self.cfg.hidden + self.cfg.shortcut_embed

    def zero_state(self, batch: int):
        return self.rnn.zero_state(batch)

    def embed(self, obs, prev_action, prev_reward) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, shortcut_t); prev_action is one-hot (continuous: the action in [-1, 1]),
        prev_reward has a trailing dim of 1."""
        x = torch.cat([F.relu(self.obs_embed(obs)), F.relu(self.action_embed(prev_action)),
                       F.relu(self.reward_embed(prev_reward))], dim=-1)
        return x, F.relu(self.shortcut(obs))

    def features(self, obs, prev_action, prev_reward, state):
        """Sequences (L, B, ...) -> features (L, B, n_features), next state, recurrent outputs (L, B, hidden)."""
        x, short = self.embed(obs, prev_action, prev_reward)
        out, state = self.rnn(x, state)
        return torch.cat([out, short], dim=-1), state, out


class RecurrentNet(RecurrentEncoder):
    """The policy network: the trunk and an MLP head giving Q-values or action logits per
    action, or a Gaussian's (mean, log std) per action dimension of a continuous policy."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__(cfg)
        self.head = mlp(self.n_features, cfg.head, cfg.n_outputs, cfg.weight_bits)

    def forward(self, obs, prev_action, prev_reward, state):
        """Sequences (L, B, ...) -> outputs (L, B, n_outputs), next state, recurrent outputs (L, B, hidden)."""
        z, state, out = self.features(obs, prev_action, prev_reward, state)
        return self.head(z), state, out

    @torch.no_grad()
    def snap_weights(self) -> None:
        """Store the quantized weights that the forward pass uses (a no-op without `weight_bits`)."""
        for m in self.modules():
            if isinstance(m, FakeQuantLinear):
                m.weight.copy_(m.quantized_weight())


def greedy_action(cfg: PolicyConfig, out: np.ndarray):
    """The deterministic action of one step's output: the argmax (discrete), or tanh(mean)
    in [-1, 1] per dimension (continuous)."""
    return np.tanh(out[: cfg.n_actions]) if cfg.continuous else int(np.argmax(out))


def action_input(cfg: PolicyConfig, action) -> np.ndarray:
    """The previous-action input: one-hot (discrete; zeros for none, i.e. action < 0) or the
    action in [-1, 1] (continuous; None for none)."""
    if cfg.continuous:
        return np.zeros(cfg.n_actions, np.float32) if action is None else np.asarray(action, np.float32)
    return (np.arange(cfg.n_actions) == action).astype(np.float32)


def save_policy(net: RecurrentNet, path, meta: dict, extra: dict[str, dict] | None = None) -> None:
    """A checkpoint of tensors and JSON strings, loadable with torch.load(weights_only=True),
    written atomically. `extra` adds training-only state dicts by name (e.g. SAC's "critic",
    kept so that the policy can be fine-tuned later); deployment reads only the policy."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "config": json.dumps(asdict(net.cfg)),
                    "meta": json.dumps(meta), "state_dict": net.state_dict(), **(extra or {})}, tmp)


def has_format(path, fmt: str) -> bool:
    """True if `path` is a torch checkpoint (tensors and strings only) tagged with format `fmt`."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not ours; another kind's loader reports it
        return False
    return isinstance(obj, dict) and obj.get("format") == fmt


def read_tagged(path, fmt: str, what: str) -> dict:
    """The dict of a checkpoint tagged with format `fmt` (loaded with weights_only=True);
    CheckpointError naming `what` if it is missing, unreadable or not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path.name}: not a readable torch checkpoint ({type(exc).__name__})") from exc
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise CheckpointError(f"{path.name}: not a lavaloop {what} checkpoint")
    return obj


def policy_config(text: str) -> PolicyConfig:
    """A PolicyConfig from its checkpoint JSON."""
    cfg = json.loads(text)
    cfg["head"] = tuple(cfg["head"])
    return PolicyConfig(**cfg)
