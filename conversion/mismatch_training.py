"""Training a mapped network through the chip: its LIF dynamics, its weight levels and sampled mismatch.

Two steps. `calibrate_readout` fits the host readout by least squares to the nominal chip's
spike counts (every conversion does it). `train_through_chip` (convert --distill) trains
the chip layers and the readout together: the model is the mixed-signal network as
`deploy.mixed_signal` runs it: the input generators' exact spike trains, then every chip
layer's LIF neurons stepped through the decision window of T steps, on a chip instance drawn
afresh for every minibatch (`conversion.mixed_signal.draw_instance` at sigma
`distill_mismatch`; 0: the nominal chip only; seeds from TRAINING_INSTANCES on, so
evaluation instances below it are unseen). The forward pass is the simulation
(`dynamics.mapped_layer_step`); the backward pass is backpropagation through time along the
same LIF recurrence with a surrogate spike derivative (the derivative of
sigmoid(SURROGATE_STEEPNESS (v - vth) / vth)), the resets and refractory periods taken
from the simulation; a neuron's activation is its count / (T rate), with the mapping's
recorded rate (spikes per step of an activation 1). An earlier version used the rate
model's gradient (clip of the steady-state pre-activation) instead: on the nominal chip and
1,000 steps, it lowered the held-out agreement from 0.774 to 0.751 where BPTT raises it to
0.913.
Weights go through the profile's levels with the mapping's shared currents (the code
of a weight is fixed per minibatch; its instance value is the sum of the code's mismatched
bit currents; straight-through). This is noise-injection training as used for analog
hardware, with the chip's own noise model. The host readout is trained with the chip
(readout "shared"), or, for chips whose readout is fitted per instance (`run
--calibrate-readout`), refitted on every sampled instance inside the loss (readout
"per-chip", `per_chip_step`): the chip layers then learn counts that a per-chip least
squares decodes, rather than counts that survive one shared readout. On the float CartPole
DQN with per-neuron gain mismatch (`benchmarks.mixed_signal_ceiling`, s = 0.1, 20 unseen
instances, readout refitted per instance) the shared readout's training reaches 0.966
[5th percentile 0.963], the per-chip one 0.985 [0.983]; on the chip it adds 0.010 at best
(docs/mixed_signal_findings.md, "Readout-aware training").

Targets are as `conversion.distill`'s "advantage" target: the source's Q minus its mean
over actions in units of its RMS, plus a cross-entropy on the source's greedy action; the
observations are the calibration set plus DAgger rounds where the nominal chip acts. The
trained weights are mapped to codes with the mapping's currents; the artifact records the
agreement of the nominal chip with the source on held-out observations before and after.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from lavaloop.conversion.artifact_ms import MixedSignalArtifact
from lavaloop.conversion.distill import (
                                         HELDOUT_SEED_OFFSET,
                                         DistillConfig,
                                         dagger_seed,
                                         distill_loss,
                                         distill_step,
                                         straight_through,
)
from lavaloop.conversion.mixed_signal import (
                                               ONE,
                                               draw_mismatch,
                                               instance_params,
)
from lavaloop.conversion.models.qnet import FeedForwardQ
from lavaloop.conversion.normalize import collect_observations
from lavaloop.conversion.readout_fit import integer_readout, least_squares_readout, ridge_readout
from lavaloop.envs import EnvSpec
from lavaloop.options import ConvertOptions
from lavaloop.processes.dynamics import (
                                          encode_input,
                                          generator_increments,
                                          mapped_layer_step,
                                          regular_spikes,
                                          sparse_conn,
)

CONFIG = {"target": "advantage", "ce_weight": 0.1, "temperature": 0.1, "lr": 1e-3}
TRAINING_INSTANCES = 1_000_000   # training's chip instances start at this seed: lower ones are unseen
SURROGATE_STEEPNESS = 5.0        # slope of the surrogate spike function at threshold, per threshold
LEVEL_STEP = 0.01                # a chip layer's learning rate, in its weight levels (mean base current)
PER_CHIP_BATCH = (384, 128)      # readout "per-chip": observations that fit an instance's readout, and that score it


def generator_trains(art: MixedSignalArtifact, obs: np.ndarray) -> np.ndarray:
    """The ON/OFF generators' spike trains (T, B, 2 n_obs) for observations (B, n_obs), exact."""
    payload = encode_input(obs.reshape(len(obs), -1), 1 << int(art.manifest["input_scale_bits"]),
                           int(art.manifest["input_bits"]))
    inc = generator_increments(payload, art.mapped.input_gain, ONE)
    phase = np.full(inc.shape, ONE // 2, np.int64)
    trains = np.empty((art.timesteps, *inc.shape), np.int64)
    for k in range(art.timesteps):
        phase, trains[k] = regular_spikes(phase, inc, ONE)
    return trains[..., :-1]


class ChipModel(torch.nn.Module):
    """The mapped network as the chip computes it on one instance (see the module docstring).

    Parameters
    ----------
    art: the mapped artifact (its codes, currents and readout are the starting point).
    """

    def __init__(self, art: MixedSignalArtifact):
        super().__init__()
        self.art, self.profile = art, art.profile
        self.layers = art.mapped.layers
        self.levels = self.profile.fan_in + 1 if self.profile.repeated_synapses else self.profile.weight_levels
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.tensor(l.weights().T, dtype=torch.float32)) for l in self.layers])
        self.masks = [torch.tensor(l.code != 0) for l in self.layers]
        shift, self.rate = art.manifest["mapping"]["readout_shift"], float(art.manifest["mapping"]["rate"])
        scale = art.timesteps * self.rate / 2.0 ** shift    # readout per activation unit
        self.readout_w = torch.nn.Parameter(torch.tensor(art.mapped.readout_weight * scale, dtype=torch.float32))
        self.readout_b = torch.nn.Parameter(torch.tensor(art.mapped.readout_bias / 2.0 ** shift, dtype=torch.float32))
        self.sample(None, 0.0)

    def sample(self, seed: int | None, sigma: float) -> None:
        """Use chip instance `seed` (None: nominal) with mismatch sigma for the next forward passes."""
        self.mismatch = draw_mismatch(self.layers, seed, sigma)
        self.instance = instance_params(self.layers, self.profile, self.mismatch)

    def codes(self, i: int) -> np.ndarray:
        """Signed level codes of layer i's trained weights, with the mapping's nominal currents."""
        layer, w = self.layers[i], self.weights[i].detach().numpy().astype(np.float64)
        base = layer.currents[layer.core, :, 0]                 # (n, 2): base current per type
        b = np.where(w >= 0, base[:, None, 0], base[:, None, 1])
        code = np.clip(np.rint(np.abs(w) / b), 0, self.levels - 1) * np.sign(w)
        return np.where(self.masks[i].numpy(), code, 0).astype(np.int16)

    def instance_weights(self, i: int) -> np.ndarray:
        """Layer i's analog weights (n_in + 1, n) on the current instance: the trained weights'
        codes made of the instance's currents (`ChipLayer.weights`)."""
        layer = self.layers[i]
        return replace(layer, code=self.codes(i)).weights(layer.currents * self.mismatch[i]["currents"])

    def forward(self, trains: np.ndarray) -> torch.Tensor:
        """Readout values (B, |A|) from the generators' trains (T, B, 2 n_obs)."""
        return self.features(trains) @ self.readout_w.T + self.readout_b

    @torch.no_grad()
    def fit_readout(self, obs: np.ndarray, target: np.ndarray, ridge: float = 1e-3, chunk: int = 1024) -> None:
        """Set the readout to the least-squares fit of `target` (B, |A|) on the last chip layer's
        activations for `obs` on the current instance (ridge-regularized, bias unpenalized)."""
        feats = torch.cat([self.features(generator_trains(self.art, obs[i:i + chunk]))
                           for i in range(0, len(obs), chunk)])
        w, b = least_squares_readout(feats.numpy(), target, ridge)
        self.readout_w.copy_(torch.as_tensor(w, dtype=torch.float32))
        self.readout_b.copy_(torch.as_tensor(b, dtype=torch.float32))

    def features(self, trains: np.ndarray) -> torch.Tensor:
        """The last chip layer's activations (B, n) (count / (T rate)) from the generators'
        trains (T, B, 2 n_obs). The spikes are the chip's own: every layer is stepped with
        `dynamics.mapped_layer_step` on the instance's parameters, as the emulator does; the
        gradient flows back through `surrogate_spikes`."""
        spikes, batch = torch.as_tensor(trains, dtype=torch.float32), trains.shape[1]
        for i, p in enumerate(self.instance):
            conn = self.instance_weights(i)
            layer = {**p, "conn": sparse_conn(conn)}   # event-driven drive
            n = conn.shape[1]
            state = {"i_syn": np.zeros((batch, n)), "v": np.zeros((batch, n)), "refr": np.zeros((batch, n), np.int64)}
            out, refractory = [], []
            for frame in trains:
                refractory.append(state["refr"] > 0)
                out.append(mapped_layer_step(state, frame, layer))
            trains = np.stack(out)
            w = straight_through(self.weights[i] * self.masks[i], torch.tensor(conn.T, dtype=torch.float32))
            spikes = surrogate_spikes(spikes, w, p, trains, np.stack(refractory))
        return spikes.mean(0) / self.rate

    @torch.no_grad()
    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Readout values for observations (numpy), as FeedForwardQ.q_values."""
        obs = np.asarray(obs)
        return self(generator_trains(self.art, obs.reshape(len(obs), -1) if obs.ndim > 1 else obs[None])).numpy()

    def to_artifact(self, manifest: dict) -> MixedSignalArtifact:
        """The artifact with the trained codes and readout (the mapping's currents)."""
        layers = [replace(l, code=self.codes(i)) for i, l in enumerate(self.layers)]
        w_ro, b_ro, shift = integer_readout(self.readout_w.detach().numpy().astype(np.float64)
                                            / (self.art.timesteps * self.rate),
                                            self.readout_b.detach().numpy().astype(np.float64))
        mapping = {**manifest["mapping"], "readout_shift": shift}
        mapped = replace(self.art.mapped, layers=layers, readout_weight=w_ro, readout_bias=b_ro, report=mapping)
        return MixedSignalArtifact({**manifest, "mapping": mapping}, mapped, self.art.source)


def surrogate_spikes(spikes_in: torch.Tensor, w: torch.Tensor, p: dict, spikes: np.ndarray,
                     refractory: np.ndarray) -> torch.Tensor:
    """A layer's spikes (T, B, n) with a gradient: the simulated `spikes` (0/1) forward, and
    backward the derivative of `lif_step`'s recurrence, stepped on `spikes_in` (T, B, n_in)
    through the weights `w` (n, n_in + 1; the bias generator last) with the instance's
    parameters `p`, each spike replaced by sigmoid(SURROGATE_STEEPNESS (v - vth) / vth).
    Resets and `refractory` (T, B, n: the neuron was refractory) come from the simulation and
    carry no gradient."""
    a_syn, a_mem, b_mem, gain, vth = (torch.as_tensor(np.asarray(p[k], np.float64), dtype=torch.float32)
                                      for k in ("a_syn", "a_mem", "b_mem", "gain", "vth"))
    drive = torch.cat([spikes_in, torch.ones(*spikes_in.shape[:2], 1)], -1) @ w.T * gain
    fired = torch.as_tensor(spikes, dtype=torch.float32)
    held = torch.as_tensor(refractory)
    i_syn = v = torch.zeros(drive.shape[1:])
    out = []
    # unbind, not drive[t]: indexing's backward writes a zero-padded copy of the whole drive per step
    # (O(T^2) memory traffic; 78 % of a T = 128 training step), unbind's stacks the steps' gradients once
    for d, h, f in zip(drive.unbind(0), held.unbind(0), fired.unbind(0)):
        i_syn = a_syn * i_syn + d
        v = torch.where(h, 0.0, a_mem * v + b_mem * i_syn)
        out.append(straight_through(torch.sigmoid(SURROGATE_STEEPNESS * (v - vth) / vth), f))
        v = v * (1.0 - f)
    return torch.stack(out)


def per_chip_step(features: Callable[[object], torch.Tensor], opt: torch.optim.Optimizer, x, target: torch.Tensor,
                  greedy: torch.Tensor, cfg: DistillConfig) -> dict:
    """One optimizer step with the readout refitted to the current instance: the ridge fit
    (`ridge_readout`, differentiable) of the advantages `target` on `features(x)` of the first
    PER_CHIP_BATCH[0] observations, `distill_loss` on the rest, so the fit is scored on
    observations it did not see. `features`: e.g. `ChipModel.features` (x: the generators'
    trains). Returns the loss terms."""
    feats = features(x)
    fit = PER_CHIP_BATCH[0]
    w, b = ridge_readout(feats[:fit], target[:fit])
    loss, terms = distill_loss(feats[fit:] @ w.T + b, target[fit:], greedy[fit:], cfg, advantage=True)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return terms


def chip_optimizer(model: ChipModel, readout_lr: float, level_step: float = LEVEL_STEP) -> torch.optim.Adam:
    """Adam over the model's parameters: every chip layer's weights at a learning rate of
    `level_step` of its mean base current (a weight changes code only when it moves by one
    level, so one global rate is too slow for one layer and too fast for another), the
    readout at `readout_lr`. The default, 0.01 level per step, is about the global 1e-3 the
    training used before; on the nominal chip (1,000 steps, held-out agreement) 0.03 and 0.1
    fit the training observations closer but reached 0.906 and 0.858, against 0.913."""
    groups = [{"params": [w], "lr": level_step * float(layer.currents[..., 0].mean())}
              for w, layer in zip(model.weights, model.layers)]
    return torch.optim.Adam([*groups, {"params": [model.readout_w, model.readout_b], "lr": readout_lr}])


@torch.no_grad()
def chip_agreement(model: ChipModel, source: FeedForwardQ, obs: np.ndarray, chunk: int = 512) -> float:
    """Fraction of observations where the model (on its current instance) picks the source's action."""
    same = 0
    for i in range(0, len(obs), chunk):
        x = obs[i:i + chunk]
        same += int((model.q_values(x).argmax(1) == source.q_values(x).argmax(1)).sum())
    return same / max(len(obs), 1)


def advantages(source: FeedForwardQ, obs: np.ndarray, units: float | None = None) -> tuple[np.ndarray, float]:
    """(the source's Q minus its mean over actions, in `units`; units: their RMS on `obs` if None)."""
    q = source.q_values(obs)
    adv = q - q.mean(1, keepdims=True)
    units = units or float(np.sqrt(np.mean(adv ** 2))) or 1.0
    return adv / units, units


def heldout_observations(source: FeedForwardQ, spec: EnvSpec, opts: ConvertOptions, steps: int = 2000) -> np.ndarray:
    """Observations of held-out source episodes (the seed after the calibration's)."""
    return collect_observations(source, spec, steps, opts.calib_seed + HELDOUT_SEED_OFFSET, opts.calib_epsilon)


def calibrate_readout(art: MixedSignalArtifact, source: FeedForwardQ, obs: np.ndarray, heldout: np.ndarray
                      ) -> MixedSignalArtifact:
    """The host readout fitted by least squares to the source's advantages on the nominal chip's
    features for the calibration observations (the mapping's own readout, scaled from the
    source's output layer, inherits every systematic rate error of the chip); records the
    nominal chip's agreement on `heldout` before and after."""
    model = ChipModel(art)
    before = chip_agreement(model, source, heldout)
    model.fit_readout(np.asarray(obs), advantages(source, obs)[0])
    after = chip_agreement(model, source, heldout)
    report = {"observations": len(obs), "heldout_observations": len(heldout), "heldout_before": before,
              "heldout_after": after}
    return model.to_artifact({**art.manifest, "readout_calibration": report})


def train_through_chip(art: MixedSignalArtifact, source: FeedForwardQ, obs: np.ndarray, spec: EnvSpec,
                       heldout: np.ndarray, opts: ConvertOptions, progress: bool = True) -> MixedSignalArtifact:
    """Fine-tune a mapped artifact (readout calibrated) through its chip (see the module docstring).

    Parameters
    ----------
    art: the mapped artifact. source: the float source network.
    obs: calibration observations. spec: the environment (DAgger rounds).
    heldout: held-out source observations for the report.
    opts: `distill_steps` (Adam steps), `distill_mismatch` (sigma sampled; None: the
        profile's), `distill_readout` ("shared" or "per-chip", see the module docstring),
        `distill_dagger_rounds` / `_steps`, `calib_seed`, `calib_epsilon`.
    progress: show a progress bar.
    """
    t0 = time.time()
    sigma = art.profile.mismatch_sigma if opts.distill_mismatch is None else opts.distill_mismatch
    cfg = DistillConfig(steps=opts.distill_steps, seed=opts.calib_seed, model="spikes",
                        dagger_rounds=opts.distill_dagger_rounds, dagger_steps=opts.distill_dagger_steps, **CONFIG)
    torch.manual_seed(cfg.seed)
    model = ChipModel(art)
    before = chip_agreement(model, source, heldout)
    opt = chip_optimizer(model, cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    x_all = np.asarray(obs)
    units = advantages(source, x_all)[1]
    rounds = np.array_split(np.arange(cfg.steps), cfg.dagger_rounds + 1)
    per_chip = opts.distill_readout == "per-chip"
    batch = sum(PER_CHIP_BATCH) if per_chip else cfg.batch
    bar = tqdm(total=cfg.steps, desc="training through the chip", leave=False, disable=None if progress else True)
    losses = {}
    try:
        for r, steps in enumerate(rounds):
            if r > 0:   # DAgger: where the nominal chip goes when it acts, labelled by the source
                model.sample(None, 0.0)
                visited = collect_observations(model, spec, cfg.dagger_steps, dagger_seed(cfg.seed, r),
                                               opts.calib_epsilon)
                x_all = np.concatenate([x_all, visited.astype(x_all.dtype)])
            target = torch.as_tensor(advantages(source, x_all, units)[0], dtype=torch.float32)
            greedy = target.argmax(1)
            for step in steps:
                idx = torch.randint(len(x_all), (min(batch, len(x_all)),), generator=gen).numpy()
                model.sample(TRAINING_INSTANCES + int(step) if sigma > 0 else None, sigma)
                trains = generator_trains(art, x_all[idx])
                losses = (per_chip_step(model.features, opt, trains, target[idx], greedy[idx], cfg) if per_chip else
                          distill_step(model, opt, trains, target[idx], greedy[idx], cfg, advantage=True))
                bar.update(1)
    finally:
        bar.close()
    model.sample(None, 0.0)
    if per_chip:   # the stored readout: the nominal chip's fit, as every instance's will be
        model.fit_readout(x_all, advantages(source, x_all)[0])
    after = chip_agreement(model, source, heldout)
    report = {"sigma": sigma, "readout": opts.distill_readout, "steps": cfg.steps, "observations": len(x_all),
              "final_loss": losses, "heldout_observations": len(heldout), "heldout_before": before,
              "heldout_after": after, "config": cfg.__dict__, "seconds": round(time.time() - t0, 2)}
    return model.to_artifact({**art.manifest, "mismatch_training": report})
