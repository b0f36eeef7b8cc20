"""Energy estimate of a run from its operation counts (every RunResult carries one).

Counts per episode: multiply-accumulates driven by real-valued (graded) inputs (MAC),
accumulates driven by binary spikes (AC), and neuron updates. A model's per-operation
energies turn them into joules:

* `cmos45` (default): 45 nm CMOS, MAC 4.6 pJ, AC 0.9 pJ (32-bit float multiply 3.7 pJ +
  add 0.9 pJ; Horowitz, ISSCC 2014), neuron updates not charged: the usual SNN-vs-ANN
  estimate (as in the GRSN paper's field).
* `loihi`: the published Loihi figures (Davies et al., IEEE Micro 2018, Table 2): 23.6 pJ
  per synaptic operation (spike-driven; a graded spike is charged the same), 52 pJ per
  active neuron update. Intel has not published per-operation energies for Loihi 2 in
  this form; the `loihi2` profile uses these.
"""
from __future__ import annotations

from contextlib import contextmanager

ENERGY_MODELS = {
    "cmos45": {"mac_pj": 4.6, "ac_pj": 0.9, "neuron_pj": 0.0,
               "source": "Horowitz, ISSCC 2014 (45 nm): MAC 4.6 pJ, AC 0.9 pJ"},
    "loihi": {"mac_pj": 23.6, "ac_pj": 23.6, "neuron_pj": 52.0,
              "source": "Davies et al., IEEE Micro 2018, Table 2: synaptic op 23.6 pJ, neuron update 52 pJ"},
}


def energy(ops: dict[str, float], model: str = "cmos45") -> float:
    """Joules for operation counts {"mac", "ac", "neuron"} under an energy model."""
    e = ENERGY_MODELS[model]
    return 1e-12 * (ops.get("mac", 0) * e["mac_pj"] + ops.get("ac", 0) * e["ac_pj"]
                    + ops.get("neuron", 0) * e["neuron_pj"])


def energy_report(ops: dict[str, float], decisions: int) -> dict:
    """Operation counts and energy per decision (one env step) under every model.

    Parameters
    ----------
    ops: operation totals of a run, {"mac", "ac", "neuron"}.
    decisions: the run's decisions.
    """
    per = {k: v / max(decisions, 1) for k, v in ops.items()}
    return {"ops_per_decision": per,
            "energy_per_decision_nj": {m: 1e9 * energy(per, m) for m in ENERGY_MODELS}}


@contextmanager
def counted_float_ops(net):
    """Count the operations of a float recurrent policy acting step by step, by the chip's rule.

    One MAC per non-zero input and outgoing synapse of every Linear; for a GRU cell, its three
    gates' input and recurrent products and three elementwise products per unit, and one
    neuron update per unit. Yields (ops, steps), filled as the network runs: the totals
    {"mac", "ac", "neuron"} and a one-element list holding the decisions (batch rows of every
    forward pass). Forward passes must take one env step (L = 1), as an acting policy does:
    the recurrent products are counted on the state passed in.

    Parameters
    ----------
    net: a `lavaloop.conversion.models.grsn.RecurrentNet` (GRU cells are counted as above;
        other cells only through their Linears).
    """
    import torch

    from lavaloop.conversion.models.grsn import GRUCell

    ops, steps = {"mac": 0, "ac": 0, "neuron": 0}, [0]

    def linear_hook(mod, inp, out):
        ops["mac"] += int((inp[0] != 0).sum()) * mod.out_features

    def gru_hook(mod, inp, out):
        x, (h,) = inp
        rows = x.shape[1]
        ops["mac"] += 3 * mod.hidden * (int((x != 0).sum()) + int((h != 0).sum()) + rows)
        ops["neuron"] += mod.hidden * rows

    def step_hook(mod, inp, out):
        if inp[0].shape[0] != 1:
            raise ValueError("counted_float_ops counts one env step per forward pass")
        steps[0] += inp[0].shape[1]

    hooks = [m.register_forward_hook(linear_hook) for m in net.modules() if isinstance(m, torch.nn.Linear)]
    hooks += [m.register_forward_hook(gru_hook) for m in net.modules() if isinstance(m, GRUCell)]
    hooks.append(net.register_forward_hook(step_hook))
    try:
        yield ops, steps
    finally:
        for h in hooks:
            h.remove()
