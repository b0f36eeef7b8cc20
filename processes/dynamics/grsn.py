"""Graded-spike layers and gated recurrent spiking neurons (GRSN policies: GRSNStack and its emulator).

Graded activations are integers with a power-of-two scale per tensor: value = n * 2**-f.
A layer's accumulator W_mant @ x + b is in units 2**(weight_exp - f_in); `out_shift`
moves it to the output's scale (the Lava models and the emulator receive it precomputed).
"""
from __future__ import annotations

import numpy as np

from lavaloop.processes.dynamics.fixed import dense, exact_float, saturate, shift


def continuous_action(rng: np.random.Generator, values: np.ndarray, frac_bits: int,
                      epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """(greedy, taken) actions in [-1, 1] of a continuous policy's readout: tanh of the
    fixed-point means (`frac_bits` fraction bits); with probability epsilon a uniform random
    action is taken. One uniform draw per decision, as in `lavaloop.rollout.epsilon_greedy`."""
    greedy = np.tanh(np.asarray(values, np.float64) * 2.0 ** -frac_bits)
    if rng.random() < epsilon:
        return greedy, rng.uniform(-1, 1, len(greedy))
    return greedy, greedy


def graded_dense(weight: np.ndarray, x: np.ndarray, bias: np.ndarray, out_shift: int, bits: int,
                 relu: bool) -> np.ndarray:
    """Graded output of a dense layer: saturate(relu?(shift(W_mant @ x + b, out_shift)), bits)."""
    acc = dense(weight, x, 0) + bias
    out = shift(acc, out_shift)
    return saturate(np.maximum(out, 0) if relu else out, bits)


def sigmoid_lookup(table: np.ndarray, z: np.ndarray, interp_bits: int) -> np.ndarray:
    """sigmoid of fixed-point z, linearly interpolated between the table's entries.

    The table holds sigmoid at its knots k = -half..half (len 2 * half + 1); z is in units of
    2**-interp_bits knots and is clamped to the table's range. The result is
    T[k] + ((T[k + 1] - T[k]) * r) >> interp_bits for z = k * 2**interp_bits + r (an add, a
    multiply and a shift, as a chip's neuron microcode does it).
    """
    half = (len(table) - 1) // 2
    z = np.clip(z, -half << interp_bits, half << interp_bits)
    k = np.minimum(z >> interp_bits, half - 1)
    r = z - (k << interp_bits)
    lo = table[k + half]
    return lo + (((table[k + half + 1] - lo) * r) >> interp_bits)


def grsn_step(h: np.ndarray, v: np.ndarray, gate: np.ndarray, cand: np.ndarray, gate_bits: int,
              tau_shift: int, vth: int, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One GRSN step in fixed point (state units: threshold = vth).

    h <- F h + (1 - F) C with F = gate * 2**-gate_bits (rounded); v <- v + (h - v) * 2**-tau_shift;
    spike s = v >= vth; soft reset v <- v - s * vth. States saturate to `bits`.
    """
    mix = gate * h + ((1 << gate_bits) - gate) * cand
    h = saturate(shift(mix, -gate_bits), bits)
    v = saturate(v + shift(h - v, -tau_shift), bits)
    s = (v >= vth).astype(np.int64)
    return h, v - s * vth, s


def grsn_gates(p: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forget gate (interpolated table sigmoid, units 2**-gate_bits) and candidate current
    (state units) from input x."""
    z = shift(dense(p["w_f"], x, 0) + p["b_f"], p["shift_f"])
    cand = shift(dense(p["w_c"], x, 0) + p["b_c"], p["shift_c"])
    return sigmoid_lookup(p["table"], z, p["interp_bits"]), saturate(np.maximum(cand, 0), p["bits"])


def prepare_stage(p: dict) -> dict:
    """A stage (an artifact's dict) ready to run, done once at build time: weights in the
    float type in which their products are exact (`exact_float`), and each input's fan-out."""
    names = ("weight",) if p["kind"] == "dense" else ("w_f", "w_c")
    q = {**p, **{k: p[k].astype(exact_float(p[k], p["max_input"])) for k in names}}
    q["fanout"] = sum((p[k] != 0).sum(axis=0) for k in names)
    return q


def run_stage(p: dict, x: np.ndarray, state: dict) -> np.ndarray:
    """One stage of a graded/GRSN network on its input x (..., n_in); GRSN state is updated in `state`.

    "dense": graded_dense. "grsn": the first `n_in` inputs drive the GRSN gates, the rest
    pass through; the output is [spikes * payload, passthrough] (the spikes as graded
    spikes in the passthrough's scale, so the next layer reads one format).
    """
    if p["kind"] == "dense":
        return graded_dense(p["weight"], x, p["bias"], p["out_shift"], p["bits"], p["relu"])
    n = p["n_in"]
    gate, cand = grsn_gates(p, x[..., :n])
    state["h"], state["v"], s = grsn_step(state["h"], state["v"], gate, cand, p["gate_bits"],
                                          p["tau_shift"], p["vth"], p["bits"])
    return np.concatenate([s * p["payload"], x[..., n:]], axis=-1)


def stage_ops(p: dict, x: np.ndarray) -> dict[str, np.ndarray]:
    """Operations of one prepared stage on input x (..., n_in): multiply-accumulates driven by
    graded inputs, accumulates driven by binary spikes (the first `spike_inputs` inputs of a
    dense stage), and neuron updates. Zero inputs cost nothing (event-driven)."""
    nz, fan = x != 0, p["fanout"]
    if p["kind"] == "dense":
        k = p.get("spike_inputs", 0)
        ac = nz[..., :k] @ fan[:k]
        mac = nz[..., k:] @ fan[k:]
        return {"mac": mac, "ac": ac, "neuron": np.full(ac.shape, len(p["bias"]))}
    n, hidden = p["n_in"], len(p["b_f"])
    mac = nz[..., :n] @ fan + 2 * hidden          # gate synapses, then F*h and (1-F)*C
    return {"mac": mac, "ac": np.zeros_like(mac), "neuron": np.full(mac.shape, hidden)}
