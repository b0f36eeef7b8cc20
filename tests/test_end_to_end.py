"""The foundation's headline measurement: the bundled CartPole DQN, 20 episodes on Lava (slow)."""
import multiprocessing

import pytest

from lavaloop.conversion.convert import ConvertOptions, convert
from lavaloop.deploy.episodes import decision_agreement, source_returns
from lavaloop.deploy.runner import RunSettings, run


@pytest.mark.slow
def test_cartpole_on_lava_matches_the_dqn(cartpole_checkpoint):
    """Thresholds are what results/cartpole_lava_T64.json measured, with a small margin."""
    art = convert(cartpole_checkpoint, "CartPole-v1", ConvertOptions(timesteps=64))
    settings = RunSettings.for_artifact(art, 20, seed=0, backend="lava")
    log = run(art, settings, progress=False)
    rate = decision_agreement(art, log).rate
    src = source_returns(art, settings.seeds, 0.0)
    assert log.returns.mean() >= 0.95 * src.mean()
    assert rate >= 0.85
    assert not multiprocessing.active_children()
