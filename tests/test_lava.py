"""The Lava backend: bit-exact with the emulator, failures reported, nothing left running."""
import multiprocessing

import numpy as np
import pytest

from lavaloop.conversion.artifact import Artifact
from lavaloop.deploy import build, runner
from lavaloop.deploy.runner import LavaRuntimeError, RunSettings, run


@pytest.fixture(scope="module")
def short_artifact(cartpole_artifact):
    """The CartPole artifact with episodes capped at 40 steps, to keep Lava runs short."""
    _, art = cartpole_artifact
    manifest = {**art.manifest, "env": {**art.manifest["env"], "max_episode_steps": 40}}
    return Artifact(manifest, art.layers, art.source)


@pytest.mark.parametrize("readout, epsilon", [("robust", 0.2), ("spike_count", 0.0)])
def test_emulator_is_bit_exact_with_lava(short_artifact, readout, epsilon):
    settings = dict(seeds=[0, 1, 2], timesteps=6, readout=readout, epsilon=epsilon)
    lava = run(short_artifact, RunSettings(**settings, backend="lava"), progress=False)
    emu = run(short_artifact, RunSettings(**settings, backend="emulator"), progress=False)
    assert lava.decisions > 0
    assert np.array_equal(lava.returns, emu.returns) and np.array_equal(lava.lengths, emu.lengths)
    for a, b in zip(lava.greedy, emu.greedy):
        assert np.array_equal(a, b)
    for a, b in zip(lava.actions, emu.actions):
        assert np.array_equal(a, b)
    assert lava.spikes == emu.spikes and lava.synops == emu.synops
    assert sum(lava.spikes) > 0
    assert not multiprocessing.active_children()


def test_environment_failure_inside_lava_is_reported(short_artifact, monkeypatch):
    def broken(spec):
        raise RuntimeError("the emulator cabinet caught fire")

    monkeypatch.setattr(build, "make_env", broken)
    with pytest.raises(LavaRuntimeError, match="cabinet caught fire"):
        runner.run_lava(short_artifact, RunSettings([0], 4, "robust", 0.0), progress=False)
    assert not multiprocessing.active_children()


def test_a_dying_process_model_does_not_hang(short_artifact, monkeypatch):
    from lavaloop.processes.if_layers import models

    def crash(self):
        raise ZeroDivisionError("model bug")

    monkeypatch.setattr(models.PyIFStackModel, "run_spk", crash)
    monkeypatch.setattr(runner, "HANG_TIMEOUT_S", 5.0)
    with pytest.raises(LavaRuntimeError):
        runner.run_lava(short_artifact, RunSettings([0], 4, "robust", 0.0), progress=False)
    assert not multiprocessing.active_children()
