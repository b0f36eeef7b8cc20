"""Conversion-aware distillation: the trained model is the deployed arithmetic, and it helps."""
import numpy as np
import torch

import lavaloop
from lavaloop.conversion.distill import ChipForward
from lavaloop.conversion.network import DenseLayer
from lavaloop.conversion.quantize import quantize, rate_limit
from lavaloop.profiles import PROFILES


def random_layers(seed=0):
    rng = np.random.default_rng(seed)
    return [DenseLayer("a", rng.normal(0, 0.5, (16, 4)), rng.normal(0, 0.1, 16)),
            DenseLayer("b", rng.normal(0, 0.3, (16, 16)), rng.normal(0, 0.1, 16)),
            DenseLayer("c", rng.normal(0, 0.3, (3, 16)), rng.normal(0, 0.1, 3))]


def test_the_trained_model_computes_what_the_chip_will():
    """ChipForward's weights are quantize_layer's, and its forward pass is the T-step staircase
    model (rate_limit(timesteps=T)) of quantize(..., bias_correction=False) of its own layers."""
    layers, prof, t = random_layers(), PROFILES["loihi2"], 16
    model = ChipForward(layers, prof, [True, True, False], t, model="staircase")
    q = quantize(model.float_layers(), prof, np.zeros((1, 4)), bias_correction=False)
    for i, ql in enumerate(q):
        w, b = model.quantized(i)
        w_eff, b_eff = ql.effective()
        np.testing.assert_allclose(w.detach().numpy(), w_eff, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(b.detach().numpy(), b_eff, rtol=1e-5, atol=1e-7)
    x = np.random.default_rng(1).normal(0, 1, (500, 4))
    chip = rate_limit(q, x, t)
    np.testing.assert_allclose(model.q_values(x), chip, atol=1e-4)
    # gradients pass the rounding (straight-through)
    out = model(torch.as_tensor(x[:8], dtype=torch.float32)).sum()
    out.backward()
    assert all(float(w.grad.abs().sum()) > 0 for w in model.weights)


def test_the_spike_model_decides_as_the_emulator(cartpole_artifact):
    """chip_forward("spikes") simulates the IF spike trains in threshold units; the emulator's
    integer arithmetic (rounded thresholds, half-threshold start, input payload) picks the
    same action on nearly every observation."""
    from lavaloop.conversion.distill import chip_forward
    from lavaloop.deploy.emulator import FixedPointNetwork
    from lavaloop.processes.dynamics import encode_input

    _, art = cartpole_artifact
    x = np.random.default_rng(0).normal(0, [1.0, 0.5, 0.1, 0.5], (400, 4))
    t = 16
    payload = encode_input(x, 1 << art.manifest["input_scale_bits"], art.profile.input_bits)
    emulated = FixedPointNetwork(art, t, "robust").decide(payload).argmax(1)
    params = [tuple(torch.as_tensor(a, dtype=torch.float32) for a in q.effective()) for q in art.layers]
    with torch.no_grad():
        modelled = chip_forward(art.layers, params, torch.as_tensor(x, dtype=torch.float32), t, "spikes")
    assert np.mean(modelled.numpy().argmax(1) == emulated) >= 0.97


def test_distilled_conversion_agrees_more_and_is_reproducible(cartpole_checkpoint):
    opts = dict(calib_steps=1000, timesteps=16, distill=True, distill_steps=400)
    art = lavaloop.convert(cartpole_checkpoint, "CartPole-v1", **opts)
    d = art.manifest["distillation"]
    assert d["observations"] == 1000 + 2 * 2000 and d["steps"] == 400
    assert d["heldout_agreement_after"] > d["heldout_agreement_before"] + 0.03
    # rate coding fits both objectives and keeps the one that decides better on its own episodes
    tried = d["objectives"]
    assert set(tried) == {"q", "advantage"}
    assert d["objective"] == max(tried, key=lambda name: tried[name]["own_agreement_after"])
    assert d["own_agreement_after"] == tried[d["objective"]]["own_agreement_after"]
    assert f"{d['objective']} objective" in "\n".join(art.describe())
    again = lavaloop.convert(cartpole_checkpoint, "CartPole-v1", **opts)
    for a, b in zip(art.layers, again.layers):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    plain = lavaloop.convert(cartpole_checkpoint, "CartPole-v1", calib_steps=1000, timesteps=16)
    assert plain.manifest["distillation"] is None


def test_advantage_training_hands_the_rate_readout_back_in_its_own_units():
    """The advantage objective trains the output layer in units of the advantages' RMS; the rate
    model's integer readout is built for Q / lambda, so the layer comes back in those units
    (an untouched layer: unchanged; left at advantage scale it decided on 0.20 in closed loop)."""
    from lavaloop.conversion.distill import DistillConfig, distill
    from lavaloop.conversion.models.qnet import FeedForwardQ

    layers = random_layers()
    x = np.random.default_rng(4).normal(0, 1, (256, 4))
    cfg = DistillConfig(target="advantage", steps=1, lr=1e-12, dagger_rounds=0, model="staircase")
    tuned, _ = distill(FeedForwardQ.from_layers(layers), layers, PROFILES["loihi2"], [True, True, False], x, None,
                       16, 2.0, 0.0, cfg, progress=False)
    np.testing.assert_allclose(tuned[-1].weight, layers[-1].weight, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(tuned[-1].bias, layers[-1].bias, rtol=1e-4, atol=1e-7)


def test_convolutional_layers_run_through_both_models():
    """A conv + dense network, as QuantizedLayers (what the held-out report passes): the
    staircase model equals rate_limit(timesteps=T), and the spike model runs."""
    from lavaloop.conversion.distill import chip_forward
    from lavaloop.conversion.network import ConvLayer

    rng = np.random.default_rng(2)
    layers = [ConvLayer("c", rng.normal(0, 0.3, (4, 2, 3, 3)), rng.normal(0, 0.1, 4), 1, (2, 6, 6)),
              DenseLayer("d", rng.normal(0, 0.2, (3, 64)), rng.normal(0, 0.1, 3))]
    x = rng.normal(0, 1, (50, 72))
    q = quantize(layers, PROFILES["loihi2"], x)
    params = [tuple(torch.as_tensor(a, dtype=torch.float32) for a in ql.effective()) for ql in q]
    with torch.no_grad():
        stair = chip_forward(q, params, torch.as_tensor(x, dtype=torch.float32), 8, "staircase").numpy()
        spikes = chip_forward(q, params, torch.as_tensor(x, dtype=torch.float32), 8, "spikes").numpy()
    np.testing.assert_allclose(stair, rate_limit(q, x, 8), atol=1e-4)
    assert spikes.shape == (50, 3) and np.mean(spikes.argmax(1) == stair.argmax(1)) > 0.5


def test_a_distillation_that_ends_worse_keeps_the_converted_network(cartpole_checkpoint, monkeypatch):
    """If training leaves the network deciding worse on the held-out episodes, the artifact
    is the converted one and the report says so."""
    from dataclasses import replace

    import lavaloop.conversion.convert as convert

    def spoiled(source, layers, *args, **kwargs):      # a "training" that zeroes the output layer
        return [*layers[:-1], replace(layers[-1], weight=0 * layers[-1].weight, bias=0 * layers[-1].bias)], {}

    monkeypatch.setattr(convert, "distill", spoiled)
    opts = dict(calib_steps=500, coding="sigma-delta")
    art = lavaloop.convert(cartpole_checkpoint, "CartPole-v1", distill=True, distill_steps=1, **opts)
    plain = lavaloop.convert(cartpole_checkpoint, "CartPole-v1", **opts)
    d = art.manifest["distillation"]
    assert d["kept"] == "converted" and d["own_agreement_after"] < d["own_agreement_before"]
    for a, b in zip(art.layers, plain.layers):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)


def test_the_dagger_share_is_a_conversion_option(cartpole_checkpoint):
    """`distill_dagger_rounds` x `distill_dagger_steps` observations of the network's own
    episodes join the calibration observations (0 rounds: none)."""
    opts = dict(calib_steps=400, coding="sigma-delta", distill=True, distill_steps=4)
    for rounds, steps in ((3, 150), (0, 2000)):
        art = lavaloop.convert(cartpole_checkpoint, "CartPole-v1", distill_dagger_rounds=rounds,
                               distill_dagger_steps=steps, **opts)
        d = art.manifest["distillation"]
        assert d["dagger_rounds"] == rounds and d["observations"] == 400 + rounds * steps


def test_dagger_rounds_never_play_the_heldout_episodes():
    """Round r plays from seed + 10,000 r, skipping the held-out block at seed + 100,000."""
    from lavaloop.conversion.distill import HELDOUT_SEED_OFFSET, dagger_seed

    seeds = [dagger_seed(5, r) for r in range(1, 30)]
    assert seeds[:9] == [5 + 10_000 * r for r in range(1, 10)] and len(set(seeds)) == len(seeds)
    assert all(abs(s - (5 + HELDOUT_SEED_OFFSET)) >= 10_000 for s in seeds)


def test_every_tensor_steps_in_proportion_to_its_own_size():
    """Weights and biases of different scales (the Nature DQN's first layer: weights ~1e-3,
    biases ~0.2) each move by a similar fraction of their size: a layer-wide rate set by the
    biases would move those weights by ~2 % of their size per Adam step."""
    from lavaloop.conversion.distill import step_groups

    rng = np.random.default_rng(3)
    layers = [DenseLayer("a", rng.normal(0, 1e-3, (16, 4)), rng.normal(0, 0.2, 16)),
              DenseLayer("b", rng.normal(0, 0.3, (3, 16)), np.zeros(3))]
    model = ChipForward(layers, PROFILES["loihi2"], [True, False], 16, model="staircase")
    groups = step_groups(model.weights, model.biases, 1e-4)
    assert [g["params"][0] is p for g, p in zip(groups, [model.weights[0], model.biases[0],
                                                         model.weights[1], model.biases[1]])] == [True] * 4
    assert groups[1]["lr"] > 100 * groups[0]["lr"]      # biases far larger than the weights: their own rate
    assert groups[3]["lr"] == groups[2]["lr"]           # smaller biases (here zero): the weights' rate
    before = [p.detach().clone() for p in (model.weights[0], model.biases[0])]
    opt = torch.optim.Adam(groups)
    x = torch.as_tensor(rng.normal(0, 100, (64, 4)), dtype=torch.float32)   # raw-pixel-sized inputs
    for _ in range(20):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    for p, p0 in zip((model.weights[0], model.biases[0]), before):
        moved = float((p.detach() - p0).abs().max() / p0.abs().max())
        assert 1e-4 < moved < 5e-3
