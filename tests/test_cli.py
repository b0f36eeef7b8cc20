"""The `lavaloop` command: the happy path, and one clear line for every kind of bad input."""
import json
import subprocess
import sys
import zipfile

import h5py
import pytest
import torch
from torch import nn

from conftest import ROOT

LAVALOOP = [sys.executable, "-m", "lavaloop"]


def lavaloop(*args, timeout=600):
    return subprocess.run([*LAVALOOP, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def leftover_processes(marker) -> list[str]:
    out = subprocess.run(["pgrep", "-af", str(marker)], capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if "pgrep" not in l]


def assert_clean_failure(proc, marker, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lavaloop: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]
    assert leftover_processes(marker) == []


def test_convert_info_run_on_lava(tmp_path):
    out = tmp_path / "acrobot.h5"
    conv = lavaloop("convert", ROOT / "checkpoints/acrobot_dqn.pt", "--env", "Acrobot-v1", "-o", out,
                    "--calib-steps", 1000, "--timesteps", 8)
    assert conv.returncode == 0, conv.stderr
    info = lavaloop("info", out)
    assert info.returncode == 0 and "Acrobot-v1" in info.stdout and "loihi2" in info.stdout
    res = tmp_path / "run.json"
    ran = lavaloop("run", out, "--episodes", 2, "--json", res, "--no-progress")
    assert ran.returncode == 0, ran.stderr
    assert "conversion rate" in ran.stdout
    rec = json.loads(res.read_text())
    assert rec["backend"] == "lava" and len(rec["episodes"]) == 2 and rec["timesteps"] == 8
    assert 0.0 <= rec["conversion_rate"] <= 1.0 and rec["spikes_per_decision"] > 0
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
    proc = lavaloop("convert", bad_files / name, "--env", env, "-o", bad_files / "out.h5",
                    "--calib-steps", 10)
    assert_clean_failure(proc, bad_files, needle)
    assert not (bad_files / "out.h5").exists()


def test_run_artifact_for_another_env(cartpole_artifact, tmp_path):
    path, _ = cartpole_artifact
    bad = tmp_path / "mismatch.h5"
    bad.write_bytes(path.read_bytes())
    with h5py.File(bad, "r+") as f:
        m = json.loads(f.attrs["manifest"])
        m["env"]["id"] = "Acrobot-v1"
        f.attrs["manifest"] = json.dumps(m)
    assert_clean_failure(lavaloop("run", bad, "--episodes", 1), tmp_path, "Acrobot-v1")


@pytest.mark.parametrize("command", ["run", "info"])
def test_corrupted_artifact(cartpole_artifact, tmp_path, command):
    path, _ = cartpole_artifact
    bad = tmp_path / "corrupt.h5"
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = bytes(4096)
    bad.write_bytes(bytes(data[: len(data) - 1000]))
    assert_clean_failure(lavaloop(command, bad), tmp_path, "corrupt.h5")


def test_missing_artifact(tmp_path):
    assert_clean_failure(lavaloop("run", tmp_path / "none.h5"), tmp_path, "no such artifact")


def test_convert_then_deploy_in_one_python_process(tmp_path):
    """The Python API in a fresh interpreter: convert (its progress bar fixes multiprocessing's
    start method), then import the Lava side and run an episode."""
    script = ("from lavaloop.conversion.convert import ConvertOptions, convert\n"
              "art = convert('checkpoints/cartpole_dqn.pt', 'CartPole-v1', ConvertOptions(calib_steps=100))\n"
              "from lavaloop.deploy.runner import RunSettings, run\n"
              "log = run(art, RunSettings([0], 8, 'robust', 0.0, 'lava'), progress=False)\n"
              "print('return', log.returns[0])\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "return" in proc.stdout
