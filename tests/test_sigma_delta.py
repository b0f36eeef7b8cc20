"""The sigma-delta kind: graded-spike neurons, conversion, Lava == emulator, fidelity."""
import multiprocessing

import numpy as np
import pytest

from conftest import CARTPOLE, PONG, assert_clean_failure, lavaloop_cli, with_manifest
from lavaloop.deploy.run import run
from lavaloop.options import RunSettings
from lavaloop.processes.dynamics import sigma_delta_step


@pytest.fixture(scope="module")
def sd_cartpole(tmp_path_factory):
    import lavaloop

    art = lavaloop.convert(CARTPOLE, "CartPole-v1", coding="sigma-delta", calib_steps=1000)
    path = tmp_path_factory.mktemp("sd") / "cartpole_sd.h5"
    art.save(path)
    return path, art


def test_sigma_delta_neurons_send_changes_and_never_drift():
    """Messages shifted back plus the residue always equal the activation (no drift), a
    held input sends nothing more, and changes below the threshold wait in the residue."""
    rng = np.random.default_rng(0)
    n, shift, vth = 50, 6, 64 * 5
    sigma, act, res = (np.zeros(n, np.int64) for _ in range(3))
    bias = rng.integers(-3000, 3000, n)
    sent = np.zeros(n, np.int64)
    for _ in range(200):
        msg = sigma_delta_step(sigma, act, res, rng.integers(-2000, 2000, n), bias, vth, shift)
        sent += msg
        assert np.array_equal((sent << shift) + res, act)
        assert np.all(np.abs(res) < max(vth, 1 << shift))
    assert np.array_equal(act, np.maximum(sigma + bias, 0))
    held = sigma_delta_step(sigma, act, res, np.zeros(n, np.int64), bias, vth, shift)
    assert not held.any()


def test_conversion_report_and_round_trip(sd_cartpole):
    import lavaloop

    path, art = sd_cartpole
    back = lavaloop.load_artifact(path)
    assert back.kind == "sigma-delta" and back.window == len(art.layers) + 1
    for a, b in zip(art.layers, back.layers):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias) and a.vth == b.vth
        assert np.all(a.bias % (1 << a.msg_shift) == 0) and a.vth % (1 << a.msg_shift) == 0
    assert max(np.abs(l.weight).max() for l in art.layers) == 127
    assert 0.9 <= art.manifest["held_input_agreement"] <= 1.0


def test_emulator_is_bit_exact_with_lava(sd_cartpole):
    _, art = sd_cartpole
    short = with_manifest(art, env={**art.manifest["env"], "max_episode_steps": 40})
    settings = dict(episodes=3, epsilon=0.2)
    lava = run(short, RunSettings(**settings, backend="lava"), progress=False)
    emu = run(short, RunSettings(**settings, backend="emulator"), progress=False)
    assert lava.decisions == 120 and lava.returns == emu.returns
    for a, b in zip(lava.log.greedy + lava.log.actions, emu.log.greedy + emu.log.actions):
        assert np.array_equal(a, b)
    assert lava.log.spikes == emu.log.spikes and lava.log.synops == emu.log.synops
    assert lava.synops > 0 and lava.energy == emu.energy
    assert lava.agreement > 0.9
    assert not multiprocessing.active_children()


def test_conv_network_is_bit_exact_with_lava(tmp_path):
    """The Nature DQN as a sigma-delta network on Pong, a few decisions per episode."""
    import lavaloop

    art = lavaloop.convert(PONG, "ALE/Pong-v5", coding="sigma-delta", calib_steps=200, max_episode_steps=6)
    assert [l.is_conv for l in art.layers] == [True, True, True, False, False]
    settings = dict(episodes=2, epsilon=0.3)
    lava = run(art, RunSettings(**settings, backend="lava"), progress=False)
    emu = run(art, RunSettings(**settings, backend="emulator"), progress=False)
    for a, b in zip(lava.log.greedy, emu.log.greedy):
        assert np.array_equal(a, b)
    assert lava.log.spikes == emu.log.spikes and lava.log.synops == emu.log.synops


def test_an_unchanged_observation_costs_nothing(sd_cartpole):
    """Temporal sparsity: the second of two identical observations sends no message."""
    from lavaloop.deploy.sigma_delta import SigmaDeltaNetwork
    from lavaloop.processes.dynamics import encode_input

    _, art = sd_cartpole
    net = SigmaDeltaNetwork(art, 1)
    x = encode_input(np.array([[0.01, 0.2, -0.03, 0.1]]), 1 << art.manifest["input_scale_bits"], 16)
    first = net.decide(np.array([0]), x)
    before = net.synops.copy()
    second = net.decide(np.array([0]), x)
    assert np.array_equal(first, second) and np.array_equal(net.synops, before)


@pytest.mark.parametrize("args, needle", [
    (["--coding", "spikes"], "unknown coding 'spikes'"),
    (["--coding", "sigma-delta", "--timesteps", "8"], "timesteps apply to rate coding only"),
    (["--delta-threshold", "0.1"], "apply to sigma-delta coding only"),
    (["--no-equalize"], "apply to sigma-delta coding only"),
    (["--no-centre-readout"], "apply to sigma-delta coding only"),
    (["--weight-split-bits", "4"], "apply to sigma-delta coding only"),
    (["--coding", "sigma-delta", "--weight-split-bits", "8"], "weight_split_bits must be in [0, 7]"),
    (["--coding", "sigma-delta", "--profile", "NARROW"], "cannot carry"),
])
def test_bad_sigma_delta_options_fail_in_one_line(tmp_path, args, needle):
    import json

    from lavaloop.profiles import PROFILES

    narrow = tmp_path / "narrow.json"
    narrow.write_text(json.dumps({**PROFILES["loihi2"].to_dict(), "name": "narrow", "message_bits": 8}))
    args = [str(narrow) if a == "NARROW" else a for a in args]
    proc = lavaloop_cli("convert", str(CARTPOLE), "--env", "CartPole-v1", "-o", str(tmp_path / "x.h5"),
                        "--calib-steps", "200", *args)
    assert_clean_failure(proc, str(tmp_path), needle)


def test_equalization_keeps_the_function_and_lifts_the_8_bit_network():
    """Cross-layer equalization rescales hidden channels only: the float network computes the
    same outputs, every hidden layer still peaks at 1 on calibration data, and the SB3 CartPole
    DQN's 8-bit sigma-delta network (about 0.81 of calibration decisions without it) gains."""
    import lavaloop
    from lavaloop.conversion.loaders import load_checkpoint
    from lavaloop.conversion.normalize import channel_peaks, collect_observations, equalize, layer_scales, normalize
    from lavaloop.conversion.quantize import forward
    from lavaloop.envs import EnvSpec

    sb3 = CARTPOLE.parent / "cartpole_sb3.zip"
    net = load_checkpoint(sb3)
    q = net.to_torch()
    obs = collect_observations(q, EnvSpec.for_id("CartPole-v1", None, None), 1000, 0, 0.05)
    scales = layer_scales(q, obs, 100.0)
    eq = equalize(net.layers, scales, [p / s for p, s in zip(channel_peaks(q, obs, net.layers), scales[:-1])])
    x = y = obs.astype(np.float64)
    for i, (a, b) in enumerate(zip(normalize(net.layers, scales), normalize(net.layers, eq))):
        x, y = forward(a, a.weight, a.bias, x), forward(b, b.weight, b.bias, y)
        if i < len(net.layers) - 1:
            x, y = np.maximum(x, 0), np.maximum(y, 0)
            assert np.isclose(y.max(), 1.0) and not np.allclose(x, y)
    np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-6)   # float32 weights
    arts = {flag: lavaloop.convert(sb3, "CartPole-v1", coding="sigma-delta", calib_steps=1000, equalize=flag)
            for flag in (False, True)}
    ceiling = {flag: art.manifest["held_input_agreement"] for flag, art in arts.items()}
    assert ceiling[False] < 0.9 < ceiling[True], ceiling
    n = arts[True].manifest["normalization"]    # the sweeps kept: the best calibration agreement
    assert n["equalization_ceilings"][0] == ceiling[False] and ceiling[True] == max(n["equalization_ceilings"])
    assert n["equalization_ceilings"][n["equalization_sweeps"]] == ceiling[True] and n["mode"] == "equalized"


def test_centred_readout_keeps_decisions_and_is_kept_where_it_agrees_more():
    """The readout less its mean over actions decides as the source; the conversion tries it
    beside the Q-value readout and keeps it where it gains CENTRE_MARGIN of the calibration
    decisions (the Acrobot DQN's three actions share a large value, and centring lifts it),
    storing the source it used."""
    import lavaloop
    from lavaloop.conversion.convert import CENTRE_MARGIN
    from lavaloop.conversion.loaders import load_checkpoint
    from lavaloop.conversion.models.qnet import FeedForwardQ
    from lavaloop.conversion.normalize import centre_readout, collect_observations
    from lavaloop.deploy.kinds.dqn import source_network
    from lavaloop.envs import EnvSpec

    acrobot = CARTPOLE.parent / "acrobot_dqn.pt"
    net = load_checkpoint(acrobot)
    obs = collect_observations(net.to_torch(), EnvSpec.for_id("Acrobot-v1", None, None), 500, 0, 0.05)
    centred = centre_readout(net.layers)
    np.testing.assert_allclose(centred[-1].weight.mean(0), 0, atol=1e-6)
    np.testing.assert_array_equal(FeedForwardQ.from_layers(centred).q_values(obs).argmax(1),
                                  net.to_torch().q_values(obs).argmax(1))

    arts = {flag: lavaloop.convert(acrobot, "Acrobot-v1", coding="sigma-delta", calib_steps=2000,
                                   centre_readout=flag) for flag in (True, False)}
    both, plain = (arts[f].manifest["normalization"] for f in (True, False))
    assert set(both["readout_ceilings"]) == {"q_values", "centred"} and set(plain["readout_ceilings"]) == {"q_values"}
    assert both["readout_ceilings"]["q_values"] == plain["readout_ceilings"]["q_values"] == \
        arts[False].manifest["held_input_agreement"]
    assert both["readout_centred"] and not plain["readout_centred"]
    assert both["readout_ceilings"]["centred"] == arts[True].manifest["held_input_agreement"] >= \
        both["readout_ceilings"]["q_values"] + CENTRE_MARGIN
    np.testing.assert_array_equal(source_network(arts[True]).q_values(obs).argmax(1),
                                  net.to_torch().q_values(obs).argmax(1))
    assert "readout    centred (advantages)" in "\n".join(arts[True].describe())


def test_distillation_through_the_sigma_delta_rule_lifts_agreement():
    """The SB3 CartPole DQN agrees on ~0.81 of held-out decisions as an 8-bit sigma-delta
    network (not equalized); a short distillation through the same quantization rule lifts it."""
    import lavaloop

    art = lavaloop.convert(CARTPOLE.parent / "cartpole_sb3.zip", "CartPole-v1", coding="sigma-delta",
                           calib_steps=2000, distill=True, distill_steps=800, equalize=False)
    d = art.manifest["distillation"]
    assert d["config"]["model"] == "sigma-delta"
    assert d["heldout_agreement_after"] > d["heldout_agreement_before"] + 0.05


def test_split_weights_are_exact_on_lava_and_cost_both_synapses(tmp_path):
    """Two synapses per connection (`weight_split_bits` 4): wider weights where the 24-bit
    states leave room, states within 24 bits on the source's episodes, Lava == emulator bit
    for bit, each connection's synaptic operations counted per nonzero synapse, the split
    kept through a save and load, and refused by the netx export."""
    import lavaloop
    from lavaloop.deploy.adapt.readout import Readout
    from lavaloop.deploy.export import export
    from lavaloop.errors import LavaloopError
    from lavaloop.processes.dynamics import Synapse

    acrobot = CARTPOLE.parent / "acrobot_dqn.pt"
    plain = lavaloop.convert(acrobot, "Acrobot-v1", coding="sigma-delta", calib_steps=1000)
    art = lavaloop.convert(acrobot, "Acrobot-v1", coding="sigma-delta", calib_steps=1000, weight_split_bits=4)
    from lavaloop.conversion.loaders import load_checkpoint
    from lavaloop.conversion.normalize import collect_observations
    from lavaloop.deploy.sigma_delta import SigmaDeltaNetwork
    from lavaloop.processes.dynamics import encode_input

    split = [q.split_bits for q in art.layers]
    assert min(split) >= 1 and [np.abs(q.weight).max() for q in art.layers] == [(1 << 7 + k) - 1 for k in split]
    assert art.manifest["held_input_agreement"] > plain.manifest["held_input_agreement"]
    obs = collect_observations(load_checkpoint(acrobot).to_torch(), art.env_spec, 300, 7, 0.05)
    net = SigmaDeltaNetwork(art, 1)
    for x in obs:
        net.decide(np.array([0]), encode_input(x[None], 1 << art.manifest["input_scale_bits"], 16))
        assert max(np.abs(s).max() for s in net.sigma + net.act) < 1 << 23
    for q, params in zip(art.layers, art.layer_params()):
        w, k = q.weight.astype(np.int64), q.split_bits
        hi = np.sign(w) * (np.abs(w) >> k)
        assert np.abs(hi).max() <= 127 and np.abs(w - (hi << k)).max() < 1 << k
        both = (hi != 0).sum(axis=0) + (w - (hi << k) != 0).sum(axis=0)
        assert np.array_equal(Synapse.from_params(params).fanout, both)
    short = with_manifest(art, env={**art.manifest["env"], "max_episode_steps": 30})
    lava = run(short, RunSettings(episodes=2, epsilon=0.2, backend="lava"), progress=False)
    emu = run(short, RunSettings(episodes=2, epsilon=0.2, backend="emulator"), progress=False)
    for a, b in zip(lava.log.greedy + lava.log.actions, emu.log.greedy + emu.log.actions):
        assert np.array_equal(a, b)
    assert lava.log.synops == emu.log.synops and lava.synops > 0
    art.save(tmp_path / "split.h5")
    assert [q.split_bits for q in lavaloop.load_artifact(tmp_path / "split.h5").layers] == split
    with pytest.raises(LavaloopError, match="two: convert without --weight-split-bits"):
        export(art, tmp_path / "split.net", "netx")
    tuned = lavaloop.convert(acrobot, "Acrobot-v1", coding="sigma-delta", calib_steps=1000, weight_split_bits=4,
                             distill=True, distill_steps=2, distill_dagger_rounds=0)
    assert all(0 <= t <= s for t, s in zip([q.split_bits for q in tuned.layers], split))   # k never rises
    readout = Readout.of(art)      # a host training the readout keeps its width
    m, _ = readout.quantize(*art.layers[-1].effective())
    assert readout.weight_bits == 8 + split[-1] and np.array_equal(m, art.layers[-1].weight)
