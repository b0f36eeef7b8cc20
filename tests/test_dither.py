"""Phase-dithered copies (`--dither K`): the same function, K T levels in T steps, deployed as converted."""
import numpy as np
import pytest
import torch

import lavaloop
from conftest import CARTPOLE, assert_clean_failure, lavaloop_cli, with_manifest
from lavaloop.conversion.dither import unit_phases, widen
from lavaloop.conversion.network import ConvLayer, DenseLayer
from lavaloop.conversion.quantize import start_potentials
from lavaloop.processes.dynamics import if_steps


def relu_net(layers, x):
    from lavaloop.conversion.quantize import forward

    for i, layer in enumerate(layers):
        x = forward(layer, layer.weight, layer.bias, x)
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


@pytest.mark.parametrize("copies", [2, 3])
def test_widening_keeps_the_function_of_dense_and_convolutional_networks(copies):
    rng = np.random.default_rng(copies)
    mlp = [DenseLayer("a", rng.normal(0, 1, (8, 4)), rng.normal(0, 0.1, 8)),
           DenseLayer("b", rng.normal(0, 1, (6, 8)), rng.normal(0, 0.1, 6)),
           DenseLayer("c", rng.normal(0, 1, (3, 6)), rng.normal(0, 0.1, 3))]
    conv = [ConvLayer("a", rng.normal(0, 1, (4, 2, 3, 3)), rng.normal(0, 0.1, 4), 2, (2, 9, 9)),
            ConvLayer("b", rng.normal(0, 1, (5, 4, 2, 2)), rng.normal(0, 0.1, 5), 1, (4, 4, 4)),
            DenseLayer("c", rng.normal(0, 1, (3, 45)), rng.normal(0, 0.1, 3))]
    for layers, n_in in ((mlp, 4), (conv, 162)):
        wide = widen(layers, copies)
        x = rng.normal(0, 1, (50, n_in))
        np.testing.assert_allclose(relu_net(wide, x), relu_net(layers, x), rtol=1e-12, atol=1e-12)
        assert wide[0].weight.shape[0] == copies * layers[0].weight.shape[0]
        assert wide[-1].weight.shape[0] == layers[-1].weight.shape[0]
    assert [len(v) for v in unit_phases(widen(conv, copies), copies)] == [copies * 64, copies * 45]


@pytest.mark.parametrize("copies, v_init", [(2, "half"), (4, "half"), (3, "zero")])
def test_dithered_copies_in_t_steps_spike_as_one_neuron_in_k_t(copies, v_init):
    """Hermite's identity in the deployed fixed-point IF arithmetic (`dynamics.if_steps`): K
    copies started at their `start_potentials` emit, under any held current up to one spike per step,
    exactly the spikes one neuron emits in K T steps (thresholds divisible by 2 K, so that the
    phases are whole state units)."""
    rng = np.random.default_rng(copies)
    t, n = 16, 300
    vth = 2 * copies * rng.integers(20, 2000, n)
    current = rng.integers(0, vth + 1)
    start = start_potentials(np.tile(vth, copies), copies, v_init)
    dithered = if_steps(start.copy(), np.tile(current, copies), np.tile(vth, copies), 24, steps=t).sum(0)
    single = if_steps(start_potentials(vth, 1, v_init), current, vth, 24, steps=copies * t)
    assert np.array_equal(dithered.reshape(copies, n).sum(0), single.sum(0))
    assert len(np.unique(single.sum(0))) > t     # finer than T levels


@pytest.fixture(scope="module")
def dithered():
    return lavaloop.convert(CARTPOLE, "CartPole-v1", calib_steps=1000, timesteps=16, dither=2)


def test_a_dithered_conversion_deploys_its_copies(dithered, tmp_path):
    """--dither 2: twice the hidden neurons, the copies half a threshold apart, the manifest and
    `lavaloop info` say so, the file round-trips, and the spike model of distillation decides
    as the emulator does."""
    from lavaloop.conversion.distill import chip_forward
    from lavaloop.deploy.emulator import FixedPointNetwork
    from lavaloop.processes.dynamics import encode_input

    art = dithered
    assert [q.weight.shape for q in art.layers] == [(512, 4), (512, 512), (2, 512)]
    for q in art.layers[:-1]:
        assert np.array_equal(q.v_init, np.floor(q.vth * np.repeat([0.25, 0.75], 256)).astype(np.int64))
    assert art.manifest["dither"] == 2 and "dither     2 copies" in "\n".join(art.describe())
    art.save(tmp_path / "d.h5")
    again = lavaloop.load_artifact(tmp_path / "d.h5")
    assert all(np.array_equal(a.v_init, b.v_init) for a, b in zip(art.layers, again.layers))
    x = np.random.default_rng(0).normal(0, [1.0, 0.5, 0.1, 0.5], (400, 4))
    payload = encode_input(x, 1 << art.manifest["input_scale_bits"], art.profile.input_bits)
    emulated = FixedPointNetwork(again, 16, "robust").decide(payload).argmax(1)
    params = [tuple(torch.as_tensor(a, dtype=torch.float32) for a in q.effective()) for q in art.layers]
    v0 = [q.v_init / q.vth for q in art.layers[:-1]]
    with torch.no_grad():
        modelled = chip_forward(art.layers, params, torch.as_tensor(x, dtype=torch.float32), 16, "spikes", v0)
    assert np.mean(modelled.numpy().argmax(1) == emulated) >= 0.97


def test_a_dithered_network_runs_on_lava_as_on_the_emulator(dithered):
    import multiprocessing

    from lavaloop.deploy.run import run
    from lavaloop.options import RunSettings

    art = with_manifest(dithered, env={**dithered.manifest["env"], "max_episode_steps": 40})
    settings = dict(episodes=2, timesteps=6, epsilon=0.1)
    lava = run(art, RunSettings(**settings, backend="lava"), progress=False)
    emu = run(art, RunSettings(**settings, backend="emulator"), progress=False)
    assert lava.decisions > 0 and lava.returns == emu.returns
    for a, b in zip(lava.log.actions, emu.log.actions):
        assert np.array_equal(a, b)
    assert lava.log.spikes == emu.log.spikes and lava.log.synops == emu.log.synops
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("args, needle", [
    (["--dither", "0"], "dither must be >= 1"),
    (["--dither", "2", "--coding", "sigma-delta"], "dither applies to rate coding only"),
    (["--dither", "2", "--profile", "dynapse2"], "dither do not apply to a mixed-signal profile"),
])
def test_bad_dither_fails_in_one_line(tmp_path, args, needle):
    proc = lavaloop_cli("convert", str(CARTPOLE), "--env", "CartPole-v1", "-o", str(tmp_path / "x.h5"),
                        "--calib-steps", "200", *args)
    assert_clean_failure(proc, str(tmp_path), needle)
