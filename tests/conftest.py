"""Shared fixtures: the bundled reference checkpoint and artifacts converted from it."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the CLI does (see deploy/cli.py)

import pytest

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = ROOT / "checkpoints" / "cartpole_dqn.pt"


@pytest.fixture(scope="session")
def cartpole_checkpoint():
    return CARTPOLE


@pytest.fixture(scope="session")
def cartpole_artifact(tmp_path_factory):
    """The bundled CartPole DQN converted with a short calibration (path, Artifact)."""
    from lavaloop.conversion.convert import ConvertOptions, convert

    art = convert(CARTPOLE, "CartPole-v1", ConvertOptions(calib_steps=1000))
    path = tmp_path_factory.mktemp("artifacts") / "cartpole.h5"
    art.save(path)
    return path, art


def pytest_configure(config):
    os.environ.setdefault("TQDM_DISABLE", "1")


PONG = ROOT / "checkpoints" / "pong_dqn.pt"


@pytest.fixture(scope="session")
def pong_artifact(tmp_path_factory):
    """The bundled Pong Nature DQN, converted with a short calibration and 25-step episodes."""
    from lavaloop.conversion.convert import ConvertOptions, convert

    art = convert(PONG, "ALE/Pong-v5", ConvertOptions(calib_steps=300, timesteps=8, max_episode_steps=25))
    path = tmp_path_factory.mktemp("artifacts") / "pong.h5"
    art.save(path)
    return path, art
