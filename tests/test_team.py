"""Multi-agent GRSN teams: QMIX training and resume, conversion, Lava (both layouts) == emulator,
per-agent fidelity, and one clear line for every kind of bad input."""
import json

import numpy as np
import pytest
import torch

import lavaloop
from conftest import ROOT, assert_clean_failure, lavaloop_cli
from lavaloop.conversion.models.qmix import QMixer, load_team
from lavaloop.errors import CheckpointError, LavaloopError, ShapeMismatchError
from lavaloop.teams import TeamShape, TeamSpec, masked_argmax
from lavaloop.trainers import qmix

SPREAD, LISTENER = "mpe2:simple_spread_v3", "mpe2:simple_speaker_listener_v4"


def tiny(total_steps: int = 400) -> qmix.Config:
    return qmix.Config(total_steps=total_steps, batch_episodes=4, learning_starts=4, eps_steps=200, target_every=4)


@pytest.fixture(scope="module")
def teams(tmp_path_factory):
    d = tmp_path_factory.mktemp("teams")
    out = {}
    for name, env, cell in (("spread", SPREAD, "grsn"), ("listener", LISTENER, "grsn"), ("gru", SPREAD, "gru")):
        out[name] = d / f"{name}.pt"
        qmix.train(env, cell, 0, out[name], tiny(), eval_every=200, progress=False)
    return out


@pytest.fixture(scope="module")
def artifacts(teams, tmp_path_factory):
    d = tmp_path_factory.mktemp("team_artifacts")
    out = {}
    for name, env in (("spread", SPREAD), ("listener", LISTENER)):
        out[name] = d / f"{name}.h5"
        lavaloop.convert(teams[name], env, calib_episodes=2).save(out[name])
    return out


def test_team_view_pads_observations_and_masks_actions():
    shape = TeamShape.of(TeamSpec.for_id(LISTENER))
    assert shape.agents == ("speaker_0", "listener_0") and shape.n_actions == (3, 5)
    obs = {"speaker_0": np.ones(3), "listener_0": np.full(11, 2.0)}
    x = shape.agent_obs(obs)
    assert x.shape == (2, 11 + 2)
    assert (x[0, :3] == 1).all() and (x[0, 3:11] == 0).all() and x[0, 11] == 1 and x[0, 12] == 0
    assert (x[1, :11] == 2).all() and x[1, 12] == 1
    values = np.array([[0, 1, 2, 9, 9], [0, 1, 2, 9, 8]], float)
    assert masked_argmax(values, shape.masks()).tolist() == [2, 3]     # the speaker has no actions 3, 4


def test_mixer_is_monotonic_in_every_agent():
    mixer = QMixer(n_agents=3, state_dim=6)
    q = torch.randn(64, 3, requires_grad=True)
    mixer(q, torch.randn(64, 6)).sum().backward()
    assert (q.grad >= 0).all()


def test_training_writes_a_safe_checkpoint_and_its_curve(teams):
    agent, mixer, spec, shape, meta, sha = load_team(teams["spread"])
    assert spec.id == SPREAD and shape.n_agents == 3 and agent.cfg.cell == "grsn" and agent.cfg.hidden == 64
    assert meta["train_steps"] == 400 and len(sha) == 64
    assert teams["spread"].with_suffix(".csv").read_text().startswith("step,eval_return")
    assert not teams["spread"].with_suffix(".resume.pt").exists()
    torch.load(teams["spread"], weights_only=True)      # tensors and strings only


def test_interrupted_training_resumes_to_the_same_team(tmp_path, monkeypatch):
    straight = tmp_path / "straight.pt"
    qmix.train(SPREAD, "grsn", 1, straight, tiny(300), eval_every=100, save_every=3, progress=False)
    resumed = tmp_path / "resumed.pt"
    calls, update = [0], qmix.Trainer.update

    def interrupt_after_five(self):
        calls[0] += 1
        if calls[0] > 5:
            raise KeyboardInterrupt
        return update(self)

    monkeypatch.setattr(qmix.Trainer, "update", interrupt_after_five)
    with pytest.raises(KeyboardInterrupt):
        qmix.train(SPREAD, "grsn", 1, resumed, tiny(300), eval_every=100, save_every=3, progress=False)
    assert resumed.with_suffix(".resume.pt").exists() and not resumed.exists()
    monkeypatch.setattr(qmix.Trainer, "update", update)
    qmix.train(SPREAD, "grsn", 1, resumed, tiny(300), eval_every=100, save_every=3, progress=False)
    a, b = load_team(straight), load_team(resumed)
    for k, v in a[0].state_dict().items():
        assert torch.equal(v, b[0].state_dict()[k]), k
    assert a[4]["best_eval"] == b[4]["best_eval"]


@pytest.mark.parametrize("name, layout", [("spread", "per-agent"), ("spread", "shared"), ("listener", "per-agent")])
def test_lava_matches_the_emulator_bit_for_bit(artifacts, name, layout):
    emu = lavaloop.run(artifacts[name], episodes=2, backend="emulator", epsilon=0.1, progress=False)
    lava = lavaloop.run(artifacts[name], episodes=2, backend="lava", epsilon=0.1, layout=layout, progress=False)
    assert lava.returns == emu.returns and lava.lengths == emu.lengths
    for a, b in zip(lava.log.actions, emu.log.actions):
        assert np.array_equal(a, b)
    for a, b in zip(lava.log.greedy, emu.log.greedy):
        assert np.array_equal(a, b)
    assert lava.log.extra["ops"] == emu.log.extra["ops"] and lava.spikes == emu.spikes
    if layout == "per-agent":
        assert lava.details["spikes_per_agent"] == emu.details["spikes_per_agent"]
    assert lava.details["layout"] == layout and lava.decisions == emu.decisions == sum(emu.lengths) * (
        3 if name == "spread" else 2)


def test_run_record_reports_per_agent_fidelity(artifacts):
    res = lavaloop.run(artifacts["listener"], episodes=2, backend="emulator", progress=False)
    per_agent = res.details["agreement_per_agent"]
    assert set(per_agent) == {"speaker_0", "listener_0"}
    assert res.agreement == pytest.approx(np.mean(list(per_agent.values())))
    assert 0 <= res.details["team_agreement"] <= min(per_agent.values())
    speaker_actions = np.concatenate([a[:, 0] for a in res.log.actions])
    assert speaker_actions.max() < 3                     # never an action the speaker lacks
    assert res.energy["energy_per_decision_nj"]["cmos45"] > 0
    assert json.dumps(res.to_dict())


def test_bad_team_inputs_fail_in_one_line(teams, artifacts, cartpole_artifact, tmp_path):
    with pytest.raises(ShapeMismatchError, match="3 agents; mpe2:simple_speaker_listener_v4 has 2"):
        lavaloop.convert(teams["spread"], LISTENER)
    with pytest.raises(ShapeMismatchError, match=r"observation sizes \[3, 11\], actions \[3, 5\]\); "
                       r"mpe2:simple_reference_v3 has observation sizes \[21, 21\]"):
        lavaloop.convert(teams["listener"], "mpe2:simple_reference_v3")
    with pytest.raises(LavaloopError, match="unknown MPE task 'mpe2:simple_nothing_v1'"):
        lavaloop.convert(teams["spread"], "mpe2:simple_nothing_v1")
    with pytest.raises(CheckpointError, match="gru agents"):
        lavaloop.convert(teams["gru"], SPREAD)
    with pytest.raises(LavaloopError, match="multi-agent task: it takes a QMIX team checkpoint"):
        lavaloop.convert(ROOT / "checkpoints/grsn/cartpole_v_grsn_s0.pt", SPREAD)
    with pytest.raises(LavaloopError, match="unknown layout"):
        lavaloop.run(artifacts["spread"], episodes=1, layout="diagonal")
    proc = lavaloop_cli("run", artifacts["spread"], "--layout", "diagonal")
    assert proc.returncode == 2 and "invalid choice: 'diagonal'" in proc.stderr
    with pytest.raises(LavaloopError, match="does not take --layout"):
        lavaloop.run(cartpole_artifact[1], episodes=1, backend="emulator", layout="shared")
    broken = tmp_path / "broken.pt"
    saved = torch.load(teams["spread"], weights_only=True)
    saved["agent"] = {k: v[:1] for k, v in saved["agent"].items()}
    torch.save(saved, broken)
    with pytest.raises(CheckpointError, match="malformed QMIX team checkpoint.*size mismatch"):
        load_team(broken)
    out = tmp_path / "x.h5"
    assert_clean_failure(lavaloop_cli("convert", teams["spread"], "--env", "mpe2:simple_tag_v3", "-o", out),
                         out, "unknown MPE task")


def test_an_env_failing_inside_lava_is_one_error_and_leaves_nothing_running(artifacts):
    import multiprocessing

    from conftest import with_manifest
    from lavaloop.conversion.artifact_team import TeamArtifact
    from lavaloop.runtime import LavaRuntimeError

    art = TeamArtifact.load(artifacts["spread"])
    broken = with_manifest(art, env={**art.manifest["env"], "kwargs": {"N": 3, "local_ratio": 0.5, "bogus": 1}})
    with pytest.raises(LavaRuntimeError, match="environment failed inside the Lava runtime.*bogus"):
        lavaloop.run(broken, episodes=1, backend="lava", layout="shared", progress=False)
    assert multiprocessing.active_children() == []            # the runtime's processes are gone
