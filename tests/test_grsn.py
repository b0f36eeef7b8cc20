"""GRSN policies: the torch cell, training, fixed-point conversion, Lava == emulator, bad input."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from lavaloop.artifact import read_artifact
from lavaloop.conversion.artifact_grsn import GRSNArtifact
from lavaloop.conversion.grsn import (
    GATE_BITS,
    LUT_IN_FRAC,
    LUT_INDEX_BITS,
    LUT_INTERP_BITS,
    convert_policy,
    load_policy,
    sigmoid_table,
)
from lavaloop.conversion.models.grsn import (
    FakeQuantLinear,
    GRSNCell,
    GRSNNoTAPCell,
    PolicyConfig,
    RecurrentNet,
    quantize_rows,
    save_policy,
)
from lavaloop.deploy.kinds.grsn import fidelity, run_grsn_emulator, run_grsn_lava
from lavaloop.envs import EnvSpec, episode_limit, make_env
from lavaloop.errors import ArtifactError, CheckpointError, ShapeMismatchError
from lavaloop.processes.dynamics import sigmoid_lookup
from lavaloop.profiles import PROFILES
from lavaloop.trainers import sac as train_sac
from lavaloop.trainers.recurrent import Config, train

TRAINED = "checkpoints/grsn/cartpole_v_grsn_s0.pt"


def test_pomdp_env_masks_observations():
    full, masked = make_env(EnvSpec.for_id("CartPole-v1")), make_env(EnvSpec.for_id("CartPole-V"))
    o_full, _ = full.reset(seed=3)
    o_v, _ = masked.reset(seed=3)
    np.testing.assert_array_equal(o_v, o_full[[1, 3]])
    assert masked.spec.max_episode_steps == 200                   # the env is built with the cap ...
    assert episode_limit(EnvSpec.for_id("CartPole-V")) == 200     # ... and runners log that many steps
    assert make_env(EnvSpec.for_id("CartPole-P")).observation_space.shape == (2,)
    lander, lander_v = make_env(EnvSpec.for_id("LunarLander-v3")), make_env(EnvSpec.for_id("LunarLander-V"))
    np.testing.assert_array_equal(lander_v.reset(seed=1)[0], lander.reset(seed=1)[0][[2, 3, 5, 6, 7]])
    assert episode_limit(EnvSpec.for_id("LunarLander-V")) == 1000


def test_grsn_cell_follows_the_equations_and_carries_state():
    torch.manual_seed(0)
    cell = GRSNCell(5, 7)
    x = torch.randn(6, 2, 5) * 3
    spikes, (h_end, v_end) = cell(x, cell.zero_state(2))
    h = v = torch.zeros(2, 7)
    for t in range(6):
        f = torch.sigmoid(x[t] @ cell.f.weight.T + cell.f.bias)
        c = torch.relu(x[t] @ cell.c.weight.T + cell.c.bias)
        h = f * h + (1 - f) * c
        v = v + (h - v) / 2
        s = (v >= 1).float()
        v = v - s
        torch.testing.assert_close(spikes[t], s)
    torch.testing.assert_close(h_end, h)
    # TAP: running the second half from the carried state gives the same spikes
    first, state = cell(x[:3], cell.zero_state(2))
    second, _ = cell(x[3:], state)
    torch.testing.assert_close(torch.cat([first, second]), spikes)
    assert spikes.sum() > 0


def test_grsn_without_tap_forgets_between_env_steps():
    torch.manual_seed(0)
    cell = GRSNNoTAPCell(5, 7)
    x = torch.randn(4, 1, 5) * 3
    rates, _ = cell(x, cell.zero_state(1))
    alone, _ = cell(x[3:], cell.zero_state(1))
    torch.testing.assert_close(rates[3], alone[0])
    assert set(torch.unique(rates * 4).tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}


def test_surrogate_gradient_flows_through_spikes():
    torch.manual_seed(0)
    net = RecurrentNet(PolicyConfig(2, 2, "grsn"))
    obs = torch.randn(8, 3, 2) * 3
    q, _, _ = net(obs, torch.zeros(8, 3, 2), torch.zeros(8, 3, 1), net.zero_state(3))
    q.sum().backward()
    assert net.rnn.f.weight.grad.abs().sum() > 0 and net.rnn.c.weight.grad.abs().sum() > 0


def test_interpolated_sigmoid_is_accurate():
    """The table's knots, linearly interpolated, stay within 2 output LSBs of sigmoid over the
    table's range and clamp beyond it; the gate never decreases as z grows."""
    table = sigmoid_table(LUT_INDEX_BITS, LUT_IN_FRAC, GATE_BITS)
    unit = 1 << (LUT_IN_FRAC + LUT_INTERP_BITS)          # z units per 1.0
    z = np.arange(-9 * unit, 9 * unit, 7)
    approx = sigmoid_lookup(table, z, LUT_INTERP_BITS) / 2 ** GATE_BITS
    exact = 1 / (1 + np.exp(-np.clip(z / unit, -8, 8)))
    assert np.abs(approx - exact).max() <= 2 * 2 ** -GATE_BITS
    assert (np.diff(approx) >= 0).all()
    assert approx[0] == table[0] / 2 ** GATE_BITS and approx[-1] == table[-1] / 2 ** GATE_BITS


def test_trainer_writes_a_loadable_policy(tmp_path):
    out = tmp_path / "p.pt"
    res = train("CartPole-P", "grsn", 0, out, Config(total_steps=300, learning_starts=100), eval_every=300,
                progress=False)
    net, meta, _ = load_policy(out)
    assert meta["env"] == "CartPole-P" and net.cfg.cell == "grsn" and len(res["curve"]) == 1
    assert (tmp_path / "p.csv").read_text().startswith("step,eval_return")


def test_fake_quantized_weights_are_the_deployed_weights(tmp_path):
    """Quantization-aware training rounds with the deployment rule: after snap_weights the
    converter finds every weight exactly representable; gradients pass straight through."""
    torch.manual_seed(0)
    lin = FakeQuantLinear(6, 4, bits=8)
    x = torch.randn(3, 6)
    lin(x).sum().backward()
    torch.testing.assert_close(lin.weight.grad, torch.ones(3, 4).T @ x)     # straight-through
    mant, exp = quantize_rows(lin.weight.detach(), 8)
    assert mant.abs().max() <= 127 and (mant.abs().amax(1) >= 64).all()      # full range per row
    policy = tmp_path / "qat.pt"
    res = train("CartPole-V", "grsn", 0, policy, dataclasses.replace(Config.finetune(150), learning_starts=50),
                eval_every=150, progress=False, weight_bits=8, init_from=TRAINED)
    assert [c[0] for c in res["curve"]] == [0, 150] and res["init_from"] == "cartpole_v_grsn_s0.pt"
    art = convert_policy(policy, "CartPole-V", calib_episodes=2)
    errors = art.manifest["quantization"]["weight_rel_rms_error"]
    assert set(errors) >= {"embed", "grsn_f", "grsn_c", "head0", "head2"} and max(errors.values()) == 0.0
    assert max(convert_policy(TRAINED, "CartPole-V", calib_episodes=2)
               .manifest["quantization"]["weight_rel_rms_error"].values()) > 0.001


def test_squashed_gaussian_log_probability():
    torch.manual_seed(0)
    out = torch.randn(50, 4, dtype=torch.float64) * 0.5          # away from tanh saturation
    a, logp = train_sac.squashed_gaussian(out)
    mean, log_std = out.chunk(2, dim=-1)
    lo, hi = train_sac.LOG_STD_MIN, train_sac.LOG_STD_MAX
    std = (lo + 0.5 * (hi - lo) * (torch.tanh(log_std) + 1)).exp()
    dist = torch.distributions.TransformedDistribution(torch.distributions.Normal(mean, std),
                                                       [torch.distributions.TanhTransform()])
    inside = (a.abs() < 0.99).all(-1)           # the 1e-6 guard of log(1 - a^2) matters only near +-1
    assert inside.sum() > 40 and a.abs().max() <= 1
    torch.testing.assert_close(logp[inside], dist.log_prob(a).sum(-1)[inside], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("env_id", ["Pendulum-V", "CartPole-V"])
def test_sac_trainer_updates_and_writes_a_policy(tmp_path, env_id):
    out = tmp_path / "sac.pt"
    res = train_sac.train(env_id, "grsn", 0, out, train_sac.Config(total_steps=260, learning_starts=200),
                          eval_every=260, progress=False)
    net, meta, _ = load_policy(out)
    assert net.cfg.continuous == (env_id == "Pendulum-V") and meta["trainer"].startswith("recurrent SAC")
    assert np.isfinite(res["best_eval"]) and len(res["curve"]) == 1
    sac = train_sac.SAC(net.cfg, train_sac.Config())
    replay = train_sac.SequenceReplay(net.cfg.n_actions, net.cfg.continuous)
    rng = np.random.default_rng(0)
    n = 70
    acts = rng.uniform(-1, 1, (n, 1)) if net.cfg.continuous else rng.integers(2, size=n)
    replay.add(rng.normal(size=(n + 1, net.cfg.obs_dim)), acts, rng.normal(size=n), False)
    before = [p.clone() for p in (*sac.actor.parameters(), *sac.critic.parameters())]
    stats = sac.update(replay.sample(rng, 4, 64))
    after = [*sac.actor.parameters(), *sac.critic.parameters()]
    assert all(np.isfinite(v) for v in stats.values())
    assert sum(not torch.equal(a, b) for a, b in zip(before, after)) > len(before) // 2


def test_sac_resumes_to_the_same_policy_and_fine_tunes_with_its_critic(tmp_path, monkeypatch):
    cfg = train_sac.Config(total_steps=700, learning_starts=200, train_freq=4)
    straight = tmp_path / "straight.pt"
    train_sac.train("Pendulum-V", "grsn", 3, straight, cfg, eval_every=350, progress=False, save_every=200)
    saved = torch.load(straight, weights_only=True)
    assert {"critic", "temperature"} <= set(saved)                    # kept for fine-tuning
    resumed = tmp_path / "resumed.pt"
    calls, update = [0], train_sac.SAC.update

    def interrupt(self, batch):
        calls[0] += 1
        if calls[0] > 80:          # past the resume point written at the episode end at step 400
            raise KeyboardInterrupt
        return update(self, batch)

    monkeypatch.setattr(train_sac.SAC, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_sac.train("Pendulum-V", "grsn", 3, resumed, cfg, eval_every=350, progress=False, save_every=200)
    assert resumed.with_suffix(".resume.pt").exists() and not resumed.exists()
    monkeypatch.setattr(train_sac.SAC, "update", update)
    train_sac.train("Pendulum-V", "grsn", 3, resumed, cfg, eval_every=350, progress=False, save_every=200)
    a, b = load_policy(straight)[0].state_dict(), load_policy(resumed)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    qat = tmp_path / "qat.pt"
    res = train_sac.train("Pendulum-V", "grsn", 3, qat, train_sac.Config.finetune(200), eval_every=200,
                          progress=False, weight_bits=8, init_from=straight)
    net, meta, _ = load_policy(qat)
    assert meta["init_from"] == "straight.pt" and res["curve"][0][0] == 0     # the loaded policy competes
    mant, exp = quantize_rows(net.obs_embed.weight, 8)
    torch.testing.assert_close(net.obs_embed.weight, mant * 2.0 ** exp[:, None])   # saved rounded
    bare = tmp_path / "bare.pt"
    save_policy(net, bare, meta)
    with pytest.raises(ValueError, match="keeps no critic"):
        train_sac.train("Pendulum-V", "grsn", 3, tmp_path / "x.pt", train_sac.Config.finetune(10),
                        progress=False, weight_bits=8, init_from=bare)


def test_recurrent_dqn_resumes_to_the_same_policy(tmp_path, monkeypatch):
    """An interrupted `trainers.recurrent` run continues from its resume file and ends with the
    weights of an uninterrupted run; a resume file of another run is refused."""
    from lavaloop.trainers import recurrent

    cfg = Config(total_steps=600, learning_starts=100, train_freq=4)
    straight = tmp_path / "straight.pt"
    train("CartPole-V", "gru", 2, straight, cfg, eval_every=300, progress=False, save_every=150)
    resumed = tmp_path / "resumed.pt"
    calls, loss = [0], recurrent.td_loss

    def interrupt(*args, **kwargs):
        calls[0] += 1
        if calls[0] > 90:          # step 460: past a resume point written at an episode end
            raise KeyboardInterrupt
        return loss(*args, **kwargs)

    monkeypatch.setattr(recurrent, "td_loss", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train("CartPole-V", "gru", 2, resumed, cfg, eval_every=300, progress=False, save_every=150)
    assert resumed.with_suffix(".resume.pt").exists() and not resumed.exists()
    monkeypatch.setattr(recurrent, "td_loss", loss)
    with pytest.raises(ValueError, match="belongs to another run"):
        train("CartPole-V", "gru", 3, resumed, cfg, eval_every=300, progress=False, save_every=150)
    train("CartPole-V", "gru", 2, resumed, cfg, eval_every=300, progress=False, save_every=150)
    assert not resumed.with_suffix(".resume.pt").exists()
    a, b = load_policy(straight)[0].state_dict(), load_policy(resumed)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained_artifact(tmp_path_factory):
    path = tmp_path_factory.mktemp("grsn") / "grsn.h5"
    convert_policy(TRAINED, "CartPole-V", calib_episodes=5).save(path)
    return read_artifact(path)


def test_fixed_point_grsn_follows_the_float_policy(trained_artifact, tmp_path):
    """loihi2's 8-bit weights flip a few near-threshold spikes per step (README: what fell short);
    with 16-bit weights the same arithmetic follows the float policy closely."""
    log = run_grsn_emulator(trained_artifact, [0, 1, 2], 0.0, progress=False)
    fid = fidelity(trained_artifact, log)
    assert fid["agreement"] >= 0.85 and fid["spike_mismatch"] < 0.05 and fid["state_error_mean"] < 0.01
    assert log.spikes[0] > 0 and log.extra["ops"]["ac"] > 0
    wide = tmp_path / "w16.json"
    wide.write_text(json.dumps(dataclasses.replace(PROFILES["loihi2"], name="w16", weight_bits=16).to_dict()))
    art16 = convert_policy(TRAINED, "CartPole-V", profile=str(wide), calib_episodes=5)
    fid16 = fidelity(art16, run_grsn_emulator(art16, [0, 1, 2], 0.0, progress=False))
    assert fid16["agreement"] >= 0.95 and fid16["spike_mismatch"] < fid["spike_mismatch"] / 3


def test_lava_equals_emulator_bit_for_bit(trained_artifact):
    seeds = [0, 1]
    emu = run_grsn_emulator(trained_artifact, seeds, 0.0, progress=False)
    lava = run_grsn_lava(trained_artifact, seeds, 0.0, progress=False)
    for a, b in zip(emu.greedy, lava.greedy):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(emu.returns, lava.returns)
    assert emu.spikes == lava.spikes and emu.extra["ops"] == lava.extra["ops"]


def _policy(tmp_path, **cfg) -> str:
    torch.manual_seed(0)
    path = tmp_path / "policy.pt"
    save_policy(RecurrentNet(PolicyConfig(2, 2, **cfg)), path, {"env": "CartPole-V"})
    return str(path)


def test_bad_checkpoints_are_refused(tmp_path):
    good = torch.load(_policy(tmp_path), weights_only=True)
    missing = dict(good, state_dict={k: v for k, v in good["state_dict"].items() if not k.startswith("rnn.f")})
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="rnn.f"):
        load_policy(tmp_path / "missing.pt")
    wrong = dict(good, config=good["config"].replace('"hidden": 128', '"hidden": 64'))
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="hidden size 64"):
        load_policy(tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="gru policy"):
        convert_policy(_policy(tmp_path, cell="gru"), "CartPole-V")


def test_continuous_policy_runs_on_lava_bit_for_bit(tmp_path):
    """A continuous (SAC) GRSN policy: its mean is the readout, tanh-decoded into [-1, 1]."""
    torch.manual_seed(1)
    path = tmp_path / "pendulum.pt"
    save_policy(RecurrentNet(PolicyConfig(1, 1, continuous=True)), path, {"env": "Pendulum-V"})
    art = convert_policy(path, "Pendulum-V", calib_episodes=2)
    assert art.manifest["continuous"] and len(art.stages[-1]["bias"]) == 1
    emu = run_grsn_emulator(art, [0, 1], 0.0, progress=False)
    lava = run_grsn_lava(art, [0, 1], 0.0, progress=False)
    for a, b in zip(emu.actions, lava.actions):
        assert a.shape == (200, 1) and np.abs(a).max() <= 1
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(emu.returns, lava.returns)
    assert emu.spikes == lava.spikes and emu.extra["ops"] == lava.extra["ops"]
    fid = fidelity(art, emu)
    assert fid["action_error_max"] < 0.1 and fid["agreement"] > 0.9
    save_policy(RecurrentNet(PolicyConfig(2, 1, continuous=True)), path, {"env": "CartPole-V"})
    with pytest.raises(ShapeMismatchError, match="continuous action dims"):
        convert_policy(path, "CartPole-V")


def test_mismatched_observation_mask_is_refused(tmp_path):
    with pytest.raises(ShapeMismatchError, match="trained on CartPole-V"):
        convert_policy(_policy(tmp_path), "CartPole-P")
    with pytest.raises(ShapeMismatchError, match="observation dims"):
        convert_policy(_policy(tmp_path), "Acrobot-v1")


def test_tampered_grsn_artifact_is_refused(tmp_path, trained_artifact):
    path = tmp_path / "g.h5"
    trained_artifact.save(path)
    with h5py.File(path, "r+") as f:
        w = f["stage/1/w_f"][()]
        w[0, 0] = 1000
        del f["stage/1/w_f"]
        f["stage/1/w_f"] = w
    with pytest.raises(ArtifactError, match="digest mismatch"):
        GRSNArtifact.load(path)
    stages = [dict(st) for st in trained_artifact.stages]       # written with a valid digest:
    stages[1]["w_f"] = stages[1]["w_f"].copy()                   # validation still refuses it
    stages[1]["w_f"][0, 0] = 1000
    GRSNArtifact(trained_artifact.manifest, stages, trained_artifact.source).save(path)
    with pytest.raises(ArtifactError, match="weights break profile"):
        GRSNArtifact.load(path)
    stages = [dict(st) for st in trained_artifact.stages]       # an artifact from before the
    del stages[1]["interp_bits"]                                 # interpolated sigmoid
    stages[1]["table"] = stages[1]["table"][:-1]
    GRSNArtifact(trained_artifact.manifest, stages, trained_artifact.source).save(path)
    with pytest.raises(ArtifactError, match="convert its checkpoint again"):
        GRSNArtifact.load(path)


def test_cli_converts_runs_and_refuses_with_one_line(tmp_path):
    out = tmp_path / "g.h5"
    cli = [sys.executable, "-m", "lavaloop"]
    ok = subprocess.run([*cli, "convert", TRAINED, "--env", "CartPole-V", "-o", str(out), "--calib-episodes", "3"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    run = subprocess.run([*cli, "run", str(out), "--episodes", "2", "--backend", "emulator", "--no-progress"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and "decision agreement" in run.stdout, run.stderr
    assert "carried state" in run.stdout and "energy" in run.stdout
    refused = subprocess.run([*cli, "run", str(out), "--timesteps", "8"], capture_output=True, text=True)
    assert refused.returncode == 2 and "does not take --timesteps" in refused.stderr
    bad = subprocess.run([*cli, "convert", TRAINED, "--env", "CartPole-P", "-o", str(tmp_path / "x.h5")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()


def test_float_ops_count_one_decision_per_row():
    from lavaloop.deploy.energy import counted_float_ops

    net = RecurrentNet(PolicyConfig(obs_dim=3, n_actions=2, cell="gru", hidden=4, head=(5,)))
    x = (torch.ones(1, 3, 3), torch.zeros(1, 3, 2), torch.zeros(1, 3, 1))
    with torch.no_grad(), counted_float_ops(net) as (ops, steps):
        net(*x, net.zero_state(3))
    assert steps == [3] and ops["neuron"] == 3 * 4
    # per row: obs embed 3*32 and shortcut 3*32 (all inputs non-zero), GRU 3*4*(nnz x + 0 + 1), head
    assert ops["mac"] > 3 * (3 * 32 + 3 * 32)
    with pytest.raises(ValueError, match="one env step"), counted_float_ops(net):
        net(*(t.expand(2, -1, -1) for t in x), net.zero_state(3))
