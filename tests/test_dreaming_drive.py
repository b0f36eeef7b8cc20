"""The dreaming agent's drive from a target coding level (deploy.dreaming.drive)."""
import dataclasses
import json

import pytest

from lavaloop.deploy.dreaming import protocol
from lavaloop.deploy.dreaming.agent import DreamConfig
from lavaloop.deploy.dreaming.drive import calibrate_drive, coding_levels
from lavaloop.deploy.dreaming.network import Topology
from lavaloop.deploy.dreaming.readouts import ReadoutRules
from lavaloop.errors import LavaloopError
from lavaloop.rundir import RunDirError

SMALL = dict(agent_steps=12, dream_steps=4, topology=Topology(hidden=128))


def test_calibrated_weights_reach_the_coding_level():
    cfg = DreamConfig(runs=1, paired_windows=True, **SMALL)
    fixed = coding_levels(cfg)
    assert fixed["agent"]["coding_level"] < 0.02 and fixed["agent"]["never_fire"] > 0.5   # under-driven at 0.03
    cal = calibrate_drive(cfg, 0.1)
    assert cal.topology.weight > cfg.topology.weight and cal.topology.hidden == 128
    levels = coding_levels(dataclasses.replace(cfg, topology=cal.topology, dream=False))   # as calibrated
    tuned = coding_levels(dataclasses.replace(cfg, paired_windows=False, dream=False))   # where the rules were tuned
    for population, gain in (("agent", "filter_gain"), ("model", "model_filter_gain")):
        assert abs(levels[population]["coding_level"] - 0.1) < 0.03, levels    # noisy: the games change too
        # the filtered features keep their size: gain x spikes per window as where the rules were tuned
        before = getattr(cfg.rules, gain) * tuned[population]["spikes_per_window"]
        after = getattr(cal.rules, gain) * levels[population]["spikes_per_window"]
        assert getattr(cal.rules, gain) < getattr(cfg.rules, gain) and after == pytest.approx(before, rel=0.01)
    # the drive is set from real games: the same whatever the dreams are
    several = calibrate_drive(dataclasses.replace(cfg, dreams=2, dream_start="visited"), 0.1)
    assert (several.topology, several.rules) == (cal.topology, cal.rules)


def test_a_run_records_the_calibrated_weights(tmp_path):
    cfg = DreamConfig(runs=1, games=1, dream=False, coding_level=0.1, **SMALL)
    rec = protocol.run(cfg, tmp_path / "run", progress=False)
    topo, rules = rec["config"]["topology"], rec["config"]["rules"]
    assert topo["weight"] != cfg.topology.weight and topo["model_weight_ratio"] != 1.0
    assert rules["filter_gain"] != cfg.rules.filter_gain
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (stored["topology"], stored["rules"]) == (topo, rules)
    again = protocol.run(cfg, tmp_path / "run", progress=False)      # resumes: the same weights and gains
    assert (again["config"]["topology"], again["config"]["rules"]) == (topo, rules)


def test_a_run_started_before_an_option_existed_resumes(tmp_path):
    """A run directory whose config.json lacks options added since (top-level or nested) resumes
    when they are at their defaults; a real difference is still refused, named."""
    cfg = DreamConfig(runs=1, games=1, dream=False, **SMALL)
    first = protocol.run(cfg, tmp_path / "run", progress=False)
    cfg_file = tmp_path / "run" / "config.json"
    old = json.loads(cfg_file.read_text())
    del old["coding_level"], old["dreams"], old["rules"]["model_per_action"]     # options added since
    cfg_file.write_text(json.dumps(old))
    assert protocol.run(cfg, tmp_path / "run", progress=False)["returns"] == first["returns"]
    with pytest.raises(RunDirError, match="differs in: games"):
        protocol.run(dataclasses.replace(cfg, games=2), tmp_path / "run", progress=False)
    with pytest.raises(RunDirError, match=r"differs in: rules\.model_per_action\)"):
        protocol.run(dataclasses.replace(cfg, rules=ReadoutRules(model_per_action=True)), tmp_path / "run",
                     progress=False)


def test_coding_level_input_is_checked():
    with pytest.raises(LavaloopError, match="our protocol's"):
        DreamConfig(protocol="reference", coding_level=0.1)
    with pytest.raises(LavaloopError, match="out of reach"):
        calibrate_drive(DreamConfig(runs=1, **SMALL), 1.0)
