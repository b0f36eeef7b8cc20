"""The foundation's headline measurement: the bundled CartPole DQN, 20 episodes on Lava (slow)."""
import multiprocessing

import pytest

import lavaloop


@pytest.mark.slow
def test_cartpole_on_lava_matches_the_dqn(cartpole_checkpoint):
    """Thresholds are what results/cartpole_lava_T64.json measured, with a small margin."""
    art = lavaloop.convert(cartpole_checkpoint, "CartPole-v1", timesteps=64)
    res = lavaloop.run(art, episodes=20, backend="lava", progress=False)
    assert res.mean_return >= 0.95 * res.source_mean_return and res.normalized_score >= 0.95
    assert res.agreement >= 0.85
    assert not multiprocessing.active_children()
