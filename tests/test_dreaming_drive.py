"""The dreaming agent's drive from a target coding level (deploy.dreaming.drive)."""
import dataclasses
import json

from lavaloop.deploy.dreaming import protocol
from lavaloop.deploy.dreaming.agent import DreamConfig
from lavaloop.deploy.dreaming.drive import calibrate_drive, coding_levels
from lavaloop.deploy.dreaming.network import Topology

SMALL = dict(agent_steps=12, dream_steps=4, topology=Topology(hidden=32))


def test_calibrated_weights_reach_the_coding_level():
    cfg = DreamConfig(runs=1, paired_windows=True, **SMALL)
    fixed = coding_levels(cfg)
    assert fixed["agent"]["coding_level"] < 0.02 and fixed["agent"]["never_fire"] > 0.5   # under-driven at 0.03
    topo = calibrate_drive(cfg, 0.1)
    assert topo.weight > cfg.topology.weight and topo.hidden == 32
    levels = coding_levels(dataclasses.replace(cfg, topology=topo))
    for population in ("agent", "model"):
        assert abs(levels[population]["coding_level"] - 0.1) < 0.02, levels


def test_a_run_records_the_calibrated_weights(tmp_path):
    cfg = DreamConfig(runs=1, games=1, dream=False, coding_level=0.1, **SMALL)
    rec = protocol.run(cfg, tmp_path / "run", progress=False)
    topo = rec["config"]["topology"]
    assert topo["weight"] != cfg.topology.weight and topo["model_weight_ratio"] != 1.0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["topology"] == topo
    again = protocol.run(cfg, tmp_path / "run", progress=False)      # resumes: the same weights
    assert again["config"]["topology"] == topo
