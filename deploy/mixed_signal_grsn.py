"""GRSN and LIF-with-TAP policies with their spiking membranes on a mixed-signal chip
(DYNAP-SE): a hybrid host + chip emulation.

What maps. A DYNAP-SE neuron sums synaptic currents and leaks; it cannot multiply two
dynamic signals. The GRSN cell's gated state h = F h + (1 - F) C, with F = sigmoid(W_f x)
changing every step, is such a product, so the gates, h, the embeddings and the head stay
on the host (a round trip per env step). What maps is the spiking membrane that TAP carries
across env steps, v += (I - v) / tau, spike at 1: held for P chip steps with the current I,
a leaky neuron gives v <- a^P v + (1 - a^P) I, the cell's update when a^P = 1 - 1/tau. So
the membrane time constant is tuned to P dt / -ln(1 - 1/tau) (about 20 ms for P = 14 at
1 ms: the profile's own), and one env step is P chip steps. The host reads "spiked in the
window" as the cell's spike. (The LIF-with-TAP baseline is the same membrane with I = W x + b.)

Where the chip differs from the cell, each switchable to measure it (`input="host"` keeps
the membrane on the host: the float policy itself):
* `input="current"`: the host's I held as an ideal current for the window (an idealization:
  a DYNAP-SE neuron takes its input only through synapses).
  `input="spikes"`: I sent as regular spike trains from the board's generators, its positive
  part to an excitatory and its negative part to an inhibitory synapse of the neuron
  (DPI, the fast types), at I / i_max spikes per step (i_max: the calibration's 99.9th
  percentile of |I|, clipped above), the weight making the steady current I. The 5 ms
  synapse smooths I over the window, so a window is then only close to the cell's update.
* Always: the chip neuron resets to rest (not by subtraction), is refractory for a step and
  may spike more than once in a window; and each chip instance's mismatch (threshold, time
  constants, gain, shared weight currents: 1 + N(0, sigma), `conversion.mixed_signal`).
* Not modelled: `lif_step`'s membrane may go below rest, a DPI membrane cannot (it matters
  for the LIF policy's negative currents, not for GRSN's h >= 0).
The neurons are `processes.dynamics.lif_step`, the mapped DQNs' and the dreaming agent's.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
from torch import nn

from lavaloop.conversion.grsn import load_policy
from lavaloop.conversion.mixed_signal import ONE, ChipLayer, bits_of, decays, draw_instance, refractory_steps
from lavaloop.conversion.models.grsn import (
    CHIP_SYN_DECAY,
    CHIP_WINDOW,
    GRSNCell,
    GRSNChipCell,
    LIFCell,
    RecurrentNet,
    greedy_action,
    lif_update,
    window_update,
)
from lavaloop.envs import EnvSpec, make_env
from lavaloop.errors import ProfileError
from lavaloop.processes.dynamics import lif_step, population_window
from lavaloop.profiles import MixedSignalProfile, load_profile
from lavaloop.trainers.recurrent import Actor, episode_returns

INPUT_MODES = ("host", "current", "spikes")
CURRENT_PERCENTILE = 99.9


def membrane_profile(profile: MixedSignalProfile, tau: float, steps: int) -> MixedSignalProfile:
    """The profile with its membrane time constant tuned so that `steps` steps decay v by
    1 - 1/tau, the cell's factor per env step (a chip's leak is a bias, set per core)."""
    return dataclasses.replace(profile, tau_mem_ms=steps * profile.dt_ms / -math.log(1.0 - 1.0 / tau))


def membrane_layer(n: int, profile: MixedSignalProfile, i_max: float) -> ChipLayer:
    """n chip neurons, neuron j fed by generator j (excitatory) and generator n + j (inhibitory),
    each synapse of weight i_max (1 - a_syn): a generator at I / i_max spikes per step makes the
    steady current I."""
    a_syn, _ = decays(profile)
    bits = bits_of(profile)
    cores = -(-n // profile.neurons_per_core)
    code = np.zeros((n, 2 * n + 1), np.int64)
    code[np.arange(n), np.arange(n)], code[np.arange(n), n + np.arange(n)] = 1, -1
    currents = np.broadcast_to(i_max * (1.0 - a_syn) * 2.0 ** np.arange(bits), (cores, 2, bits)).copy()
    return ChipLayer("membrane", code, np.arange(n) // profile.neurons_per_core, currents)


class ChipMembrane:
    """One chip instance's membrane layer, stepped one env step (one window) at a time."""

    def __init__(self, n: int, tau: float, profile: MixedSignalProfile, i_max: float, input_mode: str,
                 seed: int | None, sigma: float, steps: int = CHIP_WINDOW):
        if input_mode not in INPUT_MODES:
            raise ProfileError(f"input mode {input_mode!r}: expected one of {', '.join(INPUT_MODES)}")
        self.profile = membrane_profile(profile, tau, steps)
        self.n, self.i_max, self.input_mode, self.steps = n, i_max, input_mode, steps
        (p,) = draw_instance([membrane_layer(n, self.profile, i_max)], self.profile, seed, sigma)
        p["conn"] = p["conn"][:-1]                     # no bias generator
        if input_mode == "current":                    # the ideal current: I itself, times the neuron's gain
            p = {**p, "conn": np.eye(n), "a_syn": 0.0}
        self.p = p
        self.reset()

    def reset(self) -> None:
        self.state = {"i_syn": np.zeros(self.n), "v": np.zeros(self.n), "refr": np.zeros(self.n, np.int64)}
        self.phase = np.zeros(2 * self.n, np.int64)

    def window(self, current: np.ndarray) -> np.ndarray:
        """One env step: the neurons' spike counts over the window driven by `current` (n,)."""
        if self.input_mode == "current":
            return sum(lif_step(self.state, current, self.p) for _ in range(self.steps))
        rate = np.clip(np.concatenate([current, -current]) / self.i_max, 0.0, 1.0)
        self.phase, counts = population_window(self.state, self.phase, np.rint(rate * ONE).astype(np.int64),
                                               self.p, self.steps, ONE)
        return counts


class HybridCell(nn.Module):
    """A GRSN or LIF cell whose host part (gates, h, or the LIF's current) runs in torch and
    whose membrane runs on `chip` (None: on the host, as the cell computes it); one env step
    at a time, batch 1. `frozen_gate` (GRSN only): F replaced by a constant per neuron (an
    ablation: what the dynamic gate, the product a chip lacks, is worth)."""

    def __init__(self, cell: nn.Module, chip: ChipMembrane | None, frozen_gate: torch.Tensor | None = None):
        super().__init__()
        self.cell, self.chip, self.frozen_gate = cell, chip, frozen_gate
        self.currents: list[np.ndarray] = []         # per env step: the membranes' input current
        self.gates: list[np.ndarray] = []            # and a GRSN's forget gate
        self.spike_counts: list[np.ndarray] = []     # and, on a chip, the window's spike counts

    def zero_state(self, batch: int):
        if self.chip is not None:
            self.chip.reset()
        return self.cell.zero_state(batch)

    def forward(self, x: torch.Tensor, state):
        if isinstance(self.cell, GRSNCell):
            f, c = self.cell.gates(x[0])
            if self.frozen_gate is not None:
                f = self.frozen_gate.expand_as(f)
            current = f * state[0] + (1 - f) * c
            host, membrane = (current,), state[1:]
            self.gates.append(f[0].numpy())
        else:
            current, host, membrane = self.cell.w(x[0]), (), state
        self.currents.append(current[0].numpy())
        if self.chip is not None:
            counts = self.chip.window(current[0].double().numpy())
            self.spike_counts.append(counts)
            return torch.as_tensor(counts > 0, dtype=torch.float32).view(1, 1, -1), (*host, *membrane)
        if isinstance(self.cell, GRSNChipCell):      # the membrane on the host: the cell's own update
            membrane, s = window_update(membrane, current, self.cell.tau, CHIP_SYN_DECAY)
            return s.view(1, 1, -1), (*host, *membrane)
        v, s = lif_update(membrane[0], current, self.cell.tau)
        return s.view(1, 1, -1), (*host, v)


def membrane_currents(net: RecurrentNet, spec: EnvSpec, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The float policy's membrane input currents (steps, hidden) over greedy episodes, and
    its GRSN forget gates (steps, hidden; empty for a LIF cell)."""
    host = copy.deepcopy(net)
    host.rnn = HybridCell(host.rnn, None)        # the membranes on the host: the float policy itself
    episode_returns(host, spec, seeds)
    return np.array(host.rnn.currents), np.array(host.rnn.gates)


@torch.no_grad()
def play(chip_net: RecurrentNet, float_net: RecurrentNet, spec: EnvSpec, seeds: list[int]) -> dict:
    """Closed-loop greedy episodes of `chip_net`, with `float_net` shown the same observations,
    actions and rewards: returns and the share of steps where both choose the same action."""
    env = make_env(spec)
    chip, ref = Actor(chip_net), Actor(float_net)
    returns, same, steps = [], 0, 0
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            chip.reset(), ref.reset()
            total, done = 0.0, False
            while not done:
                a = greedy_action(chip_net.cfg, chip.values(obs))
                same += a == greedy_action(float_net.cfg, ref.values(obs))
                steps += 1
                obs, r, term, trunc, _ = env.step(a)
                chip.observe(a, r), ref.observe(a, r)
                total, done = total + float(r), term or trunc
            returns.append(total)
    finally:
        env.close()
    return {"returns": returns, "mean_return": float(np.mean(returns)), "agreement": same / steps, "steps": steps}


class HybridPolicy:
    """A trained GRSN or LIF-with-TAP policy (discrete actions) prepared for chip instances.

    Parameters
    ----------
    path: the policy checkpoint. env_id: its POMDP task. profile: a mixed-signal profile name.
    calib_seeds: episodes of the float policy that set i_max and the frozen gates.
    """

    def __init__(self, path, env_id: str, profile: str = "dynapse2", calib_seeds: list[int] | None = None):
        self.net, _, _ = load_policy(path)
        if not isinstance(self.net.rnn, (GRSNCell, LIFCell)) or self.net.cfg.continuous:
            raise ProfileError(f"{path}: only discrete GRSN and LIF-with-TAP policies map onto a mixed-signal chip "
                               f"here (this one: {self.net.cfg.cell}, continuous={self.net.cfg.continuous})")
        self.profile = load_profile(profile)
        if not isinstance(self.profile, MixedSignalProfile):
            raise ProfileError(f"profile {profile!r} is not a mixed-signal chip")
        if isinstance(self.net.rnn, GRSNChipCell) and not (math.isclose(decays(self.profile)[0], CHIP_SYN_DECAY)
                                                          and refractory_steps(self.profile) == 1):
            raise ProfileError(f"{path}: a grsn_chip policy is trained for 5 ms synapses and a 1-step refractory "
                               f"period at 1 ms steps; {profile!r} has {self.profile.tau_syn_fast_ms} ms and "
                               f"{self.profile.refractory_ms} ms at {self.profile.dt_ms} ms")
        self.spec = EnvSpec.for_id(env_id)
        currents, gates = membrane_currents(self.net, self.spec, calib_seeds or list(range(1000, 1020)))
        self.i_max = float(np.percentile(np.abs(currents), CURRENT_PERCENTILE))
        self.mean_gate = torch.as_tensor(gates.mean(0), dtype=torch.float32) if len(gates) else None

    def on_chip(self, input_mode: str, seed: int | None, sigma: float, frozen_gate: bool = False) -> RecurrentNet:
        """The policy with its membranes on chip instance `seed` (None: nominal) at mismatch
        `sigma`; input_mode "host" keeps them on the host (no chip: the float policy, or with
        `frozen_gate` the GRSN with its forget gate frozen to its per-neuron mean)."""
        if frozen_gate and self.mean_gate is None:
            raise ProfileError("frozen_gate applies to GRSN policies only")
        net = copy.deepcopy(self.net)
        chip = None if input_mode == "host" else ChipMembrane(net.cfg.hidden, net.rnn.tau, self.profile, self.i_max,
                                                              input_mode, seed, sigma)
        net.rnn = HybridCell(net.rnn, chip, self.mean_gate if frozen_gate else None)
        return net

    def evaluate(self, seeds: list[int], input_mode: str = "spikes", chip_seed: int | None = None,
                 sigma: float = 0.0, frozen_gate: bool = False) -> dict:
        """Returns and agreement with the float policy on one chip instance, plus the chip's
        spikes per env step (all neurons)."""
        net = self.on_chip(input_mode, chip_seed, sigma, frozen_gate)
        res = play(net, self.net, self.spec, seeds)
        counts = np.array(net.rnn.spike_counts)
        return {**res, "spikes_per_step": float(counts.sum(1).mean()) if len(counts) else None}
