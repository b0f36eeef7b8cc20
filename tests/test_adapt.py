"""`lavaloop adapt`: the host trains the readout in the loop, bit-exact on Lava and the
emulator, resumable, within the profile's limits; bad input gets one line."""
import dataclasses
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

import lavaloop
from conftest import CARTPOLE, LAVALOOP, ROOT, assert_clean_failure, leftover_processes, read_json, with_manifest
from conftest import lavaloop_cli as cli
from lavaloop.deploy.adapt import chips
from lavaloop.fixedpoint import int_max
from lavaloop.profiles import PROFILES

LONG_POLE = {"length": 1.0}    # the drifted task: the bundled DQN balances it for ~30 steps
GRSN = ROOT / "checkpoints" / "grsn" / "cartpole_v_grsn_s0.pt"


@pytest.fixture(scope="module")
def small(cartpole_artifact):
    """The CartPole artifact at T = 8 (a short window keeps the Lava runs short)."""
    return with_manifest(cartpole_artifact[1], timesteps=8)


def checkpoint_arrays(out):
    with np.load(out / "checkpoint.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k != "meta"}


def test_adaptation_run_is_bit_exact_on_lava_and_the_emulator(small, tmp_path):
    runs = {}
    for backend in ("emulator", "lava"):
        runs[backend] = lavaloop.adapt(small, episodes=3, backend=backend, out=tmp_path / backend,
                                       env_params=LONG_POLE, updates_per_decision=2, progress=False)
    (emu, emu_art), (lava, lava_art) = runs["emulator"], runs["lava"]
    assert emu["curve"] == lava["curve"]                    # returns, lengths, agreement, losses
    a, b = checkpoint_arrays(tmp_path / "emulator"), checkpoint_arrays(tmp_path / "lava")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)   # weights, Adam, replay
    assert np.array_equal(emu_art.layers[-1].weight, lava_art.layers[-1].weight)
    assert emu["readout"]["changed_fraction"] > 0.1         # it did learn something
    assert lava_art.env_spec.physics == LONG_POLE           # the drifted task is recorded
    assert lava_art.manifest["adaptation"]["rule"] == "td"


def test_sigma_delta_adaptation_is_bit_exact_on_lava_and_the_emulator(tmp_path):
    """Graded features (the last hidden layer's activations as messages) on both backends."""
    art = lavaloop.convert(CARTPOLE, "CartPole-v1", coding="sigma-delta", calib_steps=500)
    runs = {b: lavaloop.adapt(art, episodes=3, backend=b, out=tmp_path / b, env_params=LONG_POLE, progress=False)
            for b in ("emulator", "lava")}
    assert runs["emulator"][0]["curve"] == runs["lava"][0]["curve"]
    a, b = checkpoint_arrays(tmp_path / "emulator"), checkpoint_arrays(tmp_path / "lava")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert runs["lava"][0]["readout"]["changed_fraction"] > 0.05
    first, _ = lavaloop.adapt(art, episodes=1, epsilon=0.0, out=tmp_path / "one", progress=False)
    assert first["curve"][0]["return"] == lavaloop.run(art, episodes=1, backend="emulator", epsilon=0.0,
                                                       progress=False).returns[0]


def test_an_untouched_readout_decides_as_the_deployed_network(small, tmp_path):
    """With no headroom the first episode runs the converted network itself: as `run` does."""
    rec, _ = lavaloop.adapt(small, episodes=1, out=tmp_path / "a", headroom_bits=0, epsilon=0.0, progress=False)
    ref = lavaloop.run(small, episodes=1, backend="emulator", epsilon=0.0, progress=False)
    assert rec["curve"][0]["return"] == ref.returns[0]
    assert rec["curve"][0]["agreement"] == pytest.approx(ref.agreement)


def test_an_interrupted_run_resumes_without_losing_an_update(small, tmp_path, monkeypatch):
    full, full_art = lavaloop.adapt(small, episodes=5, rule="distill", out=tmp_path / "full", progress=False)
    play = chips.EmulatorChip.play
    calls = []

    def interrupted(self):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return play(self)

    monkeypatch.setattr(chips.EmulatorChip, "play", interrupted)
    with pytest.raises(KeyboardInterrupt):
        lavaloop.adapt(small, episodes=5, rule="distill", out=tmp_path / "cut", progress=False)
    monkeypatch.setattr(chips.EmulatorChip, "play", play)
    assert len(read_json_checkpoint(tmp_path / "cut")) == 3
    resumed, resumed_art = lavaloop.adapt(small, episodes=5, rule="distill", out=tmp_path / "cut", progress=False)
    assert resumed["curve"] == full["curve"]
    a, b = checkpoint_arrays(tmp_path / "full"), checkpoint_arrays(tmp_path / "cut")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.array_equal(full_art.layers[-1].weight, resumed_art.layers[-1].weight)
    lavaloop.adapt(small, episodes=2, rule="distill", out=tmp_path / "ext", progress=False)
    extended, _ = lavaloop.adapt(small, episodes=5, rule="distill", out=tmp_path / "ext", progress=False)
    assert extended["curve"] == full["curve"]                 # more episodes continue the run
    with pytest.raises(lavaloop.LavaloopError, match="holds 5 adaptation episodes"):
        lavaloop.adapt(small, episodes=4, rule="distill", out=tmp_path / "ext", progress=False)


def test_keep_best_keeps_the_readout_that_played_the_best_window(small, tmp_path):
    """keep="best": the artifact gets the readout that played the episode ending the best
    10-episode mean return (the readout a run stopped right before that episode ends with)."""
    last_rec, last = lavaloop.adapt(small, episodes=14, env_params=LONG_POLE, out=tmp_path / "b", progress=False)
    assert last_rec["kept"] == {"readout": "last"}
    rec, best = lavaloop.adapt(small, episodes=14, env_params=LONG_POLE, out=tmp_path / "b", keep="best",
                               progress=False)      # the same run, nothing replayed: only the choice differs
    assert rec["curve"] == last_rec["curve"]
    returns = [c["return"] for c in rec["curve"]]
    means = [np.mean(returns[k - 9:k + 1]) for k in range(9, 14)]
    episode = 9 + int(np.argmax(means))
    assert rec["kept"] == {"readout": "best", "episode": episode, "window_mean": max(means)}
    assert best.manifest["adaptation"]["kept"] == rec["kept"]
    _, stopped = lavaloop.adapt(small, episodes=episode, env_params=LONG_POLE, out=tmp_path / "s", progress=False)
    assert np.array_equal(best.layers[-1].weight, stopped.layers[-1].weight)
    assert np.array_equal(best.layers[-1].bias, stopped.layers[-1].bias)
    assert not np.array_equal(best.layers[-1].weight, small.layers[-1].weight)
    assert "kept the readout of episode" in "\n".join(best.describe())


def read_json_checkpoint(out) -> list:
    import json

    with np.load(out / "checkpoint.npz", allow_pickle=False) as f:
        return json.loads(str(f["meta"]))["curve"]


@pytest.mark.parametrize("rule", ["td", "reinforce", "distill"])
def test_readout_updates_stay_within_the_profile(small, tmp_path, rule):
    """A step size far too large drives the weights to the limits, never past them."""
    rec, art = lavaloop.adapt(small, episodes=3, rule=rule, out=tmp_path / rule, lr=0.5, headroom_bits=0,
                              progress=False)
    prof, q = art.profile, art.layers[-1]
    assert np.abs(q.weight.astype(np.int64)).max() <= int_max(prof.weight_bits)
    assert rec["readout"]["at_limit_fraction"] > 0
    assert np.abs(q.bias).max() <= int_max(prof.state_bits) + 1
    art.save(tmp_path / "adapted.h5")                         # validated against the profile on save and load
    assert np.array_equal(lavaloop.load_artifact(tmp_path / "adapted.h5").layers[-1].weight, q.weight)


def test_distill_recovers_decisions_a_coarse_readout_loses(small, tmp_path):
    """A readout rounded to 3 of its 8 bits decides differently; distillation wins decisions back."""
    q = small.layers[-1]
    coarse_w = (np.rint(q.weight / 32.0) * 32).astype(q.weight.dtype)
    coarse = dataclasses.replace(small, layers=[*small.layers[:-1], dataclasses.replace(q, weight=coarse_w)])
    rec, _ = lavaloop.adapt(coarse, episodes=8, rule="distill", out=tmp_path / "d", headroom_bits=0,
                            epsilon=0.0, progress=False)
    agreement = [c["agreement"] for c in rec["curve"]]
    assert np.mean(agreement[-3:]) > agreement[0] + 0.05


def test_adapt_cli_writes_a_run_record_and_an_artifact(cartpole_artifact, tmp_path):
    path, _ = cartpole_artifact
    proc = cli("adapt", path, "--episodes", 2, "--env-param", "length=1.0", "--out", tmp_path / "run",
               "-o", tmp_path / "adapted.h5", "--timesteps", 8, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    rec = read_json(tmp_path / "run" / "results.json")
    assert [c["episode"] for c in rec["curve"]] == [0, 1] and rec["backend"] == "emulator"
    art = lavaloop.load_artifact(tmp_path / "adapted.h5")
    assert art.env_spec.physics == LONG_POLE and art.manifest["adaptation"]["episodes"] == 2
    info = cli("info", tmp_path / "adapted.h5")
    assert "adapted    readout trained in the loop on CartPole-v1 (length=1.0): td, 2 episodes" in info.stdout
    again = cli("adapt", path, "--episodes", 2, "--env-param", "length=1.0", "--out", tmp_path / "run",
                "--timesteps", 8, "--no-progress")   # finished: nothing left to run
    assert again.returncode == 0 and read_json(tmp_path / "run" / "results.json")["curve"] == rec["curve"]


def test_bad_adapt_input_gets_one_line(cartpole_artifact, tmp_path):
    """On the command line: exit 2, one line, nothing left behind (three cases); the API raises
    the same LavaloopError for the others."""
    path, art = cartpole_artifact
    for args, needles in [(("--rule", "sarsa"), ["unknown rule 'sarsa'", "td, reinforce, distill"]),
                          (("--env-param", "lenth=2"), ["no numeric attribute 'lenth'"]),
                          (("--headroom-bits", 9), ["headroom_bits must be <= 8"])]:
        out = tmp_path / "runs" / str(args[0])
        assert_clean_failure(cli("adapt", path, *args, "--out", out, "--no-progress"), out, *needles)
    usage = cli("adapt", path, "--env-param", "length", "--out", tmp_path / "runs" / "usage")
    assert usage.returncode == 2 and "NAME=NUMBER" in usage.stderr     # argparse's own usage line

    sd = lavaloop.convert(CARTPOLE, "CartPole-v1", coding="sigma-delta", calib_steps=300)
    narrow = tmp_path / "narrow.json"          # a chip whose neurons take 128 inputs
    narrow.write_text(json.dumps({**PROFILES["loihi2"].to_dict(), "name": "narrow", "fan_in": 128}))
    cases = [
        (with_manifest(art, readout="spike_count"), {}, "'robust' readout.*spike_count"),
        (lavaloop.convert(GRSN, "CartPole-V", calib_episodes=1), {}, "converted DQNs.*this one is 'grsn'"),
        (lavaloop.convert(CARTPOLE, "CartPole-v1", calib_steps=300, profile=str(narrow)), {},
         "256 inputs per neuron.*'narrow' allows 128"),
        (art, {"env": "Acrobot-v1"}, "Acrobot-v1"),
        (art, {"episodes": 0}, "episodes must be >= 1"),
        (art, {"solver": "sgd"}, "unknown solver 'sgd'"),
        (with_manifest(sd, normalization={**sd.manifest["normalization"], "readout_centred": True}), {"rule": "td"},
         "td learns Q-values, but this artifact's readout is centred"),
    ]
    for i, (artifact, kwargs, pattern) in enumerate(cases):
        with pytest.raises(lavaloop.LavaloopError, match=pattern):
            lavaloop.adapt(artifact, out=tmp_path / "api" / str(i), progress=False, **kwargs)


def test_a_run_directory_of_another_run_is_refused(small, tmp_path):
    lavaloop.adapt(small, episodes=1, out=tmp_path / "r", progress=False)
    with pytest.raises(lavaloop.LavaloopError, match="differs in: rule"):
        lavaloop.adapt(small, episodes=1, rule="distill", out=tmp_path / "r", progress=False)
    reconverted = with_manifest(small, conversion_seconds=small.manifest.get("conversion_seconds", 0) + 1)
    rec, _ = lavaloop.adapt(reconverted, episodes=2, out=tmp_path / "r", progress=False)   # the same network
    assert len(rec["curve"]) == 2


def test_sigterm_on_lava_leaves_no_process_and_the_rerun_ends_as_an_uninterrupted_run(cartpole_artifact, tmp_path):
    """`kill -TERM` while `lavaloop adapt --backend lava` runs: exit 128 + 15, no Lava process
    left, every finished episode kept; the rerun finishes the run, bit-exact with the emulator."""
    path, _ = cartpole_artifact
    args = ["adapt", str(path), "--episodes", "4", "--timesteps", "8", "--env-param", "length=1.0", "--no-progress"]
    out = tmp_path / "lava"
    proc = subprocess.Popen([*LAVALOOP, *args, "--backend", "lava", "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint.npz").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert (out / "checkpoint.npz").exists(), proc.communicate()[1]
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert leftover_processes(out) == [] and not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    kept = len(read_json_checkpoint(out))
    assert 1 <= kept < 4
    assert cli(*args, "--backend", "lava", "--out", out).returncode == 0
    assert cli(*args, "--backend", "emulator", "--out", tmp_path / "emu").returncode == 0
    assert read_json(out / "results.json")["curve"] == read_json(tmp_path / "emu" / "results.json")["curve"]


@pytest.mark.parametrize("coding", ["rate", "sigma-delta"])
def test_the_hosts_readout_model_decides_as_the_chip(coding):
    """Readout.q_values on the features the chip sent reproduces the chip's decisions: the
    trainers learn the function the chip computes."""
    from lavaloop.deploy.adapt.readout import Readout

    art = lavaloop.convert(CARTPOLE, "CartPole-v1", coding=coding, calib_steps=500,
                           **({"timesteps": 8} if coding == "rate" else {}))
    chip = chips.EmulatorChip(art, [0, 1], 8 if coding == "rate" else None, 0.0)
    values, features = [], []
    decide = chip.decide

    def recording(x):
        v, f = decide(x)
        values.append(v[0].copy())
        features.append(f.copy())
        return v, f

    chip.decide = recording
    for _ in range(2):
        chip.play()
    readout = Readout.of(art, 8 if coding == "rate" else None)
    host = readout.q_values(*art.layers[-1].effective(), readout.features(np.array(features)))
    chip_values = np.array(values)
    ranked = np.sort(chip_values, axis=1)
    untied = ranked[:, -1] > ranked[:, -2]            # where two actions tie, the float model may pick either
    assert untied.mean() > 0.95
    assert np.array_equal(host.argmax(1)[untied], chip_values.argmax(1)[untied])


def test_compensated_rounding_keeps_decisions_plain_rounding_loses():
    """Two actions whose values differ by ~2 % of their level (as a Q-network's do), on features
    that are functions of a 4-d observation (correlated, as a CartPole network's are): rounding
    every weight on its own flips decisions; rounding with error compensation on the features
    keeps them."""
    from lavaloop.deploy.adapt.readout import compensated_rounding

    rng = np.random.default_rng(1)
    obs = rng.normal(0, 1, (2000, 4))
    x = np.clip(obs @ rng.normal(0, 0.5, (4, 256)) + rng.normal(0.2, 0.3, 256), 0, 1)
    common = rng.normal(0, 1, 256)
    w = np.c_[np.stack([common, common + rng.normal(0, 0.02, 256)]) / 40, np.zeros(2)]
    steps = np.full((2, 257), np.abs(w).max() / 100)               # the largest weight is 100 steps
    limits = np.r_[np.full(256, 127), 1 << 23]
    exact = (x @ w[:, :-1].T).argmax(1)

    def agreement(q):
        return np.mean((np.c_[x, np.ones(len(x))] @ (q * steps).T).argmax(1) == exact)

    plain = np.clip(np.rint(w / steps), -limits, limits)
    compensated = compensated_rounding(w, steps, limits, np.c_[x, np.ones(len(x))])
    assert np.abs(compensated[:, :-1]).max() <= 127
    assert agreement(plain) < 0.85 and agreement(compensated) > 0.92
