"""What limits the CartPole DQN's agreement on a DYNAP-SE chip: the topology, the weight levels,
or the chip's dynamics? Float ceilings of the mapped network's constraints, one at a time.

    python -m benchmarks.mixed_signal_ceiling          # results/mixed_signal_ceiling.json (~5 min)

The nominal chip agrees with the source on 0.87 of held-out observations after training
through it (`convert --profile dynapse2 --fan-in prune --distill`; docs/mixed_signal.md).
Here the same distillation (advantage MSE + 0.1 x cross-entropy at temperature 0.1, Adam
1e-3, `conversion.distill.distill_step`) trains float networks that keep one constraint
each, from the source's weights, on 20k calibration observations; agreement on 4k held-out
source observations (seeds as the converter's):

* full: 4-256-256-2 (no constraint);
* prune: each layer-2 neuron keeps its 63 largest inputs (the chip's fan-in 64 with the bias);
* narrow: 63 layer-1 neurons (those with the largest |W1| x outgoing |W2|): a structured
  pruning with which every neuron's fan-in fits;
* + 4-bit levels: weights are integer multiples 0..15 of one base per layer and sign
  (straight-through), as `dynapse2`'s 4-bit codes with a core's currents (the chip's per-core
  bases and bit currents are finer than this: an upper bound on what levels cost).

Then what device mismatch costs without spikes (`gain_mismatch`): the full float network
whose every hidden neuron has a frozen gain g ~ max(1 + N(0, s), 0.05) per instance,
h = relu(g z), for s in 0.1, 0.2, 0.3 (at mismatch sigma 0.1 a dynapse2 neuron's spike count
scales by a factor of SD 0.2-0.3 against the nominal chip's, measured per neuron). Over 20
instances (median, 5th percentile of the held-out agreement): the readout fitted to the
nominal network, or refitted per instance on 2,000 calibration observations (least squares to
the advantages, as `run --calibrate-readout`); before and after training through sampled
gains at s (the distillation above; a new instance every minibatch), with one shared readout
trained along, or with the readout refitted on every sampled instance inside the loss
(`conversion.mismatch_training.per_chip_step`, as `convert --distill-readout per-chip`).

The spread those s stand for is measured on the chip (`chip_rate_spread`): the DQN mapped
onto `dynapse2` (prune, T = 32, 0.45 spikes per step, untrained), every chip layer's spike
counts for 1,000 held-out source observations on the nominal chip and on instances 0-2 at
sigma 0.1; per neuron whose nominal count varies (SD > 0.5 spike), the least-squares slope
from its nominal count to its count on the instance: median and SD over neurons. Untrained,
the pruned second layer carries nothing (no neuron varies; training through the chip revives
a few), so the slopes are the first layer's.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from lavaloop.atomic import write_json  # noqa: E402
from lavaloop.conversion.distill import DistillConfig, distill_step, straight_through  # noqa: E402
from lavaloop.conversion.loaders import load_checkpoint  # noqa: E402
from lavaloop.conversion.mismatch_training import PER_CHIP_BATCH, advantages, per_chip_step  # noqa: E402
from lavaloop.conversion.models.qnet import FeedForwardQ  # noqa: E402
from lavaloop.conversion.normalize import collect_observations  # noqa: E402
from lavaloop.conversion.readout_fit import least_squares_readout  # noqa: E402
from lavaloop.envs import EnvSpec  # noqa: E402

OUT = Path("results/mixed_signal_ceiling.json")
GAIN_SIGMAS = (0.1, 0.2, 0.3)
CALIBRATION = 2000          # observations a per-instance readout is fitted on
TRAINING_SEEDS = 1_000_000  # gain instances drawn in training (evaluation: 0-19)
FAN_IN = 63          # the chip's 64 synapses, one of them for the bias generator
LEVELS = 15          # 4-bit codes


def four_bit(w: torch.Tensor) -> torch.Tensor:
    """w on 16 levels per sign (one base each: the largest magnitude / 15), straight-through."""
    pos, neg = w.clamp(min=0), (-w).clamp(min=0)
    bp, bn = pos.max().detach() / LEVELS, neg.max().detach() / LEVELS
    q = torch.round(pos / bp).clamp(0, LEVELS) * bp - torch.round(neg / bn).clamp(0, LEVELS) * bn
    return straight_through(w, q)


class Constrained(nn.Module):
    """The source MLP (two hidden layers) with the kept layer-1 neurons, a layer-2 input mask and
    optionally 4-bit levels on the two chip layers (the readout is the host's)."""

    def __init__(self, source: FeedForwardQ, keep: torch.Tensor, mask: torch.Tensor | None, levels: bool):
        super().__init__()
        (w1, b1), (w2, b2), (w3, b3) = [(m.weight.detach(), m.bias.detach()) for m in source.network
                                        if isinstance(m, nn.Linear)]
        self.w1, self.b1 = nn.Parameter(w1[keep].clone()), nn.Parameter(b1[keep].clone())
        self.w2, self.b2 = nn.Parameter(w2[:, keep].clone()), nn.Parameter(b2.clone())
        self.w3, self.b3 = nn.Parameter(w3.clone()), nn.Parameter(b3.clone())
        self.mask = torch.ones_like(self.w2) if mask is None else mask[:, keep]
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w1, w2 = self.w1, self.w2 * self.mask
        if self.levels:
            w1, w2 = four_bit(w1), four_bit(w2)
        h = torch.relu(x @ w1.T + self.b1)
        return torch.relu(h @ w2.T + self.b2) @ self.w3.T + self.b3


class GainMismatch(nn.Module):
    """The source MLP whose hidden neurons' outputs are scaled by per-instance gains (`sample`)."""

    def __init__(self, source: FeedForwardQ):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(m.in_features, m.out_features) for m in source.network
                                     if isinstance(m, nn.Linear)])
        self.layers.load_state_dict(nn.ModuleList([m for m in source.network if isinstance(m, nn.Linear)])
                                    .state_dict())
        self.sample(None, 0.0)

    def sample(self, seed: int | None, s: float) -> None:
        """Gains max(1 + N(0, s), 0.05) per hidden neuron from `seed` (None or s = 0: all 1)."""
        if seed is None or s == 0:
            self.gains = [torch.ones(l.out_features) for l in self.layers[:-1]]
            return
        gen = torch.Generator().manual_seed(seed)
        self.gains = [torch.clamp(1 + s * torch.randn(l.out_features, generator=gen), min=0.05)
                      for l in self.layers[:-1]]

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        for layer, g in zip(self.layers[:-1], self.gains):
            x = torch.relu(g * layer(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[-1](self.hidden(x))

    @torch.no_grad()
    def fit_readout(self, x: torch.Tensor, target: torch.Tensor) -> None:
        """The readout as least squares of `target` on this instance's last hidden layer."""
        w, b = least_squares_readout(self.hidden(x).numpy(), target.numpy())
        self.layers[-1].weight.copy_(torch.as_tensor(w))
        self.layers[-1].bias.copy_(torch.as_tensor(b))


def over_instances(model: GainMismatch, s: float, refit: bool, x: torch.Tensor, target: torch.Tensor,
                   xh: torch.Tensor, greedy_h: torch.Tensor, instances: int = 20) -> dict:
    """Median and 5th percentile of the held-out agreement over unseen instances (seeds 0..)."""
    nominal = [p.detach().clone() for p in model.layers[-1].parameters()]
    ags = []
    for k in range(instances):
        model.sample(k, s)
        if refit:
            model.fit_readout(x, target)
        ags.append(agreement(model, xh, greedy_h))
        with torch.no_grad():
            for p, p0 in zip(model.layers[-1].parameters(), nominal):
                p.copy_(p0)
    model.sample(None, 0.0)
    return {"agreement_median": float(np.median(ags)), "agreement_p05": float(np.percentile(ags, 5))}


def gain_mismatch(source: FeedForwardQ, x: torch.Tensor, target: torch.Tensor, xh: torch.Tensor,
                  greedy_h: torch.Tensor, cfg: DistillConfig, steps: int) -> dict:
    """Rows of what per-neuron gain mismatch costs the float network (see the module docstring)."""
    rows = {}
    for s in GAIN_SIGMAS:
        for training in ("source", "shared", "per-instance"):
            model = GainMismatch(source)
            model.fit_readout(x[:CALIBRATION], target[:CALIBRATION])    # the readout in advantage units
            if training != "source":
                opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
                gen = torch.Generator().manual_seed(0)
                batch = sum(PER_CHIP_BATCH) if training == "per-instance" else cfg.batch
                for step in range(steps):
                    model.sample(TRAINING_SEEDS + step, s)
                    idx = torch.randint(len(x), (batch,), generator=gen)
                    if training == "per-instance":
                        per_chip_step(model.hidden, opt, x[idx], target[idx], target[idx].argmax(1), cfg)
                    else:
                        distill_step(model, opt, x[idx], target[idx], target[idx].argmax(1), cfg, advantage=True)
                model.sample(None, 0.0)
                if training == "per-instance":   # its nominal readout: the fit, as every instance's
                    model.fit_readout(x[:CALIBRATION], target[:CALIBRATION])
            row = {f"readout_{mode}": over_instances(model, s, mode == "per_instance", x[:CALIBRATION],
                                                      target[:CALIBRATION], xh, greedy_h)
                   for mode in ("nominal", "per_instance")}
            label = {"source": "source", "shared": "trained through gains",
                     "per-instance": "trained through gains, readout per instance"}[training]
            rows[f"s={s}, {label}"] = row
            print(f"gain mismatch s={s} {label}: " + "; ".join(
                f"{k} {v['agreement_median']:.3f} [{v['agreement_p05']:.3f}]" for k, v in row.items()), flush=True)
    return rows


def chip_rate_spread(source: FeedForwardQ, held: np.ndarray, instances: int = 3, sigma: float = 0.1) -> dict:
    """Per chip layer: how a chip instance scales each neuron's spike count (see the module docstring)."""
    import lavaloop
    from lavaloop.deploy.mixed_signal import MixedSignalNetwork
    from lavaloop.processes.dynamics import encode_input

    art = lavaloop.convert("checkpoints/cartpole_dqn.pt", env="CartPole-v1", profile="dynapse2", fan_in="prune",
                           timesteps=32, calib_steps=5000, spike_rate=0.45)
    payload = encode_input(held, 1 << int(art.manifest["input_scale_bits"]), art.manifest["input_bits"])
    nominal = MixedSignalNetwork(art, art.instance(None)).layer_counts(payload)
    layers = []
    for j, counts in enumerate(nominal):
        varies = counts.std(0) > 0.5
        row = {"neurons": int(counts.shape[1]), "varying": int(varies.sum()), "silent": int((counts.max(0) == 0).sum()),
               "mean_count_varying": float(counts[:, varies].mean()) if varies.any() else None,
               "slope_median": [], "slope_sd": []}
        for k in range(instances if varies.any() else 0):
            other = MixedSignalNetwork(art, art.instance(k, sigma)).layer_counts(payload)[j]
            slopes = [np.polyfit(counts[:, i], other[:, i], 1)[0] for i in np.flatnonzero(varies)]
            row["slope_median"].append(float(np.median(slopes)))
            row["slope_sd"].append(float(np.std(slopes)))
        print(f"chip layer {j}: {row['varying']} of {row['neurons']} neurons vary, {row['silent']} silent; count "
              f"slope on instances 0-{instances - 1}: median {np.round(row['slope_median'], 2)}, "
              f"SD {np.round(row['slope_sd'], 2)}", flush=True)   # no slopes where no neuron varies
        layers.append(row)
    return {"profile": "dynapse2", "mismatch_sigma": sigma, "timesteps": 32, "spike_rate": 0.45, "fan_in": "prune",
            "observations": len(held), "layers": layers}


def agreement(model: nn.Module, x: torch.Tensor, greedy: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == greedy).float().mean())


def main(steps: int = 4000) -> None:
    t0 = time.time()
    torch.manual_seed(0)
    source = FeedForwardQ.from_layers(load_checkpoint("checkpoints/cartpole_dqn.pt").layers)
    spec = EnvSpec("CartPole-v1")
    obs = collect_observations(source, spec, 20_000, 0, 0.0)
    held = collect_observations(source, spec, 4000, 100_000, 0.0)
    target, units = advantages(source, obs)
    target = torch.as_tensor(target, dtype=torch.float32)
    x, xh = torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(held, dtype=torch.float32)
    greedy_h = torch.as_tensor(advantages(source, held, units)[0].argmax(1))
    w1, w2 = (m.weight.detach() for m in source.network if isinstance(m, nn.Linear) and m.out_features > 2)
    everything = torch.arange(w1.shape[0])
    top = torch.topk(w2.abs(), FAN_IN, dim=1).indices
    prune = torch.zeros_like(w2).scatter_(1, top, 1.0)
    narrow = torch.topk(w2.abs().sum(0) * w1.norm(dim=1), FAN_IN).indices
    cfg = DistillConfig(steps=steps, lr=1e-3, ce_weight=0.1, temperature=0.1, target="advantage")
    rows = {}
    for name, keep, mask, levels in (("full", everything, None, False), ("prune", everything, prune, False),
                                     ("narrow", narrow, None, False), ("prune, 4-bit levels", everything, prune, True),
                                     ("narrow, 4-bit levels", narrow, None, True)):
        model = Constrained(source, keep, mask, levels)
        before = agreement(model, xh, greedy_h)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        gen = torch.Generator().manual_seed(0)
        for _ in range(steps):
            idx = torch.randint(len(x), (cfg.batch,), generator=gen)
            distill_step(model, opt, x[idx], target[idx], target[idx].argmax(1), cfg, advantage=True)
        rows[name] = {"heldout_before": before, "heldout_after": agreement(model, xh, greedy_h),
                      "layer1_neurons": len(keep), "layer2_fan_in": int(model.mask.sum(1).max()), "levels": levels}
        print(f"{name:22s} held-out agreement {before:.3f} -> {rows[name]['heldout_after']:.3f}", flush=True)
    write_json(OUT, {"benchmark": "float ceilings of the CartPole DQN's dynapse2 mapping constraints",
                     "settings": f"{steps} distillation steps, 20k calibration / 4k held-out source observations",
                     "rows": rows,
                     "gain_mismatch": gain_mismatch(source, x, target, xh, greedy_h, cfg, steps),
                     "chip_rate_spread": chip_rate_spread(source, held[:1000]),
                     "wall_s": round(time.time() - t0, 1)})


if __name__ == "__main__":
    main()
