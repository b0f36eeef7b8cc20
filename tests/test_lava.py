"""The Lava backend: bit-exact with the emulator, failures reported, nothing left running."""
import multiprocessing

import numpy as np
import pytest

from conftest import with_manifest
from lavaloop.deploy import build
from lavaloop.deploy.run import run
from lavaloop.options import RunSettings
from lavaloop.runtime import LavaRuntimeError


@pytest.fixture(scope="module")
def short_artifact(cartpole_artifact):
    """The CartPole artifact with episodes capped at 40 steps, to keep Lava runs short."""
    _, art = cartpole_artifact
    return with_manifest(art, env={**art.manifest["env"], "max_episode_steps": 40})


@pytest.mark.parametrize("readout, epsilon", [("robust", 0.2), ("spike_count", 0.0)])
def test_emulator_is_bit_exact_with_lava(short_artifact, readout, epsilon):
    settings = dict(episodes=3, timesteps=6, readout=readout, epsilon=epsilon)
    lava = run(short_artifact, RunSettings(**settings, backend="lava"), progress=False)
    emu = run(short_artifact, RunSettings(**settings, backend="emulator"), progress=False)
    assert lava.decisions > 0
    assert lava.returns == emu.returns and lava.lengths == emu.lengths
    for a, b in zip(lava.log.greedy, emu.log.greedy):
        assert np.array_equal(a, b)
    for a, b in zip(lava.log.actions, emu.log.actions):
        assert np.array_equal(a, b)
    assert lava.log.spikes == emu.log.spikes and lava.log.synops == emu.log.synops
    assert lava.spikes > 0 and lava.energy == emu.energy
    assert not multiprocessing.active_children()


def test_environment_failure_inside_lava_is_reported(short_artifact, monkeypatch):
    def broken(spec):
        raise RuntimeError("the emulator cabinet caught fire")

    monkeypatch.setattr(build, "make_env", broken)
    with pytest.raises(LavaRuntimeError, match="cabinet caught fire"):
        run(short_artifact, RunSettings(episodes=1, timesteps=4), progress=False)
    assert not multiprocessing.active_children()


def test_a_dying_process_model_does_not_hang(short_artifact, monkeypatch):
    from lavaloop import runtime
    from lavaloop.processes.if_layers import models

    def crash(self):
        raise ZeroDivisionError("model bug")

    monkeypatch.setattr(models.PyIFStackModel, "run_spk", crash)
    monkeypatch.setattr(runtime, "HANG_TIMEOUT_S", 5.0)
    with pytest.raises(LavaRuntimeError):
        run(short_artifact, RunSettings(episodes=1, timesteps=4), progress=False)
    assert not multiprocessing.active_children()


def test_stopping_a_runtime_spares_other_children(short_artifact):
    """A user's own worker process survives a Lava run (and its failure) in the same host process."""
    import time

    ctx = multiprocessing.get_context("fork")
    worker = ctx.Process(target=time.sleep, args=(60,), daemon=True)
    worker.start()
    try:
        run(short_artifact, RunSettings(episodes=1, timesteps=4), progress=False)
        assert worker.is_alive()
        assert multiprocessing.active_children() == [worker]
    finally:
        worker.terminate()
        worker.join()
