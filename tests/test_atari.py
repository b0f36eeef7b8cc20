"""Atari: Nature-DQN loaders, conversion, the DQN's env, Lava == emulator on Pong, bad input."""
import multiprocessing

import numpy as np
import pytest
import torch

from lavaloop import convert
from lavaloop.conversion.artifact_if import IFArtifact
from lavaloop.conversion.loaders import load_checkpoint
from lavaloop.conversion.models.qnet import NatureDQN
from lavaloop.deploy.cli import main
from lavaloop.deploy.run import run
from lavaloop.envs import EnvSpec, make_env, same_outcome
from lavaloop.errors import ArtifactError, ShapeMismatchError
from lavaloop.options import RunSettings
from lavaloop.trainers.dqn_atari import FrameReplay


def frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 4, 84, 84)).astype(np.float32)


def test_cleanrl_nature_dqn_state_dict(tmp_path):
    q = NatureDQN(6)                                   # CleanRL dqn_atari: network.N, forward x / 255
    torch.save(q.state_dict(), tmp_path / "dqn_atari.cleanrl_model")
    net = load_checkpoint(tmp_path / "dqn_atari.cleanrl_model")
    assert net.in_shape == (4, 84, 84) and net.n_actions == 6
    assert [l.stride for l in net.layers[:3]] == [4, 2, 1] and net.layers[2].out_shape == (64, 7, 7)
    x = frames(4)
    with torch.no_grad():
        expected = q(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(net.to_torch().q_values(x), expected, rtol=1e-4, atol=1e-6)


def test_stable_baselines3_cnn_policy_zip(tmp_path):
    sb3 = pytest.importorskip("stable_baselines3")
    model = sb3.DQN("CnnPolicy", make_env(EnvSpec.for_id("ALE/Pong-v5")), buffer_size=10, seed=0)
    model.save(tmp_path / "pong_sb3.zip")
    net = load_checkpoint(tmp_path / "pong_sb3.zip")
    assert net.format == "sb3" and len(net.layers) == 5
    x = frames(3)
    with torch.no_grad():
        expected = model.q_net(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(net.to_torch().q_values(x), expected, rtol=1e-4, atol=1e-6)


def test_dqn_env_is_the_nature_preprocessing():
    spec = EnvSpec.for_id("ALE/Pong-v5", max_episode_steps=7)
    assert EnvSpec.from_dict(spec.to_dict()) == spec
    env = make_env(spec)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    steps, done = 0, False
    while not done:
        _, _, term, trunc, _ = env.step(0)
        steps, done = steps + 1, term or trunc
    assert steps == 7                               # the cap counts agent steps, not frames
    env.close()


def test_same_outcome_finds_pongs_equivalent_actions_and_restores_the_emulator():
    spec = EnvSpec.for_id("ALE/Pong-v5")
    probed, plain = make_env(spec), make_env(spec)
    probed.reset(seed=0)
    plain.reset(seed=0)
    skip = spec.atari.frame_skip
    for t in range(20):                              # NOOP, FIRE, RIGHT, LEFT, RIGHTFIRE, LEFTFIRE
        assert same_outcome(probed, 0, 1, skip) and same_outcome(probed, 2, 4, skip)
        assert not same_outcome(probed, 2, 3, skip) and not same_outcome(probed, 0, 2, skip)
        a = t % 6
        assert np.array_equal(probed.step(a)[0], plain.step(a)[0])


def test_outcome_agreement_counts_equivalent_choices(pong_artifact):
    _, art = pong_artifact
    res = run(art, RunSettings(episodes=2, timesteps=8, epsilon=0.0, backend="emulator"), progress=False)
    assert res.agreement < res.details["outcome_agreement"] < 1.0     # some choices differ only between twins


def test_sticky_actions_are_not_probed_for_outcomes(pong_artifact):
    """Probing an outcome under sticky actions would change the replayed episode (ALE's restored
    state forgets the last action), so a sticky run reports no outcome agreement, and its
    replays reproduce its returns."""
    env = make_env(EnvSpec.for_id("ALE/Pong-v5", sticky=0.25, max_episode_steps=60))
    env.reset(seed=0)
    probed_env = make_env(EnvSpec.for_id("ALE/Pong-v5", sticky=0.25, max_episode_steps=60))
    probed_env.reset(seed=0)
    diverged = False
    for t in range(60):
        a = [2, 3, 0, 5, 4, 1][t % 6]
        same_outcome(probed_env, 2, 3, 4)
        diverged |= not np.array_equal(env.step(a)[0], probed_env.step(a)[0])
    assert diverged                                              # why sticky runs must not probe
    _, art = pong_artifact
    res = run(art, RunSettings(episodes=2, timesteps=8, epsilon=0.0, backend="emulator", sticky_actions=0.25),
              progress=False)
    assert res.details["outcome_agreement"] is None and 0 < res.agreement <= 1


def test_frame_replay_rebuilds_the_stacks():
    env = make_env(EnvSpec.for_id("ALE/Pong-v5", max_episode_steps=30))
    replay, rng = FrameReplay(50, 4, 84), np.random.default_rng(0)
    truth, obs, since = {}, env.reset(seed=0)[0], 0
    for _ in range(120):                             # wraps the buffer, crosses episode starts
        a = int(rng.integers(6))
        nxt, r, term, trunc, _ = env.step(a)
        truth[replay.pos] = (obs, nxt, a)
        replay.add(obs, nxt, a, r, term, since)
        obs, since = nxt, since + 1
        if term or trunc:
            obs, since = env.reset()[0], 0
    sample = replay.sample(rng, 200)
    stored = list(truth.values())
    for o, n, a in zip(sample["obs"].numpy(), sample["next_obs"].numpy(), sample["action"].numpy()):
        assert any(np.array_equal(o, so) and np.array_equal(n, sn) and a == sa for so, sn, sa in stored)


def test_nature_dqn_conversion_round_trip(pong_artifact):
    path, art = pong_artifact
    loaded = IFArtifact.load(path)
    assert [q.is_conv for q in loaded.layers] == [True, True, True, False, False]
    assert loaded.manifest["env"]["atari"]["frame_stack"] == 4
    assert loaded.manifest["env"]["max_episode_steps"] == 25
    for a, b in zip(loaded.layers, art.layers):
        assert np.array_equal(a.weight, b.weight) and a.stride == b.stride and a.in_shape == b.in_shape
    assert all(r["weight_rel_rms_error"] < 0.02 for r in art.manifest["quantization"])


@pytest.mark.parametrize("per_layer", [False, True])
def test_emulator_is_bit_exact_with_lava_on_pong(pong_artifact, per_layer):
    _, art = pong_artifact
    settings = dict(episodes=2, seed=3, timesteps=8, readout="robust", epsilon=0.1)
    lava = run(art, RunSettings(**settings, backend="lava", per_layer_processes=per_layer), progress=False).log
    emu = run(art, RunSettings(**settings, backend="emulator"), progress=False).log
    assert lava.decisions == 50
    assert np.array_equal(lava.returns, emu.returns)
    for a, b in zip(lava.greedy + lava.actions, emu.greedy + emu.actions):
        assert np.array_equal(a, b)
    assert lava.spikes == emu.spikes and lava.synops == emu.synops and min(lava.spikes[:-1]) > 0
    assert not multiprocessing.active_children()


def test_deploying_on_another_game_or_shape_is_refused(pong_artifact, tmp_path, capsys):
    path, art = pong_artifact
    for args, message in [(["--env", "ALE/Breakout-v5"], "different game"),
                          (["--env", "CartPole-v1"], "different game")]:
        assert main(["run", str(path), "--episodes", "1", *args]) == 2
        assert message in capsys.readouterr().err
    bad = IFArtifact({**art.manifest, "obs_shape": [4, 80, 80]}, art.layers, art.source)
    with pytest.raises(ArtifactError):
        bad.validate()
    with pytest.raises(ShapeMismatchError, match=r"inputs of shape \(4, 84, 84\)"):
        convert(_nature_checkpoint(tmp_path), "CartPole-v1", calib_steps=10)


def _nature_checkpoint(tmp_path):
    torch.save(NatureDQN(6).state_dict(), tmp_path / "nature.pt")
    return tmp_path / "nature.pt"


def test_atari_trainer_saves_and_resumes_from_its_slim_state(tmp_path):
    from lavaloop.trainers.dqn_atari import Config, export_state, train

    cfg = Config(total_steps=240, buffer_size=200, learning_starts=60, eps_steps=100, max_episode_steps=40,
                 target_update=50)
    out = tmp_path / "q.pt"
    train("ALE/Pong-v5", tmp_path / "run", out, 0, cfg, eval_every=120, eval_episodes=1, save_every=120)
    assert (tmp_path / "run" / "eval.csv").read_text().count("\n") == 3          # header + 2 evaluations
    export_state(tmp_path / "run", tmp_path / "slim.pt")
    slim = torch.load(tmp_path / "slim.pt", weights_only=True)
    assert slim["step"] == 240 and "opt" not in slim
    cfg2 = Config(**{**cfg.__dict__, "total_steps": 300})
    train("ALE/Pong-v5", tmp_path / "run2", out, 0, cfg2, eval_every=1000, eval_episodes=1, save_every=60,
          resume_from=tmp_path / "slim.pt")
    assert torch.load(tmp_path / "run2" / "state.pt", weights_only=True)["step"] == 300
    assert set(torch.load(out, weights_only=True)) == set(NatureDQN(6).state_dict())


def test_sticky_action_probability_is_checked(pong_artifact, capsys):
    path, _ = pong_artifact
    assert main(["run", str(path), "--episodes", "1", "--sticky-actions", "1.5"]) == 2
    assert "sticky-action probability must be in [0, 1]" in capsys.readouterr().err


def test_channel_normalization_of_the_nature_dqn():
    """Per-channel lambdas for the three convolutions, one for each dense layer; each channel's
    lambda is the percentile of its own positive outputs, within the layer's range."""
    from conftest import PONG

    layer = convert(PONG, "ALE/Pong-v5", calib_steps=200, max_episode_steps=25)
    chan = convert(PONG, "ALE/Pong-v5", calib_steps=200, max_episode_steps=25,
                                                      normalization="channel")
    lam_l, lam_c = layer.manifest["normalization"]["scales"], chan.manifest["normalization"]["scales"]
    assert [len(s) if isinstance(s, list) else None for s in lam_c] == [32, 64, 64, None, None]
    assert lam_c[3:] == lam_l[3:]      # the same calibration data, the same dense lambdas
    for conv_l, conv_c in zip(lam_l[:3], lam_c[:3]):
        assert min(conv_c) <= conv_l <= max(conv_c) and min(conv_c) < max(conv_c)
    assert chan.manifest["normalization"]["mode"] == "channel"
    assert 0 < chan.manifest["rate_limit_agreement"] <= 1


def test_atari_trainer_ends_the_td_target_at_a_lost_life(tmp_path, monkeypatch):
    """Breakout: a transition that costs a life is stored as terminal (Mnih et al. 2015), the
    game goes on; a transition that costs none is not."""
    import gymnasium as gym

    from lavaloop.trainers import dqn_atari as T

    steps, dones = [], []          # per step: (lives before, lives after, terminated)

    class RecordLives(gym.Wrapper):
        def reset(self, **kw):
            obs, info = self.env.reset(**kw)
            self.lives = info["lives"]
            return obs, info

        def step(self, action):
            obs, r, term, trunc, info = self.env.step(action)
            steps.append((self.lives, info["lives"], term))
            self.lives = info["lives"]
            return obs, r, term, trunc, info

    monkeypatch.setattr(T, "make_env", lambda spec: RecordLives(make_env(spec)))
    add = T.FrameReplay.add

    def record_done(self, obs, next_obs, action, reward, done, since_reset):
        dones.append(done)
        add(self, obs, next_obs, action, reward, done, since_reset)

    monkeypatch.setattr(T.FrameReplay, "add", record_done)
    cfg = T.Config(total_steps=600, buffer_size=700, learning_starts=10_000, max_episode_steps=10_000)
    T.train("ALE/Breakout-v5", tmp_path / "run", tmp_path / "q.pt", 0, cfg, eval_every=10_000,
            eval_episodes=1, save_every=10_000)
    before, after, term = np.array(steps).T
    lost, term = after < before, term.astype(bool)
    assert (lost & ~term).sum() >= 2                            # random play loses lives mid-game
    assert np.array_equal(np.asarray(dones, bool), lost | term)
