"""Shared fixtures and helpers: the bundled checkpoints, artifacts converted from them, and
the command-line harness (one clear line for bad input, nothing left running)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the CLI does (lavaloop.deploy.cli)

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = ROOT / "checkpoints" / "cartpole_dqn.pt"
PONG = ROOT / "checkpoints" / "pong_dqn.pt"
LAVALOOP = [sys.executable, "-m", "lavaloop"]


def pytest_configure(config):
    os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def cartpole_checkpoint():
    return CARTPOLE


@pytest.fixture(scope="session")
def cartpole_artifact(tmp_path_factory):
    """The bundled CartPole DQN converted with a short calibration (path, IFArtifact)."""
    import lavaloop

    art = lavaloop.convert(CARTPOLE, "CartPole-v1", calib_steps=1000)
    path = tmp_path_factory.mktemp("artifacts") / "cartpole.h5"
    art.save(path)
    return path, art


@pytest.fixture(scope="session")
def pong_artifact(tmp_path_factory):
    """The bundled Pong Nature DQN, converted with a short calibration and 25-step episodes."""
    import lavaloop

    art = lavaloop.convert(PONG, "ALE/Pong-v5", calib_steps=300, timesteps=8, max_episode_steps=25)
    path = tmp_path_factory.mktemp("artifacts") / "pong.h5"
    art.save(path)
    return path, art


def with_manifest(art, **changes):
    """A copy of an artifact with manifest entries replaced (its datasets shared)."""
    import dataclasses

    return dataclasses.replace(art, manifest={**art.manifest, **changes})


def lavaloop_cli(*args, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m lavaloop ARGS` from the repository root."""
    return subprocess.run([*LAVALOOP, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, **kwargs)


def leftover_processes(marker) -> list[str]:
    """Processes whose command line mentions `marker` (other than pgrep itself)."""
    out = subprocess.run(["pgrep", "-af", str(marker)], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def assert_clean_failure(proc, marker, *needles):
    """Exit code 2, one line `lavaloop: error: ...` containing every needle, no traceback, no process left."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lavaloop: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert leftover_processes(marker) == []


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())
