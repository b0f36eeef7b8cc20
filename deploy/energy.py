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
