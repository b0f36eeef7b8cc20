"""Sigma-delta neurons with graded spikes (the "sigma-delta" kind: a DQN run as Loihi 2 runs ANNs).

A layer integrates the graded messages it receives (sigma), applies ReLU with a bias, and
sends the change of its activation since what it last sent (delta) when that change
reaches the threshold. States are integers in "state units"; a message carries a state
value shifted right by `msg_shift` bits (Lava's `state_exp`), and the bits the shift
drops stay in the residue, so the sum of everything a neuron sent, shifted back, never
drifts more than one message unit from its activation. (Lava's own `SigmaDelta` drops
them: see docs/conversion.md, "netx export".)

With the input held, a layer's sigma changes only on the step its input changes, and a
step without input changes nothing (the residue is below the threshold, or below one
message unit); so one step per layer carries a new observation through the network.
"""
from __future__ import annotations

import numpy as np


def delta_encode(x: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The input layer's messages: the change of the integer payload x since `last` (exact)."""
    return x - last


def sigma_delta_step(sigma: np.ndarray, act: np.ndarray, residue: np.ndarray, a_in: np.ndarray,
                     bias: np.ndarray, vth: int, msg_shift: int) -> np.ndarray:
    """One step of a layer of sigma-delta ReLU neurons; updates sigma, act, residue in place.

    sigma += a_in; new = relu(sigma + bias); delta = new - act + residue;
    sent = delta where |delta| >= vth; message = sent >> msg_shift (floor);
    residue = delta - (message << msg_shift); act = new.

    Parameters
    ----------
    sigma, act, residue: int64 states (..., n), in state units.
    a_in: synaptic input (..., n), state units. bias: per neuron, state units.
    vth: send threshold, state units (0: every change is sent).
    msg_shift: bits between state units and message units.

    Returns the messages (..., n), int64 (zero where nothing is sent).
    """
    sigma += a_in
    new = np.maximum(sigma + bias, 0)
    delta = new - act + residue
    msg = np.where(np.abs(delta) >= vth, delta, 0) >> msg_shift
    residue[...] = delta - (msg << msg_shift)
    act[...] = new
    return msg


def sigma_readout(sigma: np.ndarray, a_in: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The output layer (no activation, nothing sent): sigma += a_in in place; returns sigma + bias."""
    sigma += a_in
    return sigma + bias
