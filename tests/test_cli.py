"""The `lavaloop` command: the happy path, one clear line for every kind of bad input,
signals that stop a run cleanly, and artifacts that refuse to load when tampered with."""
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from conftest import (
    CARTPOLE,
    LAVALOOP,
    ROOT,
    assert_clean_failure,
    lavaloop_cli,
    leftover_processes,
    read_json,
    with_manifest,
)
from lavaloop.deploy import cli


def test_convert_info_run_on_lava(tmp_path):
    out = tmp_path / "acrobot.h5"
    conv = lavaloop_cli("convert", ROOT / "checkpoints/acrobot_dqn.pt", "--env", "Acrobot-v1", "-o", out,
                        "--calib-steps", 1000, "--timesteps", 8)
    assert conv.returncode == 0, conv.stderr
    info = lavaloop_cli("info", out)
    assert info.returncode == 0 and "Acrobot-v1" in info.stdout and "loihi2" in info.stdout
    res = tmp_path / "run.json"
    ran = lavaloop_cli("run", out, "--episodes", 2, "--json", res, "--no-progress")
    assert ran.returncode == 0, ran.stderr
    assert "decision agreement" in ran.stdout and "normalized score" in ran.stdout
    assert "ratio" not in ran.stdout             # Acrobot's returns are negative: no plain ratio
    rec = read_json(res)
    assert rec["kind"] == "if" and rec["backend"] == "lava" and len(rec["episodes"]) == 2
    assert rec["details"]["timesteps"] == 8 and rec["return_ratio"] is None
    assert rec["return_difference"] == pytest.approx(rec["mean_return"] - rec["source_mean_return"])
    assert 0.0 <= rec["agreement"] <= 1.0 and rec["spikes_per_decision"] > 0
    assert rec["energy"]["energy_per_decision_nj"]["cmos45"] > 0
    assert rec["steps_per_s"] > 0 and rec["versions"]["lava-nc"]
    assert leftover_processes(out) == []


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    good = d / "good.pt"
    torch.save(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).state_dict(), good)
    (d / "truncated.pt").write_bytes(good.read_bytes()[:200])
    with zipfile.ZipFile(d / "notsb3.zip", "w") as zf:
        zf.writestr("hello.txt", "hi")
    torch.save(nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2)).state_dict(), d / "norm.pt")
    return d


@pytest.mark.parametrize("name, env, needle", [
    ("missing.pt", "CartPole-v1", "no such checkpoint"),
    ("truncated.pt", "CartPole-v1", "cannot read"),
    ("notsb3.zip", "CartPole-v1", "stable-baselines3"),
    ("norm.pt", "CartPole-v1", "unsupported layer"),
    ("good.pt", "NoSuchEnv-v9", "unknown environment id"),
    ("good.pt", "Acrobot-v1", "takes 4 inputs"),
])
def test_convert_bad_input(bad_files, name, env, needle):
    proc = lavaloop_cli("convert", bad_files / name, "--env", env, "-o", bad_files / "out.h5", "--calib-steps", 10)
    assert_clean_failure(proc, bad_files, needle)
    assert not (bad_files / "out.h5").exists()


@pytest.mark.parametrize("args, needle", [
    (["--calib-steps", "0"], "calib_steps must be >= 1, got 0"),
    (["--timesteps", "0"], "timesteps must be >= 1"),
    (["--percentile", "0"], "percentile must be in (0, 100]"),
    (["--percentile", "150"], "percentile must be in (0, 100]"),
    (["--epsilon", "1.5"], "epsilon must be in [0, 1]"),
    (["--calib-seed", "-1"], "calib_seed must be >= 0"),
    (["--max-episode-steps", "0"], "max_episode_steps must be >= 1"),
    (["--calib-episodes", "3"], "a DQN conversion takes no option calib_episodes"),
    (["--profile", "dynapse1", "--v-init", "zero"], "v_init do not apply to a mixed-signal profile"),
    (["--profile", "nosuchchip"], "unknown chip profile"),
    (["--distill-steps", "50"], "apply only with distill"),
    (["--distill-dagger-rounds", "4"], "apply only with distill"),
    (["--distill", "--distill-dagger-rounds", "-1"], "distill_dagger_rounds must be >= 0"),
    (["--distill", "--distill-dagger-steps", "0"], "distill_dagger_steps must be >= 1"),
    (["--distill", "--v-init", "zero"], "half threshold"),
    (["--distill-objective", "q"], "apply only with distill"),
])
def test_convert_bad_numbers(bad_files, args, needle):
    proc = lavaloop_cli("convert", bad_files / "good.pt", "--env", "CartPole-v1", "-o", bad_files / "n.h5", *args)
    assert_clean_failure(proc, bad_files, needle)
    assert not (bad_files / "n.h5").exists()


@pytest.mark.parametrize("args, needle", [
    (["--episodes", "0"], "episodes must be >= 1, got 0"),
    (["--seed", "-3"], "seed must be >= 0"),
    (["--timesteps", "0"], "timesteps must be >= 1"),
    (["--epsilon", "-0.1"], "epsilon must be in [0, 1]"),
    (["--sticky-actions", "2"], "sticky-action probability must be in [0, 1]"),
    (["--env", "Acrobot-v1"], "takes 4 inputs"),
])
def test_run_bad_numbers(cartpole_artifact, tmp_path, args, needle):
    path, _ = cartpole_artifact
    assert_clean_failure(lavaloop_cli("run", path, "--no-progress", *args), path, needle)


@pytest.mark.parametrize("args, needle", [
    (["--runs", "0"], "runs must be >= 1"),
    (["--games", "-1"], "games must be >= 1"),
    (["--mismatch-sigma", "-0.2"], "mismatch_sigma must be >= 0"),
    (["--checkpoint-every", "0"], "checkpoint_every must be >= 1"),
])
def test_dream_bad_numbers(tmp_path, args, needle):
    assert_clean_failure(lavaloop_cli("dream", "pong", "--out", tmp_path / "d", *args), tmp_path, needle)
    assert not (tmp_path / "d").exists()


def test_unwritable_outputs_fail_before_the_work(bad_files, cartpole_artifact, tmp_path):
    path, _ = cartpole_artifact
    assert_clean_failure(lavaloop_cli("convert", bad_files / "good.pt", "--env", "CartPole-v1", "-o",
                                      "/dev/null/x.h5"), bad_files, "cannot write /dev/null/x.h5")
    assert_clean_failure(lavaloop_cli("run", path, "--json", "/dev/null/r.json"), path, "cannot write")
    assert_clean_failure(lavaloop_cli("dream", "pong", "--out", "/dev/null/d"), tmp_path, "cannot write")


def test_options_refuse_wrong_types():
    from lavaloop.errors import LavaloopError
    from lavaloop.options import ConvertOptions, RunSettings

    for bad in (dict(timesteps="8"), dict(episodes=2.5), dict(episodes=True), dict(epsilon="0.1")):
        with pytest.raises(LavaloopError, match="must be an? (integer|number)"):
            RunSettings(**bad)
    with pytest.raises(LavaloopError, match="percentile must be a number"):
        ConvertOptions(percentile="high")
    for cls, bad in ((ConvertOptions, dict(equalize="no")), (ConvertOptions, dict(distill=1)),
                     (RunSettings, dict(calibrate_readout="yes"))):
        with pytest.raises(LavaloopError, match=f"{next(iter(bad))} must be True or False"):
            cls(**bad)


def test_options_refuse_none_where_it_means_nothing(tmp_path):
    """None is "unset" only where a field's type allows it: elsewhere one line, in every entry point."""
    import lavaloop
    from lavaloop.errors import LavaloopError
    from lavaloop.options import ConvertOptions, RunSettings, from_kwargs

    for cls, name in ((ConvertOptions, "calib_steps"), (ConvertOptions, "weight_split_bits"),
                      (ConvertOptions, "distill_dagger_rounds"), (RunSettings, "episodes")):
        with pytest.raises(LavaloopError, match=f"{name} needs a value, got None"):
            from_kwargs(cls, {name: None}, "test")
        with pytest.raises(LavaloopError, match=f"{name} needs a value, got None"):
            cls(**{name: None})
    assert from_kwargs(RunSettings, {"epsilon": None}, "test").epsilon is None
    with pytest.raises(LavaloopError, match="percentile needs a value"):
        lavaloop.convert(CARTPOLE, "CartPole-v1", percentile=None)
    with pytest.raises(LavaloopError, match="games needs a value"):
        lavaloop.dream("pong", tmp_path / "run", games=None)
    with pytest.raises(LavaloopError, match="rules must be a dict"):
        lavaloop.dream("pong", tmp_path / "run", rules=None)


def test_saved_files_get_the_usual_permissions(cartpole_artifact):
    path, _ = cartpole_artifact
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_run_artifact_for_another_env(cartpole_artifact, tmp_path):
    _, art = cartpole_artifact
    bad = tmp_path / "mismatch.h5"
    with_manifest(art, env={**art.manifest["env"], "id": "Acrobot-v1"}).save(bad)
    assert_clean_failure(lavaloop_cli("run", bad, "--episodes", 1), tmp_path, "Acrobot-v1")


@pytest.mark.parametrize("command", ["run", "info"])
def test_corrupted_artifact(cartpole_artifact, tmp_path, command):
    path, _ = cartpole_artifact
    bad = tmp_path / "corrupt.h5"
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = bytes(4096)
    bad.write_bytes(bytes(data[: len(data) - 1000]))
    assert_clean_failure(lavaloop_cli(command, bad), tmp_path, "corrupt.h5")


def dataset_bytes(path) -> list[int]:
    """File offsets of every byte stored in the artifact's datasets."""
    import h5py

    offsets = []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.id.get_offset() is not None:
                start = obj.id.get_offset()
                offsets.extend(range(start, start + obj.id.get_storage_size()))
        f.visititems(visit)
    return offsets


@pytest.fixture(scope="module")
def tiny_artifact(bad_files):
    """A 4-8-2 network's artifact: small enough to flip every one of its dataset bytes."""
    import lavaloop

    path = bad_files / "tiny.h5"
    lavaloop.convert(bad_files / "good.pt", "CartPole-v1", calib_steps=50).save(path)
    return path


def test_every_flipped_dataset_byte_is_rejected(tiny_artifact, cartpole_artifact, tmp_path):
    """The digest covers every dataset: flipping any byte of any of them fails to load with
    one message (a digest mismatch, or HDF5 failing to read a string it points to).
    Every dataset byte of a small artifact is tried, and 300 random ones of the
    CartPole artifact."""
    from lavaloop import load_artifact
    from lavaloop.errors import ArtifactError

    rng = np.random.default_rng(0)
    bad = tmp_path / "flipped.h5"
    for path, sample in ((tiny_artifact, None), (cartpole_artifact[0], 300)):
        clean, offsets = path.read_bytes(), dataset_bytes(path)
        assert len(offsets) > 200
        for off in offsets if sample is None else rng.choice(offsets, sample, replace=False):
            data = bytearray(clean)
            data[off] ^= 0xFF
            bad.write_bytes(data)
            with pytest.raises(ArtifactError, match="digest mismatch|corrupted"):
                load_artifact(bad)
    assert_clean_failure(lavaloop_cli("info", bad), tmp_path, "digest mismatch")


def test_missing_artifact(tmp_path):
    assert_clean_failure(lavaloop_cli("run", tmp_path / "none.h5"), tmp_path, "no such artifact")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_during_a_lava_run_leaves_no_process(cartpole_artifact, tmp_path, signum):
    """`kill -TERM` (what timeout, a batch scheduler or docker stop send) or a hang-up while
    Lava runs: the runtime is stopped, no process or shared-memory segment is left (Python's
    resource tracker finds none to warn of), the exit code is 128 + signal."""
    path, _ = cartpole_artifact
    marker = tmp_path / "sigterm.json"
    proc = subprocess.Popen([*LAVALOOP, "run", path, "--episodes", "50", "--json", marker, "--no-progress"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(lava_children(proc.pid)) < 2:
        time.sleep(0.2)
    children = lava_children(proc.pid)
    assert len(children) >= 2, "the Lava runtime did not start"
    time.sleep(1.0)                                  # mid-run
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and f"interrupted ({signal.Signals(signum).name})" in err
    assert "leaked" not in err, err
    time.sleep(0.5)
    assert [pid for pid in children if alive(pid)] == []
    assert not marker.exists()


def lava_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_cli_parses_into_the_api(monkeypatch, capsys):
    """In-process: options not given are not passed (the kind's defaults apply)."""
    seen = {}

    def convert(checkpoint, env, **options):
        seen.update(checkpoint=checkpoint, env=env, **options)
        raise cli.LavaloopError("stop here")

    monkeypatch.setattr(cli.lavaloop, "convert", convert)
    assert cli.main(["convert", "a.pt", "--env", "CartPole-v1", "-o", "x.h5", "--timesteps", "16",
                     "--sticky-actions", "0.25"]) == 2
    assert seen == {"checkpoint": "a.pt", "env": "CartPole-v1", "timesteps": 16, "sticky": 0.25}
    assert capsys.readouterr().err.strip() == "lavaloop: error: stop here"
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "x.h5", "--episodes", "many"])
    assert exc.value.code == 2


def test_convert_then_deploy_in_one_python_process(tmp_path):
    """The public API in a fresh interpreter outside the repository: convert (its progress bar
    fixes multiprocessing's start method), then run an episode on Lava."""
    script = ("import lavaloop\n"
              f"art = lavaloop.convert({str(ROOT / 'checkpoints/cartpole_dqn.pt')!r}, 'CartPole-v1', calib_steps=100)\n"
              "result = lavaloop.run(art, episodes=1, timesteps=8, progress=False)\n"
              "print('return', result.returns[0], 'agreement', result.agreement)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "return" in proc.stdout


def test_only_lavaloop_is_importable_outside_the_repository(tmp_path):
    script = ("import importlib.util, lavaloop\n"
              "print([m for m in ('deploy', 'conversion', 'processes', 'trainers') if importlib.util.find_spec(m)])\n"
              "help(lavaloop.convert)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "[]" and "checkpoint" in proc.stdout


def test_info_describes_the_artifact(cartpole_artifact):
    path, art = cartpole_artifact
    out = lavaloop_cli("info", path).stdout
    assert "rate-coded IF" in out and "network.0" in out and np.all([l.name in out for l in art.layers])
