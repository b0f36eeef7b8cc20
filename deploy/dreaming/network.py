"""The on-chip part of the dreaming agent: two fixed populations, drawn and mapped to a chip.

Input channels (all regular spike generators): 40 place cells of the state the agent sees,
40 place cells of the state the world model sees, 3 action channels of the world model.
The agent population listens to the first 40, the world model to the other 43.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lavaloop.conversion.mixed_signal import ChipLayer, bits_of, mismatch_factors
from lavaloop.deploy.dreaming import portable
from lavaloop.deploy.dreaming.pong import CELLS_PER_VAR, N_VARS
from lavaloop.errors import ProfileError
from lavaloop.profiles import MixedSignalProfile

N_PLACE = N_VARS * CELLS_PER_VAR
N_CHANNELS = 2 * N_PLACE + 3


@dataclass(frozen=True)
class Topology:
    hidden: int = 510             # neurons per population
    synapses: int = 8             # input synapse entries per neuron (sum of multiplicities)
    max_multiplicity: int = 4
    weight: float = 0.03          # shared per-core synaptic weight, in threshold units
    model_weight_ratio: float = 1.0     # the world-model cores' weight / the agent cores'
    action_input: bool = True     # each world-model neuron's first synapse from an action channel


@dataclass
class ChipNetwork:
    """Concrete numbers for the population process (see processes.dynamics.lif_step)."""

    params: dict          # conn (N_CHANNELS, 2*hidden), gain, a_syn, a_mem, b_mem, vth, refractory
    multiplicity: np.ndarray   # (2*hidden, synapses) per neuron, padded with 0
    hidden: int

    @property
    def size(self) -> int:
        return 2 * self.hidden


def partition(rng: np.random.Generator, total: int, largest: int) -> list[int]:
    """A random composition of `total` into parts of 1..largest."""
    parts = []
    while total > 0:
        parts.append(int(rng.integers(1, min(largest, total) + 1)))
        total -= parts[-1]
    return parts


def draw_connectivity(topo: Topology, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer multiplicity matrix (N_CHANNELS, 2*hidden) and the per-neuron multiplicities.

    Agent neurons pick their generators among the agent's place cells; world-model neurons
    among theirs, giving the first connection to a random action channel if `action_input`
    (the authors' code leaves the action channels unconnected).
    """
    rng = np.random.default_rng(seed)
    n = 2 * topo.hidden
    conn = np.zeros((N_CHANNELS, n), np.int64)
    mult = np.zeros((n, topo.synapses), np.int64)
    for j in range(n):
        parts = partition(rng, topo.synapses, topo.max_multiplicity)
        mult[j, :len(parts)] = parts
        if j < topo.hidden:
            sources = rng.choice(N_PLACE, size=len(parts), replace=False)
        elif not topo.action_input:
            sources = N_PLACE + rng.choice(N_PLACE, size=len(parts), replace=False)
        else:
            sources = np.concatenate([[2 * N_PLACE + rng.integers(3)],
                                      N_PLACE + rng.choice(N_PLACE, size=len(parts) - 1, replace=False)])
        conn[sources, j] += parts
    return conn, mult


def check_mapping(topo: Topology, mult: np.ndarray, profile: MixedSignalProfile) -> None:
    """Reject a network that breaks a limit of the chip, naming the limit."""
    p = profile
    cores = 2 * -(-topo.hidden // p.neurons_per_core)
    if cores > p.cores_per_chip:
        raise ProfileError(f"{p.name}: the agent and world-model populations ({topo.hidden} neurons each, "
                           f"weights shared per core) need {cores} cores of {p.neurons_per_core} neurons; "
                           f"the chip has {p.cores_per_chip}")
    entries = mult.sum(1) if p.repeated_synapses else (mult > 0).sum(1)
    if entries.max() > p.fan_in:
        raise ProfileError(f"{p.name}: neuron {int(entries.argmax())} needs {int(entries.max())} input "
                           f"synapses; the fan-in limit is {p.fan_in}")
    if not p.repeated_synapses and mult.max() > p.weight_levels - 1:
        raise ProfileError(f"{p.name}: a connection of multiplicity {int(mult.max())} needs more than the "
                           f"{p.weight_levels} weight levels of one synapse")


def draw_network(topo: Topology, profile: MixedSignalProfile, seed: int, mismatch_seed: int,
                 mismatch_sigma: float | None = None) -> ChipNetwork:
    """Connectivity from `seed`; device mismatch of one chip instance from `mismatch_seed`."""
    conn, mult = draw_connectivity(topo, seed)
    check_mapping(topo, mult, profile)
    sigma = profile.mismatch_sigma if mismatch_sigma is None else mismatch_sigma
    rng = np.random.default_rng(mismatch_seed)
    n = 2 * topo.hidden
    f_th, f_mem, f_syn, f_w = (mismatch_factors(rng, sigma, n) for _ in range(4))
    a_mem = portable.exp(-profile.dt_ms / (profile.tau_mem_ms * f_mem))
    weights = conn.astype(np.float64)
    if not profile.repeated_synapses:    # codes of bits: each bit's current is its core's, with its own mismatch
        weights = code_weights(conn, topo, profile, rng, sigma)
    params = {
        "conn": weights,
        "gain": np.repeat([topo.weight, topo.weight * topo.model_weight_ratio], topo.hidden) * f_w,
        "a_syn": portable.exp(-profile.dt_ms / (profile.tau_syn_ms * f_syn)),
        "a_mem": a_mem,
        "b_mem": 1.0 - a_mem,
        "vth": f_th,
        "refractory": int(round(profile.refractory_ms / profile.dt_ms)),
    }
    return ChipNetwork(params=params, multiplicity=mult, hidden=topo.hidden)


def code_weights(conn: np.ndarray, topo: Topology, profile: MixedSignalProfile, rng: np.random.Generator,
                 sigma: float) -> np.ndarray:
    """Synaptic weights (N_CHANNELS, 2*hidden), in units of the shared weight, on a chip whose
    synapses hold binary codes (`dynapse2`): a connection of multiplicity m is the code m,
    whose weight is the sum of its bits' currents, nominally 2**b; every core (each population
    on its own cores) has its own bit-currents, each scaled by `mismatch_factors`
    from `rng` (drawn after the neurons' factors). At sigma 0 the weights are the multiplicities."""
    bits = bits_of(profile)
    per_pop = -(-topo.hidden // profile.neurons_per_core)
    j = np.arange(2 * topo.hidden)
    core = np.where(j < topo.hidden, j // profile.neurons_per_core,
                    per_pop + (j - topo.hidden) // profile.neurons_per_core)
    nominal = 2.0 ** np.arange(bits) * mismatch_factors(rng, sigma, (2 * per_pop, bits))   # (cores, bits)
    currents = np.stack([nominal, nominal], axis=1)               # (cores, type, bits); all excitatory here
    return ChipLayer("population", conn.T, core, currents).weights()
