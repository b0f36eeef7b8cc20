"""GRSN and LIF-with-TAP membranes on a mixed-signal chip (deploy.mixed_signal_grsn)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from lavaloop.conversion.models.grsn import CHIP_SYN_DECAY, GRSNChipCell, window_update
from lavaloop.deploy.mixed_signal_grsn import ChipMembrane, HybridPolicy
from lavaloop.envs import EnvSpec, make_env
from lavaloop.errors import ProfileError
from lavaloop.profiles import PROFILES
from lavaloop.trainers.recurrent import episode_returns, initial_policy

GRSN = Path(__file__).resolve().parents[1] / "checkpoints" / "grsn"
DYNAPSE2 = PROFILES["dynapse2"]


def test_a_window_is_the_cells_update():
    """Held for one window, the tuned chip membrane does v <- v/2 + I/2, as the cell (tau 2)."""
    chip = ChipMembrane(3, 2.0, DYNAPSE2, 2.0, "current", None, 0.0)
    chip.state["v"][:] = [0.8, 0.0, 0.5]
    counts = chip.window(np.array([0.0, 1.5, 0.9]))
    np.testing.assert_allclose(chip.state["v"], [0.4, 0.75, 0.7], atol=1e-12)
    assert counts.tolist() == [0, 0, 0]
    assert chip.window(np.array([0.0, 3.0, 0.0]))[1] >= 1       # 0.75/2 + 1.5 >= 1: a spike


def test_spike_trains_carry_the_current():
    """Through generators and DPI synapses the membrane settles at I: the excitatory and the
    inhibitory wiring (lif_step lets v go below rest, which a DPI membrane cannot; documented)."""
    chip = ChipMembrane(2, 2.0, DYNAPSE2, 2.0, "spikes", None, 0.0)
    for _ in range(20):
        chip.window(np.array([0.8, -0.5]))
    np.testing.assert_allclose(chip.state["v"], [0.8, -0.5], atol=0.05)


def test_host_mode_is_the_float_policy_and_the_chip_is_close():
    hp = HybridPolicy(GRSN / "cartpole_v_grsn_s0.pt", "CartPole-V", calib_seeds=[1000])
    host = hp.evaluate([0], "host")
    assert host["agreement"] == 1.0
    assert host["returns"] == episode_returns(hp.net, hp.spec, [0])
    chip = hp.evaluate([0], "spikes")
    assert 0.6 < chip["agreement"] < 1.0 and chip["spikes_per_step"] > 0
    frozen = hp.evaluate([0], "host", frozen_gate=True)
    assert frozen["agreement"] < 1.0


def test_bad_input():
    with pytest.raises(ProfileError, match="only discrete GRSN and LIF-with-TAP"):
        HybridPolicy(GRSN / "cartpole_v_gru_s0.pt", "CartPole-V", calib_seeds=[1000])
    with pytest.raises(ProfileError, match="not a mixed-signal chip"):
        HybridPolicy(GRSN / "cartpole_v_lif_s0.pt", "CartPole-V", "loihi2", calib_seeds=[1000])
    lif = HybridPolicy(GRSN / "cartpole_v_lif_s0.pt", "CartPole-V", calib_seeds=[1000])
    with pytest.raises(ProfileError, match="GRSN policies only"):
        lif.on_chip("current", None, 0.0, frozen_gate=True)
    with pytest.raises(ProfileError, match="input mode"):
        lif.on_chip("voltage", None, 0.0)


def test_window_update_is_the_chips_neuron():
    """window_update with an ideal current equals lif_step on the chip bit for bit in float64,
    refractory steps carried across windows included; with the synapse at the spike trains'
    mean rate (what the grsn_chip cell trains with) it is close to the chip fed spike trains."""
    rng = np.random.default_rng(0)
    chip = ChipMembrane(64, 2.0, DYNAPSE2, 3.0, "current", None, 0.0)
    trains = ChipMembrane(64, 2.0, DYNAPSE2, 3.0, "spikes", None, 0.0)
    ideal = mean_rate = tuple(torch.zeros(64, dtype=torch.float64) for _ in range(3))
    differ = 0
    for _ in range(100):
        current = rng.uniform(0, 3, 64)
        counts = chip.window(current)
        ideal, spiked = window_update(ideal, torch.as_tensor(current), 2.0)
        np.testing.assert_array_equal(counts > 0, spiked.numpy() > 0)
        np.testing.assert_array_equal(chip.state["v"], ideal[1].numpy())
        mean_rate, spiked = window_update(mean_rate, torch.as_tensor(current), 2.0, CHIP_SYN_DECAY)
        differ += int(((trains.window(current) > 0) != (spiked.numpy() > 0)).sum())
    assert differ / (100 * 64) < 0.1        # 4.9 %: the trains' whole spikes


def test_a_grsn_policy_fine_tunes_as_grsn_chip_and_nothing_else():
    env = make_env(EnvSpec.for_id("CartPole-V"))
    net, _ = initial_policy(env, "CartPole-V", "grsn_chip", None, GRSN / "cartpole_v_grsn_s0.pt", 0.1)
    assert isinstance(net.rnn, GRSNChipCell) and net.rnn.mismatch_sigma == 0.1
    source, _ = initial_policy(env, "CartPole-V", None, None, GRSN / "cartpole_v_grsn_s0.pt")
    assert source.cfg.cell == "grsn"
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), source.state_dict().values()))
    with pytest.raises(ValueError, match="holds a lif policy"):
        initial_policy(env, "CartPole-V", "grsn_chip", None, GRSN / "cartpole_v_lif_s0.pt")
    env.close()
