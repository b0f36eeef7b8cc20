"""Conversion-aware distillation: fine-tune a converted DQN so that, as deployed, it decides as its source.

The model trained is the rate-coded network as the chip computes it: every layer's weights
go through the profile's quantization rule (`quantize.weight_scale`, straight-through
gradients), and every hidden rate is the spike count the deployed layer emits in T steps:
by default simulated IF spike trains driven by the layer below's trains ("spikes"), or the
cheaper staircase floor(T r + 1/2) / T of `quantize.rate_limit(timesteps=T)` ("staircase",
after Bu et al., "Optimal ANN-SNN Conversion for High-accuracy and Ultra-low-latency
Spiking Neural Networks", ICLR 2022). Gradients pass the counts straight through, as the
clipped rate's. It is fitted to the source's Q-values (target
"q": mean squared error in the normalized output's units) or advantages (target "advantage":
Q minus its mean over actions, in units of their RMS, the output layer rescaled to those
units) plus a cross-entropy term on the source's greedy action at a low temperature, which
widens the margins that rounding would otherwise flip. Rate coding trains on both and keeps
the better (`convert.distill_layers`): which fits depends on the network (docs/conversion.md).
The sigma-delta network, whose fixed-point ANN already agrees on
about 0.99 of a CartPole network's decisions, trains on "advantage": in Q / lambda units a
CartPole decision hinges on differences near 1e-3, below one Adam step on the output
layer, and the first steps undo what the conversion got right. The observations are the calibration set, then DAgger
rounds that add what the distilled network itself visits when it acts (labelled by the
source), since the conversion rate is measured on the network's own trajectories. No
rewards and no critic: only the source network and the environment. Seeded, deterministic.

For the sigma-delta coding (model "sigma-delta") the network is the fixed-point ANN itself:
weights and biases go through `conversion.sigma_delta`'s rule (straight-through), hidden
units are plain ReLUs (the messages' resolution is far below the weights').
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lavaloop.conversion.models.qnet import FeedForwardQ
from lavaloop.conversion.network import Layer
from lavaloop.conversion.normalize import collect_observations
from lavaloop.conversion.quantize import QuantizedLayer, weight_scale
from lavaloop.conversion.sigma_delta import state_scales
from lavaloop.envs import EnvSpec
from lavaloop.profiles import ChipProfile


@dataclass(frozen=True)
class DistillConfig:
    """Settings of `distill`.

    Parameters
    ----------
    steps: Adam steps in all. batch: observations per step. lr: Adam's learning rate for a tensor
        whose largest entry is 1 or more (smaller ones: in proportion, `step_groups`).
    anneal: lower the rate to 0 over the steps on a cosine. The sigma-delta model needs it (at
        a constant rate its rounded weights keep flipping and the agreement wanders by a few
        points); rate coding through spike trains learns less with it at lr 1e-4 and more at 1e-3
        (docs/conversion.md).
    ce_weight: weight of the cross-entropy on the source's greedy action (against the MSE).
    temperature: of that cross-entropy, in the target's units.
    target: "q" (the normalized Q-values, Q / lambda, about 1 at the top; the output layer in
        those units) or "advantage" (Q minus its mean over actions, in units of its RMS on
        the calibration data, the output layer rescaled to match; see the module docstring).
    dagger_rounds: times the network plays `dagger_steps` env steps to add observations.
    heldout_steps: env steps of held-out source episodes for the before/after report.
    seed: minibatch order and DAgger episodes.
    model: "spikes" (train through simulated spike trains: the closest to the chip, T times
        the work per step) or "staircase" (rounded rates; cheaper, coarser); see `chip_forward`;
        "sigma-delta" for the sigma-delta coding.
    """

    steps: int = 3000
    batch: int = 256
    lr: float = 1e-4
    anneal: bool = False
    ce_weight: float = 0.01
    temperature: float = 0.02
    target: str = "q"
    dagger_rounds: int = 2
    dagger_steps: int = 2000
    heldout_steps: int = 2000
    seed: int = 0
    model: str = "spikes"


HELDOUT_SEED_OFFSET = 100_000   # held-out source episodes: calib_seed + 100,000 + k (own checks: + 100,001 + k)


def dagger_seed(seed: int, r: int) -> int:
    """The first episode seed of DAgger round r >= 1: seed + 10,000 r, skipping the block at
    seed + HELDOUT_SEED_OFFSET that the held-out episodes use."""
    block = r + (r >= HELDOUT_SEED_OFFSET // 10_000)
    return seed + 10_000 * block


def straight_through(x: torch.Tensor, rounded: torch.Tensor) -> torch.Tensor:
    """`rounded` in the forward pass, the gradient of `x` in the backward pass."""
    return x + (rounded - x).detach()


def synapses(layer: Layer | QuantizedLayer, w: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """W x + b of a dense or (valid, strided) convolutional layer on a batch, flattened per sample."""
    if w.ndim == 4:
        return F.conv2d(x.reshape(len(x), *layer.in_shape), w, b, stride=layer.stride).reshape(len(x), -1)
    return F.linear(x.reshape(len(x), -1), w, b)


def if_trains(layer: Layer, w: torch.Tensor, b: torch.Tensor, inputs: torch.Tensor, timesteps: int,
              held: bool, v0: torch.Tensor | float = 0.5) -> torch.Tensor:
    """Spike trains (T, B, n) of IF neurons in threshold units: v starts at v0 (per unit, or
    one value), v += W x_k + b, spike at v >= 1, reset by subtraction (the deployed neuron,
    without integer rounding). `inputs` is the observation held for all T steps (`held`) or
    the layer below's trains."""
    if held:
        current = synapses(layer, w, b, inputs).expand(timesteps, -1, -1)
    else:
        t, batch = inputs.shape[:2]
        current = synapses(layer, w, b, inputs.reshape(t * batch, -1)).reshape(t, batch, -1)
    v = torch.zeros_like(current[0]) + v0
    out = torch.empty_like(current)
    for k in range(timesteps):
        v = v + current[k]
        out[k] = (v >= 1.0).to(v.dtype)
        v = v - out[k]
    return out


def chip_forward(layers: list[Layer], params: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor,
                 timesteps: int, model: str, v0: list | None = None) -> torch.Tensor:
    """Output values of the rate-coded network with weights `params` (threshold units).

    Every hidden rate is what the deployed layer emits in T steps: with model "spikes", the
    spike count of IF neurons driven by the layer below's spike trains; with "staircase",
    floor(T clip(r, 0, 1) + v0) / T of the rate r computed from the layer below's rates
    (`quantize.rate_limit(timesteps=T)`). v0: per hidden layer, the units' starting potentials
    (threshold units, per unit of the flattened output; None: 1/2 everywhere, the "half"
    start; `dither.unit_phases`). Either way the gradient is the clipped rate's
    (straight-through), and the output is linear in the last hidden layer's rates, as the
    robust readout.
    """
    trains, last = None, len(layers) - 1
    v0 = [0.5] * last if v0 is None else [torch.as_tensor(np.asarray(v, np.float32)) for v in v0]
    for i, (layer, (w, b)) in enumerate(zip(layers, params)):
        z = synapses(layer, w, b, x)
        if i == last:
            return z
        if model == "sigma-delta":
            x = torch.relu(z)
            continue
        r = torch.clamp(z, 0.0, 1.0)
        if model == "spikes":
            with torch.no_grad():
                trains = if_trains(layer, w.detach(), b.detach(), x.detach() if trains is None else trains,
                                   timesteps, held=trains is None, v0=v0[i])
            rate = trains.mean(0)
        else:
            rate = torch.floor(r * timesteps + v0[i]) / timesteps
        x = straight_through(r, rate)
    return x


class ChipForward(nn.Module):
    """The normalized network as the chip computes it (see the module docstring); float32.

    Parameters
    ----------
    layers: normalized float layers (DenseLayer / ConvLayer), ReLU between.
    profile: the quantization rule. per_neuron: one flag per layer (as `quantize` decides).
    timesteps: T. model: "spikes", "staircase" or "sigma-delta" (see `chip_forward`).
    in_scale, shift, split_bits: sigma-delta only: the input payload's units per observation
        unit, the message shift and the split synapses' extra weight bits per layer (see
        `sigma_delta.state_scales`).
    v0: rate coding: the hidden units' starting potentials (see `chip_forward`; None: 1/2).
    """

    def __init__(self, layers: list[Layer], profile: ChipProfile, per_neuron: list[bool], timesteps: int,
                 model: str = "spikes", in_scale: float = 1.0, shift: int | None = None,
                 split_bits: list[int] | None = None, v0: list | None = None):
        super().__init__()
        self.v0 = v0
        self.layers, self.profile, self.per_neuron = layers, profile, per_neuron
        self.timesteps, self.model, self.in_scale, self.shift = timesteps, model, in_scale, shift
        self.split_bits = split_bits
        self.weights = nn.ParameterList([nn.Parameter(torch.tensor(np.asarray(l.weight), dtype=torch.float32))
                                         for l in layers])
        self.biases = nn.ParameterList([nn.Parameter(torch.tensor(np.asarray(l.bias), dtype=torch.float32))
                                        for l in layers])

    def quantized(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer i's weights and biases as `quantize_layer` (or `quantize_sd`) implements them (straight-through)."""
        w, b = self.weights[i], self.biases[i]
        if self.model == "sigma-delta":
            m, s, shift = state_scales([p.detach().numpy() for p in self.weights], self.in_scale, self.profile,
                                       self.shift, self.split_bits)[i]
            unit = 2.0 ** shift / s
            return (straight_through(w, torch.round(w * (s / m)) * (m / s)),
                    straight_through(b, torch.round(b / unit) * unit))
        exp, scale = weight_scale(w.detach().numpy(), self.profile, self.per_neuron[i])
        s = torch.tensor(scale, dtype=torch.float32)
        vth = torch.round(s)
        shape = (-1,) + (1,) * (w.ndim - 1)
        wq = torch.round(w * (s / 2.0 ** exp).reshape(shape)) * 2.0 ** exp / vth.reshape(shape)
        return straight_through(w, wq), straight_through(b, torch.round(b * s) / vth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = [self.quantized(i) for i in range(len(self.layers))]
        return chip_forward(self.layers, params, x, self.timesteps, self.model, self.v0)

    @torch.no_grad()
    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Output values for a batch of observations (numpy), as FeedForwardQ.q_values."""
        return self(torch.as_tensor(np.asarray(obs), dtype=torch.float32)).numpy()

    def float_layers(self) -> list[Layer]:
        """The trained float layers, to be quantized by `quantize(..., bias_correction=False)`."""
        return [replace(l, weight=w.detach().numpy().astype(np.float64), bias=b.detach().numpy().astype(np.float64))
                for l, w, b in zip(self.layers, self.weights, self.biases)]


@torch.no_grad()
def agreement(source: FeedForwardQ, layers: list[QuantizedLayer], obs: np.ndarray, timesteps: int,
              model: str = "spikes", chunk: int = 256, v0: list | None = None) -> float:
    """Fraction of observations where the quantized network, as `chip_forward` models it at T
    (hidden units starting at `v0`), picks the source's greedy action."""
    policy = ChipPolicy(layers, timesteps, model, v0)
    same = 0
    for i in range(0, len(obs), chunk):
        x = np.asarray(obs[i:i + chunk])
        same += int((policy.q_values(x).argmax(1) == source.q_values(x).argmax(1)).sum())
    return same / max(len(obs), 1)


class ChipPolicy:
    """Integer layers as `chip_forward` models them at T, with FeedForwardQ's `q_values`, to be played."""

    def __init__(self, layers: list[QuantizedLayer], timesteps: int, model: str, v0: list | None = None):
        self.layers, self.timesteps, self.model, self.v0 = layers, timesteps, model, v0
        self.params = [tuple(torch.as_tensor(a, dtype=torch.float32) for a in q.effective()) for q in layers]

    @torch.no_grad()
    def q_values(self, obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        return chip_forward(self.layers, self.params, x, self.timesteps, self.model, self.v0).numpy()


def own_agreement(source: FeedForwardQ, layers: list[QuantizedLayer], spec: EnvSpec, steps: int, seed: int,
                  epsilon: float, timesteps: int, model: str = "spikes", v0: list | None = None) -> float:
    """`agreement` on the observations the quantized network visits when it plays (`steps` env
    steps from `seed`, epsilon-greedy): where the conversion rate is measured."""
    visited = collect_observations(ChipPolicy(layers, timesteps, model, v0), spec, steps, seed, epsilon)
    return agreement(source, layers, visited, timesteps, model, v0=v0)


def relative_step(p: torch.Tensor) -> float:
    """A tensor's learning-rate factor: its largest magnitude, capped at 1. Adam moves every
    parameter by about lr per step whatever its size, and the normalized tensors differ by
    orders of magnitude (the Nature DQN's first layer, fed raw pixels, has weights near 1e-3)."""
    return min(1.0, float(p.detach().abs().max()))


def step_groups(weights: list[torch.Tensor], biases: list[torch.Tensor], lr: float) -> list[dict]:
    """Adam parameter groups: a layer's weights at lr x their `relative_step`, its biases at lr x
    the larger of theirs and the weights' (a bias moves at least as far as one weight's
    contribution at unit input). One rate per layer set by the larger of the two moved the
    Nature DQN's first-layer weights (median 2e-4, biases up to 0.2) by ~20 % of their size
    in 200 steps even at lr 1e-6 (docs/conversion.md, "Why distillation fails on the Nature DQN")."""
    groups = []
    for w, b in zip(weights, biases):
        k = relative_step(w) or 1.0
        groups += [{"params": [w], "lr": lr * k}, {"params": [b], "lr": lr * max(k, relative_step(b))}]
    return groups


def distill_loss(out: torch.Tensor, target: torch.Tensor, greedy: torch.Tensor, cfg: DistillConfig,
                 advantage: bool) -> tuple[torch.Tensor, dict]:
    """The distillation loss of outputs `out`: the mean squared error to `target` (of the outputs
    minus their mean over actions with `advantage`) plus cfg.ce_weight x the cross-entropy on
    `greedy` at cfg.temperature. Returns (loss, both terms as floats)."""
    mse = F.mse_loss(out - out.mean(1, keepdim=True) if advantage else out, target)
    ce = F.cross_entropy(out / cfg.temperature, greedy)
    return mse + cfg.ce_weight * ce, {"mse": float(mse), "cross_entropy": float(ce)}


def distill_step(model: nn.Module, opt: torch.optim.Optimizer, x, target: torch.Tensor, greedy: torch.Tensor,
                 cfg: DistillConfig, advantage: bool) -> dict:
    """One optimizer step of `distill_loss` on a minibatch `x`. Returns both terms."""
    loss, terms = distill_loss(model(x), target, greedy, cfg, advantage)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return terms


def distill(source: FeedForwardQ, layers: list[Layer], profile: ChipProfile, per_neuron: list[bool],
            obs: np.ndarray, spec: EnvSpec, timesteps: int, out_scale: float, epsilon: float,
            cfg: DistillConfig = DistillConfig(), progress: bool = True, in_scale: float = 1.0,
            shift: int | None = None, split_bits: list[int] | None = None,
            v0: list | None = None) -> tuple[list[Layer], dict]:
    """Fine-tune normalized layers through the chip's arithmetic at T = `timesteps`.

    Parameters
    ----------
    source: the float source network. layers: its normalized layers (the starting point).
    profile, per_neuron: the quantization rule, per layer.
    obs: calibration observations. spec: the environment (DAgger rounds play in it).
    timesteps: the deployed T. out_scale: the output layer's lambda (its outputs are Q / lambda).
    epsilon: exploration while the network plays its DAgger episodes.
    cfg: the settings. progress: show a progress bar.
    in_scale, shift, split_bits: sigma-delta only (see `ChipForward`).
    v0: rate coding: the hidden units' starting potentials (see `chip_forward`; None: 1/2).

    Returns (trained float layers, report: steps, observations, final losses, seconds). With
    target "advantage" the sigma-delta model's output layer comes back in units of the source's
    advantage RMS (decisions do not depend on that scale, nor does its quantization); the rate
    model's in the units it came in, Q / lambda, the range its integer readout is built for
    (left at advantage scale, ~1,000x larger on CartPole, it decided on 0.20 in closed loop).
    """
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    q_cal = source.q_values(obs)
    units = float(np.sqrt(np.mean((q_cal - q_cal.mean(1, keepdims=True)) ** 2))) or 1.0
    # with target "advantage" the output layer is trained in units of the advantages' RMS (argmax is scale-free)
    to_units = out_scale / units if cfg.target == "advantage" else 1.0
    out = layers[-1]
    layers = [*layers[:-1], replace(out, weight=out.weight * to_units, bias=out.bias * to_units)]
    model = ChipForward(layers, profile, per_neuron, timesteps, cfg.model, in_scale, shift, split_bits, v0)
    opt = torch.optim.Adam(step_groups(model.weights, model.biases, cfg.lr))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1.0 + np.cos(np.pi * k / cfg.steps)) if cfg.anneal else 1.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    x_all = np.asarray(obs)
    rounds = np.array_split(np.arange(cfg.steps), cfg.dagger_rounds + 1)
    bar = tqdm(total=cfg.steps, desc="distillation", leave=False, disable=None if progress else True)
    losses = {}
    try:
        for r, steps in enumerate(rounds):
            if r > 0:   # DAgger: where the network goes when it acts, labelled by the source
                seed = dagger_seed(cfg.seed, r)
                visited = collect_observations(model, spec, cfg.dagger_steps, seed, epsilon)
                x_all = np.concatenate([x_all, visited.astype(x_all.dtype)])
            x = torch.as_tensor(x_all, dtype=torch.float32)
            q_all = source.q_values(x_all)
            advantage = cfg.target == "advantage"
            target = torch.as_tensor((q_all - q_all.mean(1, keepdims=True)) / units if advantage else q_all / out_scale,
                                     dtype=torch.float32)
            greedy = target.argmax(1)
            for _ in steps:
                idx = torch.randint(len(x), (min(cfg.batch, len(x)),), generator=gen)
                losses = distill_step(model, opt, x[idx], target[idx], greedy[idx], cfg, advantage)
                schedule.step()
                bar.update(1)
    finally:
        bar.close()
    report = {"steps": cfg.steps, "observations": len(x_all), "calibration_observations": len(obs),
              "dagger_rounds": cfg.dagger_rounds, "final_loss": losses, "config": cfg.__dict__,
              "seconds": round(time.time() - t0, 2)}
    tuned = model.float_layers()
    if cfg.model != "sigma-delta":   # back to Q / lambda units
        tuned[-1] = replace(tuned[-1], weight=tuned[-1].weight / to_units, bias=tuned[-1].bias / to_units)
    return tuned, report
