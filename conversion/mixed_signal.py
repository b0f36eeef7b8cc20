"""Mapping a converted DQN onto a mixed-signal chip (the DYNAP-SE profiles), and its chip instances.

What the chip offers, and what the mapping makes of the normalized network (ReLU
activations in [0, 1] at the calibration percentile, `conversion.normalize`):

* **Inputs** are spike generators (on the board's FPGA, not chip neurons): every observation
  entry drives an ON and an OFF generator at rates proportional to its positive and negative
  parts (one spike per step at `input_range`, the calibration maximum with headroom), and a
  bias generator spikes every step (`dynamics.generator_increments`).
* **Neurons** are LIF with DPI synapses (`dynamics.lif_step`) at the profile's time step, the
  fast synapse types (AMPA, GABA_A) with `tau_syn_fast_ms`. A chip neuron has no bias of its
  own: the bias generator carries each neuron's bias plus the offset that lifts it past the
  rheobase. Rate code: a hidden activation a is a * rate spikes per step (`--spike-rate`,
  default RATE) over a decision window of T steps that starts from rest; the LIF's window
  rate under a steady current (leak, refractory period and the synapse's rise included) is
  calibrated once per profile, T and rate (`rate_curve`), so that a pre-activation z becomes
  the current u0 + slope * z in threshold units.
* **Weights**: a synapse holds a signed code (the sign is its type: excitatory or inhibitory)
  whose weight is made of currents its core shares per type. `dynapse2`: 4 bit-currents
  (weight = sum of the code's bits times I_b, nominally I_b = base * 2**b); `dynapse1`: one
  current and repeated 1-bit synapses (weight = m * I, m entries of the fan-in). Neurons go
  to cores sorted by the scale of their weights, so a core holds neurons whose weights suit
  one set of levels; per core and type the base minimizes the squared error of its weights.
* **Fan-in** above the profile's limit: "split" gives every neuron partial-sum neurons (the
  positive and the negative part of its input from each group of inputs, a relay neuron
  adding them: exact in the rate limit, one more layer of latency), "prune" keeps the
  largest weights.
* The **output layer** is a readout on the host: 16-bit integer weights on the last chip
  layer's spike counts (the chip sends its spikes out; no neuron reads a membrane).

`draw_instance` gives one chip instance: every neuron's threshold, time constants and
synaptic gain and every core's shared currents scaled by 1 + N(0, sigma), frozen by a seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lavaloop.conversion.network import ConvLayer, DenseLayer, Layer
from lavaloop.conversion.readout_fit import integer_readout
from lavaloop.errors import ProfileError
from lavaloop.options import FAN_IN_MODES
from lavaloop.processes.dynamics import lif_step, on_grid

INPUT_BITS = 16      # the observation payload the board's FPGA turns into generator rates
RATE = 0.3            # default spikes per step of a hidden activation 1 (the refractory period caps it at
                      # 0.5; convert --spike-rate; 0.45 decides better on CartPole, docs/mixed_signal.md)
ONE = 1 << 16         # generator phase of one spike (increments are in these units)
INPUT_HEADROOM = 1.25  # input_range = this x the calibration maximum of |observation|
MIN_FACTOR = 0.05     # mismatch factors are clipped here: no negative thresholds or gains


@dataclass
class ChipLayer:
    """One layer of chip neurons.

    code: (n, n_in + 1) int: signed level code of every synapse (0: none; the sign is the
        synapse type, + excitatory, - inhibitory); the last column is the bias generator.
    core: (n,) int: the neuron's core within the layer.
    currents: (cores, 2, bits) float: nominal shared currents per core, type (0: excitatory,
        1: inhibitory) and bit, in threshold units; bits = 1 on `repeated_synapses` chips.
    role: "hidden", "partial" (partial sums of a split layer) or "relay".
    """

    name: str
    code: np.ndarray
    core: np.ndarray
    currents: np.ndarray
    role: str = "hidden"

    @property
    def size(self) -> int:
        return self.code.shape[0]

    def weights(self, currents: np.ndarray | None = None) -> np.ndarray:
        """The analog weights (n_in + 1, n) the codes make of `currents` (default the nominal
        ones), on the grid of `dynamics.on_grid`."""
        cur = self.currents if currents is None else currents
        mag, neg = np.abs(self.code).astype(np.int64), self.code < 0
        per = cur[self.core]                                  # (n, 2, bits)
        per = np.where(neg[..., None], per[:, None, 1, :], per[:, None, 0, :])   # (n, n_in+1, bits)
        if cur.shape[-1] == 1:                                 # repeated 1-bit synapses: m * I
            w = mag * per[..., 0]
        else:                                                  # binary codes: sum of the bits' currents
            bits = (mag[..., None] >> np.arange(cur.shape[-1])) & 1
            w = (bits * per).sum(-1)
        return on_grid(np.where(neg, -w, w).T)

    def synapses(self, repeated: bool) -> np.ndarray:
        """Fan-in entries each neuron uses: nonzero codes, or their multiplicities (repeated synapses)."""
        return np.abs(self.code).sum(1) if repeated else (self.code != 0).sum(1)


@dataclass
class MappedNetwork:
    """A DQN as a mixed-signal chip computes it (see the module docstring)."""

    input_gain: np.ndarray            # generator increment per payload unit, per observation entry
    layers: list[ChipLayer]
    readout_weight: np.ndarray        # int (|A|, n_last): on the last chip layer's spike counts
    readout_bias: np.ndarray          # int (|A|,)
    report: dict = field(default_factory=dict)


def bits_of(profile) -> int:
    """Bit-currents per core and type: log2 of the weight levels, or 1 for repeated synapses."""
    return 1 if profile.repeated_synapses else int(round(math.log2(profile.weight_levels)))


def decays(profile, tau_syn_ms: float | None = None) -> tuple[float, float]:
    """(a_syn, a_mem) of the nominal neuron with the fast synapse types."""
    tau_syn = profile.tau_syn_fast_ms if tau_syn_ms is None else tau_syn_ms
    return math.exp(-profile.dt_ms / tau_syn), math.exp(-profile.dt_ms / profile.tau_mem_ms)


def refractory_steps(profile) -> int:
    return int(round(profile.refractory_ms / profile.dt_ms))


def rate_curve(profile, timesteps: int, rate: float = RATE) -> tuple[float, float]:
    """(u0, slope): a pre-activation z in [0, 1] becomes the steady synaptic current
    u0 + slope * z (threshold units) for which the nominal LIF neuron, started from rest,
    fires z * rate * T spikes in a window of T steps, in the least-squares sense."""
    a_syn, a_mem = decays(profile)
    u = np.linspace(0.0, 30.0, 3001)
    p = {"conn": (u * (1 - a_syn))[None], "gain": 1.0, "a_syn": a_syn, "a_mem": a_mem, "b_mem": 1 - a_mem,
         "vth": 1.0, "refractory": refractory_steps(profile)}
    state = {"i_syn": np.zeros(len(u)), "v": np.zeros(len(u)), "refr": np.zeros(len(u), np.int64)}
    count = sum(lif_step(state, np.ones(1), p) for _ in range(timesteps))
    activation = count / (timesteps * rate)
    if activation[-1] < 1.0:
        raise ProfileError(f"{profile.name}: its neurons cannot fire {rate} spikes per step "
                           f"(refractory {profile.refractory_ms} ms at dt {profile.dt_ms} ms)")
    z = np.linspace(0.0, 1.0, 51)
    best = (np.inf, 0.0, 1.0)
    for u0 in np.linspace(0.0, 3.0, 61):
        for slope in np.linspace(0.5, 30.0, 119):
            err = float(np.mean((np.interp(u0 + slope * z, u, activation) - z) ** 2))
            best = min(best, (err, float(u0), float(slope)))
    return best[1], best[2]


def rate_model(layers: list[DenseLayer], x: np.ndarray) -> list[np.ndarray]:
    """Activations of every hidden layer in the rate limit, clip(W a + b, 0, 1)."""
    acts = []
    for layer in layers[:-1]:
        x = np.clip(x @ layer.weight.T + layer.bias, 0.0, 1.0)
        acts.append(x)
    return acts


def split(layer: DenseLayer, a_in: np.ndarray, fan_in: int) -> list[DenseLayer]:
    """A layer whose neurons have more inputs than `fan_in` - 1 (one entry is the bias
    generator's) as partial sums and relays: for every neuron and group of inputs, one
    partial neuron with the group's positive sum and one with its negative, both divided by
    c (the 99.9th percentile of |partial sum| on the calibration activations `a_in`), and a
    relay neuron with weights +c, -c and the bias. clip(p+) - clip(p-) = p while |p| <= c."""
    n, n_in = layer.weight.shape
    groups = [np.arange(s, min(s + fan_in - 1, n_in)) for s in range(0, n_in, fan_in - 1)]
    sums = np.concatenate([a_in[:, g] @ layer.weight[:, g].T for g in groups], axis=1)
    c = float(np.percentile(np.abs(sums), 99.9)) or 1.0
    g_n = len(groups)
    partial = np.zeros((2 * g_n * n, n_in))
    relay = np.zeros((n, 2 * g_n * n))
    for k, g in enumerate(groups):
        rows = slice(2 * k * n, (2 * k + 1) * n)
        partial[rows, g] = layer.weight[:, g] / c
        partial[(2 * k + 1) * n:(2 * k + 2) * n, g] = -layer.weight[:, g] / c
        relay[np.arange(n), np.arange(2 * k * n, (2 * k + 1) * n)] = c
        relay[np.arange(n), np.arange((2 * k + 1) * n, (2 * k + 2) * n)] = -c
    return [DenseLayer(f"{layer.name}.partial", partial, np.zeros(2 * g_n * n)),
            DenseLayer(f"{layer.name}.relay", relay, layer.bias.copy())]


def prune(layer: DenseLayer, fan_in: int) -> tuple[DenseLayer, float]:
    """Keep each neuron's `fan_in` - 1 largest weights (one entry is the bias generator's);
    returns the layer and the fraction of |W| (L1) removed."""
    w = layer.weight.copy()
    keep = fan_in - 1
    if w.shape[1] > keep:
        cut = np.argsort(np.abs(w), axis=1)[:, :-keep]
        np.put_along_axis(w, cut, 0.0, axis=1)
    lost = 1.0 - float(np.abs(w).sum() / max(np.abs(layer.weight).sum(), 1e-30))
    return DenseLayer(layer.name, w, layer.bias.copy()), lost


def plan(layers: list[Layer], profile) -> dict:
    """What the split mapping of `layers` would take on `profile`, counted without building it:
    per hidden layer (a convolution as its unrolled neurons: a DYNAP-SE core shares weight
    levels, not kernels) the neurons, partial-sum neurons and cores; in all, the chips."""
    rows = []
    for layer in layers[:-1]:
        n = layer.out_size
        fan = int(np.prod(layer.weight.shape[1:]))
        groups = 0 if fan + 1 <= profile.fan_in else math.ceil(fan / (profile.fan_in - 1))
        cores = math.ceil(n / profile.neurons_per_core) * (1 + (2 * groups if groups else 0))
        rows.append({"layer": layer.name, "neurons": n, "fan_in": fan, "partial_neurons": 2 * groups * n,
                     "cores": cores})
    cores = sum(r["cores"] for r in rows)
    return {"layers": rows, "neurons": sum(r["neurons"] + r["partial_neurons"] for r in rows), "cores": cores,
            "chips": math.ceil(cores / profile.cores_per_chip),
            "input_generators": 2 * layers[0].in_size + 1}


def check_mappable(layers: list[Layer], profile) -> None:
    """Refuse, naming the layer, what the mapping cannot build: convolutions."""
    for layer in layers:
        if isinstance(layer, ConvLayer):
            raise ProfileError(f"layer {layer.name!r}: a convolution does not map onto {profile.name} "
                               "(no weight sharing between neurons; see docs/mixed_signal.md for what "
                               "the Pong DQN would take)")


def chip_topology(layers: list[Layer], obs: np.ndarray, profile, fan_in_mode: str
                  ) -> tuple[np.ndarray, list[DenseLayer], list[str], dict]:
    """(input range per observation entry, the hidden layers as chip layers in activation units
    with ON/OFF inputs, their roles, fan-in report); the output layer stays on the host."""
    check_mappable(layers, profile)
    if fan_in_mode not in FAN_IN_MODES:
        raise ProfileError(f"unknown fan-in mode {fan_in_mode!r} (choose from {', '.join(FAN_IN_MODES)})")
    x = np.asarray(obs, np.float64).reshape(len(obs), -1)
    in_range = INPUT_HEADROOM * np.maximum(np.abs(x).max(0), 1e-6)
    first = layers[0]
    on_off = DenseLayer(first.name, np.concatenate([first.weight * in_range, -first.weight * in_range], 1),
                        first.bias)
    hidden = [on_off, *layers[1:-1]]
    acts = [np.concatenate([np.clip(x / in_range, 0, 1), np.clip(-x / in_range, 0, 1)], 1),
            *rate_model([on_off, *layers[1:]], np.concatenate([np.clip(x / in_range, 0, 1),
                                                                np.clip(-x / in_range, 0, 1)], 1))]
    out, roles, report = [], [], {"mode": fan_in_mode, "limit": profile.fan_in, "layers": []}
    for layer, a_in in zip(hidden, acts):
        need = int((layer.weight != 0).sum(1).max()) + 1
        entry = {"layer": layer.name, "inputs_needed": need}
        if need <= profile.fan_in:
            out.append(layer)
            roles.append("hidden")
        elif fan_in_mode == "split":
            parts = split(layer, a_in, profile.fan_in)
            out += parts
            roles += ["partial", "relay"]
            entry["split"] = {"partial_neurons": parts[0].out_size, "relay_neurons": parts[1].out_size}
        else:
            pruned, lost = prune(layer, profile.fan_in)
            out.append(pruned)
            roles.append("hidden")
            entry["pruned_weight_fraction"] = lost
        report["layers"].append(entry)
    return in_range, out, roles, report


def place(scale: np.ndarray, per_core: int) -> np.ndarray:
    """Core of every neuron: neurons sorted by weight scale, `per_core` to a core."""
    core = np.empty(len(scale), np.int64)
    core[np.argsort(scale, kind="stable")] = np.arange(len(scale)) // per_core
    return core


def level_base(w: np.ndarray, levels: int) -> float:
    """The base current b minimizing sum (|w| - b * clip(rint(|w| / b), 0, levels - 1))**2."""
    mag = np.abs(w[w != 0])
    if not len(mag):
        return 1.0
    top = float(mag.max()) / (levels - 1)
    best = (np.inf, top)
    for b in top * np.linspace(0.2, 1.0, 81):
        err = float(np.sum((mag - b * np.clip(np.rint(mag / b), 0, levels - 1)) ** 2))
        best = min(best, (err, b))
    return best[1]


def quantize_layer(name: str, w: np.ndarray, profile, role: str) -> tuple[ChipLayer, dict]:
    """Codes, cores and shared currents of one chip layer of analog weights w (n, n_in + 1)."""
    bits = bits_of(profile)
    levels = profile.fan_in + 1 if profile.repeated_synapses else profile.weight_levels
    core = place(np.percentile(np.abs(w), 99, axis=1), profile.neurons_per_core)
    n_cores = int(core.max()) + 1
    currents = np.zeros((n_cores, 2, bits))
    code = np.zeros(w.shape, np.int64)
    for c in range(n_cores):
        rows = core == c
        for t, sign in enumerate((1.0, -1.0)):
            part = np.where(sign * w[rows] > 0, np.abs(w[rows]), 0.0)
            base = level_base(part, levels)
            m = np.clip(np.rint(part / base), 0, levels - 1).astype(np.int64)
            if profile.repeated_synapses:    # multiplicities share the fan-in: coarsen until they fit
                while (m.sum(1) + (np.abs(code[rows]) * (sign * code[rows] < 0)).sum(1)).max() > profile.fan_in:
                    base *= 1.1
                    m = np.clip(np.rint(part / base), 0, levels - 1).astype(np.int64)
            code[rows] += (sign * m).astype(np.int64)
            currents[c, t] = base * 2.0 ** np.arange(bits)
    layer = ChipLayer(name, code.astype(np.int16), core, currents, role)
    implemented = layer.weights().T
    denom = float(np.sqrt(np.mean(w ** 2))) or 1.0
    report = {"layer": name, "role": role, "neurons": layer.size, "cores": n_cores,
              "synapses": int(layer.synapses(profile.repeated_synapses).sum()),
              "max_fan_in": int(layer.synapses(profile.repeated_synapses).max()),
              "weight_rel_rms_error": float(np.sqrt(np.mean((implemented - w) ** 2))) / denom}
    if report["max_fan_in"] > profile.fan_in:
        raise ProfileError(f"layer {name!r}: a neuron needs {report['max_fan_in']} input synapses; "
                           f"{profile.name}'s fan-in limit is {profile.fan_in}")
    return layer, report


def to_currents(layer: DenseLayer, profile, in_rate: float, u0: float, slope: float) -> np.ndarray:
    """Analog weights (n, n_in + 1) of a layer in activation units: an input of activation a
    spikes a * in_rate per step; the bias generator (last column) spikes every step and
    carries slope * bias + u0, so that the steady current is u0 + slope * z (threshold units)."""
    a_syn, _ = decays(profile)
    k = 1.0 - a_syn   # a steady drive d per step makes the current d / (1 - a_syn)
    return np.concatenate([layer.weight * (slope * k / in_rate), ((slope * layer.bias + u0) * k)[:, None]], 1)


def map_network(layers: list[Layer], obs: np.ndarray, profile, timesteps: int, input_scale_bits: int,
                fan_in_mode: str = "split", rate: float = RATE) -> MappedNetwork:
    """Map normalized layers (the output layer in Q / lambda units) onto `profile`.

    Parameters
    ----------
    layers: the normalized float network. obs: calibration observations.
    profile: a MixedSignalProfile. timesteps: T, steps per decision window.
    input_scale_bits: the payload's fraction bits (EnvIO sends rint(obs * 2**bits)).
    fan_in_mode: "split" or "prune" (see the module docstring).
    rate: spikes per step of a hidden activation 1 (recorded as the report's "rate").
    """
    in_range, chip, roles, fan_report = chip_topology(layers, obs, profile, fan_in_mode)
    u0, slope = rate_curve(profile, timesteps, rate)
    mapped, reports = [], []
    for i, (layer, role) in enumerate(zip(chip, roles)):
        w = to_currents(layer, profile, 1.0 if i == 0 else rate, u0, slope)
        ql, rep = quantize_layer(layer.name, w, profile, role)
        mapped.append(ql)
        reports.append(rep)
    out = layers[-1]
    ro_w, ro_b, shift = integer_readout(out.weight / (timesteps * rate), out.bias)   # per spike of the last layer
    neurons = sum(l.size for l in mapped)
    cores = sum(int(l.core.max()) + 1 for l in mapped)
    report = {"fan_in": fan_report, "layers": reports, "u0": u0, "slope": slope, "rate": rate,
              "input_range": in_range.tolist(), "neurons": neurons, "cores": cores,
              "chips": math.ceil(cores / profile.cores_per_chip),
              "synapses": sum(r["synapses"] for r in reports), "readout_shift": shift}
    return MappedNetwork(input_gain=ONE / (in_range * 2.0 ** input_scale_bits), layers=mapped,
                         readout_weight=ro_w, readout_bias=ro_b, report=report)


def replicate(mapped: MappedNetwork, replicas: int, profile) -> MappedNetwork:
    """`replicas` copies of the chip network, each on its own cores, read by one host readout.

    Every copy of a layer holds the same codes and shared currents; a copy's neurons read the
    same copy of the layer below (the first layer reads the shared input generators), so the
    copies compute the same function on the nominal chip and differ by their own mismatch on
    an instance. The readout averages them (its weights tiled and divided by `replicas`), so
    the nominal chip decides as one copy; a readout fitted to each chip instance
    (run --calibrate-readout) weighs the copies' differing counts, where the gain is
    (docs/mixed_signal.md). Neurons, cores and synapses grow `replicas` times, fan-in not.

    Parameters
    ----------
    mapped: the mapped (and trained) network. replicas: copies, >= 1. profile: for the chip count.
    """
    if replicas == 1:
        return mapped
    layers = []
    for i, layer in enumerate(mapped.layers):
        n, n_in = layer.size, layer.code.shape[1] - 1      # the last column is the bias generator
        if i == 0:
            code = np.tile(layer.code, (replicas, 1))
        else:
            code = np.zeros((n * replicas, n_in * replicas + 1), layer.code.dtype)
            for r in range(replicas):
                code[r * n:(r + 1) * n, r * n_in:(r + 1) * n_in] = layer.code[:, :-1]
            code[:, -1] = np.tile(layer.code[:, -1], replicas)
        cores = len(layer.currents)
        layers.append(ChipLayer(layer.name, code, np.concatenate([layer.core + r * cores for r in range(replicas)]),
                                np.tile(layer.currents, (replicas, 1, 1)), layer.role))
    scale = 2.0 ** -mapped.report["readout_shift"]
    ro_w, ro_b, shift = integer_readout(np.tile(mapped.readout_weight * scale, (1, replicas)) / replicas,
                                        mapped.readout_bias * scale)
    report = dict(mapped.report)
    report["layers"] = [{**e, "neurons": e["neurons"] * replicas, "cores": e["cores"] * replicas,
                         "synapses": e["synapses"] * replicas} for e in report["layers"]]
    cores = sum(e["cores"] for e in report["layers"])
    report.update(replicas=replicas, neurons=report["neurons"] * replicas, cores=cores,
                  chips=math.ceil(cores / profile.cores_per_chip), synapses=report["synapses"] * replicas,
                  readout_shift=shift)
    return MappedNetwork(mapped.input_gain, layers, ro_w, ro_b, report)


def mismatch_factors(rng: np.random.Generator, sigma: float, shape) -> np.ndarray:
    """Device-mismatch factors of one chip instance: max(1 + N(0, sigma), MIN_FACTOR) per entry.

    Parameters
    ----------
    rng: the instance's generator (draws one normal per entry). sigma: relative spread. shape: of the result.
    """
    return np.maximum(1.0 + sigma * rng.standard_normal(shape), MIN_FACTOR)


def draw_mismatch(layers: list[ChipLayer], seed: int | None, sigma: float) -> list[dict]:
    """Mismatch factors of one chip instance, per chip layer: per neuron "threshold", "tau_mem",
    "tau_syn", "gain" and per core, type and bit "currents", each max(1 + N(0, sigma),
    MIN_FACTOR), drawn in that order, layer after layer, from `seed` (None or sigma 0: all 1)."""
    rng = np.random.default_rng(seed)
    nominal = seed is None or sigma == 0

    def factors(shape):
        return np.ones(shape) if nominal else mismatch_factors(rng, sigma, shape)

    return [{"threshold": factors(l.size), "tau_mem": factors(l.size), "tau_syn": factors(l.size),
             "gain": factors(l.size), "currents": factors(l.currents.shape)} for l in layers]


def instance_params(layers: list[ChipLayer], profile, mismatch: list[dict]) -> list[dict]:
    """Every chip layer's `dynamics.mapped_layer_step` parameters under mismatch factors (`draw_mismatch`)."""
    a_syn0, a_mem0 = decays(profile)
    out = []
    for layer, f in zip(layers, mismatch):
        a_mem = a_mem0 ** (1.0 / f["tau_mem"])      # exp(-dt / (tau f)) = a ** (1 / f)
        out.append({"conn": layer.weights(layer.currents * f["currents"]), "gain": f["gain"],
                    "a_syn": a_syn0 ** (1.0 / f["tau_syn"]), "a_mem": a_mem, "b_mem": 1.0 - a_mem,
                    "vth": f["threshold"], "refractory": refractory_steps(profile)})
    return out


def draw_instance(layers: list[ChipLayer], profile, seed: int | None, sigma: float | None = None) -> list[dict]:
    """Parameters of every chip layer on chip instance `seed` (None: the nominal chip) with
    mismatch `sigma` (None: the profile's): every neuron's threshold, time constants and
    synaptic gain and every core's shared currents scaled by 1 + N(0, sigma), frozen by the seed."""
    sigma = profile.mismatch_sigma if sigma is None else sigma
    return instance_params(layers, profile, draw_mismatch(layers, seed, sigma))
