"""DQNs mapped onto mixed-signal chips: the mapping keeps the chip's limits, chip instances are
frozen per seed, Lava == emulator per instance, the training model is the chip, bad input."""
import json
import multiprocessing

import numpy as np
import pytest

from conftest import CARTPOLE, PONG, assert_clean_failure, lavaloop_cli, with_manifest
from lavaloop.deploy.run import run
from lavaloop.options import RunSettings
from lavaloop.processes.dynamics import generator_increments, regular_spikes


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    import lavaloop

    arts = {mode: lavaloop.convert(CARTPOLE, "CartPole-v1", profile="dynapse2", calib_steps=1000, timesteps=32,
                                   fan_in=mode) for mode in ("split", "prune")}
    path = tmp_path_factory.mktemp("ms") / "cartpole_dynapse2.h5"
    arts["split"].save(path)
    return path, arts


def test_the_mapping_keeps_the_chips_limits(mapped):
    """4-bit codes, at most 64 synapses per neuron (bias generator included), 256 neurons per
    core; the 256-input layer is split into partial sums and relays, or pruned."""
    import lavaloop

    path, arts = mapped
    for art in arts.values():
        prof = art.profile
        for layer in art.mapped.layers:
            assert np.abs(layer.code).max() < prof.weight_levels
            assert layer.synapses(prof.repeated_synapses).max() <= prof.fan_in
            assert np.bincount(layer.core).max() <= prof.neurons_per_core
        report = art.manifest["mapping"]
        assert [e["inputs_needed"] for e in report["fan_in"]["layers"]] == [9, 257]
    split, prune = arts["split"].mapped, arts["prune"].mapped
    assert [l.role for l in split.layers] == ["hidden", "partial", "relay"]
    assert [l.size for l in split.layers] == [256, 2 * 5 * 256, 256]       # 256 inputs in 5 groups of <= 63
    assert [l.size for l in prune.layers] == [256, 256]
    assert 0 < arts["prune"].manifest["mapping"]["fan_in"]["layers"][1]["pruned_weight_fraction"] < 1
    loaded = lavaloop.load_artifact(path)
    assert all(np.array_equal(a.code, b.code) and np.array_equal(a.currents, b.currents)
               for a, b in zip(loaded.mapped.layers, split.layers))
    assert any("partial" in line for line in loaded.describe())


def test_the_spike_rate_sets_the_hidden_counts(mapped):
    """A hidden activation a fires about a * rate * T spikes: the mapping records the rate it was
    built for, and a lower rate gives sparser counts (the training model reads the recorded rate)."""
    import lavaloop
    from lavaloop.conversion.mismatch_training import ChipModel, generator_trains
    from lavaloop.conversion.mixed_signal import RATE
    from lavaloop.conversion.models.qnet import FeedForwardQ
    from lavaloop.conversion.normalize import collect_observations
    from lavaloop.envs import EnvSpec

    _, arts = mapped
    slow = lavaloop.convert(CARTPOLE, "CartPole-v1", profile="dynapse2", calib_steps=1000, timesteps=32,
                            fan_in="prune", spike_rate=RATE / 2)
    assert arts["prune"].manifest["mapping"]["rate"] == RATE and slow.manifest["mapping"]["rate"] == RATE / 2
    source = FeedForwardQ.from_layers(slow.source)
    x = collect_observations(source, EnvSpec.for_id("CartPole-v1"), 200, 5, 0.0)
    counts = {}
    for name, art in (("default", arts["prune"]), ("slow", slow)):
        model = ChipModel(art)
        assert model.rate == art.manifest["mapping"]["rate"]
        counts[name] = float(model.features(generator_trains(art, x)).mean()) * model.rate * 32
    assert counts["slow"] < 0.75 * counts["default"], counts


def test_generators_fire_at_the_rate_of_their_input():
    """ON/OFF generators: rint(payload * gain) / one spikes per step for the positive and the
    negative part; the bias generator every step."""
    one, steps = 1 << 16, 64
    payload = np.array([[1000, -500, 0]])
    inc = generator_increments(payload, np.array([16.0, 64.0, 1.0]), one)
    phase, count = np.full(inc.shape, one // 2, np.int64), 0
    for _ in range(steps):
        phase, s = regular_spikes(phase, inc, one)
        count = count + s
    rate = np.array([[16000, 0, 0, 0, 32000, 0, one]]) / one
    assert np.all(np.abs(count - rate * steps) <= 1) and count[0, -1] == steps


def test_chip_instances_are_frozen_per_seed(mapped):
    _, arts = mapped
    art = arts["prune"]
    a, b, c = art.instance(3, 0.2), art.instance(3, 0.2), art.instance(4, 0.2)
    nominal, zero = art.instance(None), art.instance(3, 0.0)
    for x, y, z, n, o in zip(a, b, c, nominal, zero):
        assert np.array_equal(x["conn"], y["conn"]) and np.array_equal(x["vth"], y["vth"])
        assert not np.array_equal(x["vth"], z["vth"])
        assert np.array_equal(n["conn"], o["conn"]) and np.all(n["vth"] == 1.0)
        assert 0.15 < np.std(x["vth"]) < 0.25          # 1 + N(0, 0.2)
        assert np.all(x["conn"][n["conn"] == 0] == 0)  # mismatch scales currents, never adds synapses


def test_emulator_is_bit_exact_with_lava_per_chip_instance(mapped):
    path, arts = mapped
    art = with_manifest(arts["split"], env={**arts["split"].manifest["env"], "max_episode_steps": 12})
    runs = {}
    for chip in (None, 5):
        settings = dict(episodes=2, epsilon=0.2, mismatch_seed=chip, mismatch_sigma=0.2 if chip else None)
        lava = run(art, RunSettings(**settings, backend="lava"), progress=False)
        emu = run(art, RunSettings(**settings, backend="emulator"), progress=False)
        assert lava.decisions == emu.decisions > 12 and lava.returns == emu.returns
        for x, y in zip(lava.log.greedy + lava.log.actions, emu.log.greedy + emu.log.actions):
            assert np.array_equal(x, y)
        assert lava.log.spikes == emu.log.spikes and lava.log.synops == emu.log.synops
        assert lava.details["mismatch_seed"] == chip
        runs[chip] = emu
    assert runs[None].log.spikes != runs[5].log.spikes       # another chip, other spikes
    assert not multiprocessing.active_children()


def test_the_training_model_is_the_chip(mapped):
    """conversion.mismatch_training's forward pass gives the emulator's decisions on every instance."""
    from lavaloop.conversion.mismatch_training import ChipModel
    from lavaloop.deploy.mixed_signal import MixedSignalNetwork
    from lavaloop.processes.dynamics import encode_input

    _, arts = mapped
    art = arts["prune"]
    x = np.random.default_rng(0).normal(size=(64, 4)) * np.array([0.5, 0.5, 0.05, 0.5])
    model = ChipModel(art)
    for chip in (None, 7):
        model.sample(chip, 0.1)
        net = MixedSignalNetwork(art, art.instance(chip, 0.1))
        emu = net.decide(encode_input(x, 1 << art.manifest["input_scale_bits"], 16))
        assert np.array_equal(model.q_values(x).argmax(1), emu.argmax(1))


def test_the_chip_weights_learn_through_the_surrogate_gradient(mapped):
    """With the readout frozen, a few steps on the chip layers' weights alone (BPTT through the
    LIF recurrence, 0.12 weight level per step) lower the distillation loss of a minibatch."""
    import torch

    from lavaloop.conversion.distill import DistillConfig, distill_step
    from lavaloop.conversion.loaders import load_checkpoint
    from lavaloop.conversion.mismatch_training import CONFIG, ChipModel, advantages, chip_optimizer, generator_trains

    art = mapped[1]["prune"]
    x = np.random.default_rng(0).normal(size=(64, 4)) * np.array([0.5, 0.5, 0.05, 0.5])
    target = torch.as_tensor(advantages(load_checkpoint(CARTPOLE).to_torch(), x)[0], dtype=torch.float32)
    torch.manual_seed(0)
    model = ChipModel(art)
    opt = chip_optimizer(model, readout_lr=0.0, level_step=0.12)
    cfg, trains = DistillConfig(model="spikes", **CONFIG), generator_trains(art, x)
    losses = []
    for _ in range(12):
        loss = distill_step(model, opt, trains, target, target.argmax(1), cfg, advantage=True)
        losses.append(loss["mse"] + cfg.ce_weight * loss["cross_entropy"])
    assert losses[-1] < 0.7 * losses[0], losses
    assert model.weights[0].grad.abs().sum() > 0      # through layer 2's input spikes into layer 1


def test_per_chip_readout_training_fits_the_readout_refitted_per_instance(mapped):
    """Readout "per-chip": on each sampled instance the readout is the ridge fit of the first
    PER_CHIP_BATCH[0] observations' features, differentiable, scored on the rest. On two fixed
    instances, 16 such steps lower that scored loss well below where as many steps with one
    shared readout leave it (measured: 0.084 -> 0.032 against 0.065); the gradient reaches both
    chip layers through the fit, and the host readout's own parameters are left to the final fit."""
    import torch

    from lavaloop.conversion.distill import DistillConfig, distill_loss, distill_step
    from lavaloop.conversion.loaders import load_checkpoint
    from lavaloop.conversion.mismatch_training import (
                                                        CONFIG,
                                                        PER_CHIP_BATCH,
                                                        ChipModel,
                                                        advantages,
                                                        chip_optimizer,
                                                        generator_trains,
                                                        per_chip_step,
    )
    from lavaloop.conversion.readout_fit import ridge_readout

    art = mapped[1]["prune"]
    fit = PER_CHIP_BATCH[0]
    x = np.random.default_rng(0).normal(size=(fit + 96, 4)) * np.array([0.5, 0.5, 0.05, 0.5])
    target = torch.as_tensor(advantages(load_checkpoint(CARTPOLE).to_torch(), x)[0], dtype=torch.float32)
    greedy = target.argmax(1)
    cfg, trains = DistillConfig(model="spikes", **CONFIG), generator_trains(art, x)

    def scored(model: ChipModel) -> float:
        losses = []
        for seed in (7, 8):
            model.sample(seed, 0.1)
            with torch.no_grad():
                feats = model.features(trains)
                w, b = ridge_readout(feats[:fit], target[:fit])
                losses.append(float(distill_loss(feats[fit:] @ w.T + b, target[fit:], greedy[fit:], cfg, True)[0]))
        return float(np.mean(losses))

    after = {}
    for per_chip in (True, False):
        torch.manual_seed(0)
        model = ChipModel(art)
        before, readout = scored(model), model.readout_w.detach().clone()
        opt = chip_optimizer(model, readout_lr=1e-3, level_step=0.12)
        for step in range(16):
            model.sample(7 + step % 2, 0.1)
            if per_chip:
                per_chip_step(model.features, opt, trains, target, greedy, cfg)
            else:
                distill_step(model, opt, trains, target, greedy, cfg, advantage=True)
        after[per_chip] = scored(model)
        if per_chip:
            assert all(w.grad.abs().sum() > 0 for w in model.weights)
            assert torch.equal(model.readout_w.detach(), readout)
    assert after[True] < 0.5 * before and after[True] < 0.75 * after[False], (before, after)


def test_copies_decide_as_one_on_the_nominal_chip_and_differ_on_an_instance(mapped, tmp_path):
    """conversion.mixed_signal.replicate: N copies on their own cores, each reading its own copy
    of the layer below, count exactly as one copy on the nominal chip (the readout averages
    them: same decisions); on an instance the copies' mismatch differs, and so do their counts.
    The copies run on Lava bit for bit as on the emulator."""
    import lavaloop
    from lavaloop.deploy.mixed_signal import MixedSignalNetwork
    from lavaloop.processes.dynamics import encode_input

    _, arts = mapped
    art = arts["prune"]
    copies = art.replicated(3)
    mapped3 = copies.mapped
    r, r3 = art.manifest["mapping"], mapped3.report
    assert (r3["neurons"], r3["cores"], r3["synapses"], r3["replicas"]) == (3 * r["neurons"], 3 * r["cores"],
                                                                             3 * r["synapses"], 3)
    assert max(int(l.synapses(False).max()) for l in mapped3.layers) <= art.profile.fan_in
    x = np.random.default_rng(1).normal(size=(64, 4)) * np.array([0.5, 0.5, 0.05, 0.5])
    payload = encode_input(x, 1 << art.manifest["input_scale_bits"], 16)
    one, three = MixedSignalNetwork(art, art.instance()), MixedSignalNetwork(copies, copies.instance())
    assert np.array_equal(three.counts(payload), np.tile(one.counts(payload), 3))
    assert np.array_equal(three.decide(payload).argmax(1), one.decide(payload).argmax(1))
    n = art.mapped.layers[-1].size
    chip = MixedSignalNetwork(copies, copies.instance(4, 0.1)).counts(payload)
    assert not np.array_equal(chip[:, :n], chip[:, n:2 * n])
    converted = lavaloop.convert(CARTPOLE, "CartPole-v1", profile="dynapse2", calib_steps=1000, timesteps=32,
                                 fan_in="prune", replicas=3)   # the conversion option makes the same copies
    assert all(np.array_equal(a.code, b.code) for a, b in zip(converted.mapped.layers, mapped3.layers))
    path = tmp_path / "copies.h5"
    copies.save(path)
    loaded = lavaloop.load_artifact(path)
    assert loaded.manifest["mapping"]["replicas"] == 3 and "3 copies" in loaded.describe()[0]
    short = with_manifest(loaded, env={**loaded.manifest["env"], "max_episode_steps": 8})
    settings = dict(episodes=1, epsilon=0.2, mismatch_seed=4, mismatch_sigma=0.1)
    lava = run(short, RunSettings(**settings, backend="lava"), progress=False)
    emu = run(short, RunSettings(**settings, backend="emulator"), progress=False)
    assert lava.decisions == emu.decisions == 8 and lava.log.spikes == emu.log.spikes
    for a, b in zip(lava.log.greedy + lava.log.actions, emu.log.greedy + emu.log.actions):
        assert np.array_equal(a, b)
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("convert_args, run_args, needle", [
    (["--profile", "dynapse2", "--readout", "spike_count"], None, "readout do not apply to a mixed-signal profile"),
    (["--fan-in", "prune"], None, "apply to mixed-signal profiles"),
    (["--spike-rate", "0.3"], None, "apply to mixed-signal profiles"),
    (["--replicas", "2"], None, "apply to mixed-signal profiles"),
    (["--profile", "dynapse2", "--replicas", "0"], None, "replicas must be >= 1"),
    (["--distill", "--distill-readout", "per-chip"], None, "apply to mixed-signal profiles"),
    (["--profile", "dynapse2", "--distill-readout", "per-chip"], None, "distill_readout applies only with distill"),
    (["--profile", "dynapse2", "--spike-rate", "0.8"], None, "cannot fire 0.8 spikes per step"),
    (["--profile", "dynapse2", "--spike-rate", "0"], None, "spike_rate must be in (0, 1]"),
    (["--profile", "dynapse2", "--distill-mismatch", "0.1"], None, "distill_mismatch applies only with distill"),
    (["--profile", "EXTRA"], None, "has unknown fields: tau_leak"),
    (["--profile", "dynapse2"], ["--mismatch-sigma", "-0.1"], "mismatch_sigma must be >= 0.0"),
    (["--profile", "dynapse2"], ["--readout-fit", "cv"], "readout_fit applies only with calibrate_readout"),
    (["--profile", "dynapse2"], ["--timesteps", "64"], "--timesteps 64 needs --calibrate-readout"),
    ([], ["--mismatch-seed", "1"], "does not take --mismatch-seed"),
])
def test_bad_mixed_signal_input_fails_in_one_line(tmp_path, convert_args, run_args, needle):
    from lavaloop.profiles import PROFILES

    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({**PROFILES["dynapse2"].to_dict(), "tau_leak": 3.0}))
    out = tmp_path / "x.h5"
    proc = lavaloop_cli("convert", CARTPOLE, "--env", "CartPole-v1", "-o", out, "--calib-steps", "200",
                        *[str(extra) if a == "EXTRA" else a for a in convert_args])
    if run_args is not None:
        assert proc.returncode == 0, proc.stderr
        proc = lavaloop_cli("run", out, "--episodes", "1", "--backend", "emulator", *run_args)
    assert_clean_failure(proc, str(tmp_path), needle)


def test_a_convolution_does_not_map_and_says_which_layer(tmp_path):
    proc = lavaloop_cli("convert", PONG, "--env", "ALE/Pong-v5", "-o", tmp_path / "p.h5", "--calib-steps", "50",
                        "--profile", "dynapse2")
    assert_clean_failure(proc, str(tmp_path), "layer 'network.0'", "convolution does not map onto dynapse2")


def test_a_readout_calibrated_to_a_chip_instance_fits_that_chip(mapped):
    """run --calibrate-readout: the ridge fit on this instance's counts decides as the source on
    its calibration observations at least as often as the nominal chip's readout does there;
    runs record the fit (cross-validated: the strength chosen)."""
    from lavaloop.conversion.normalize import collect_observations
    from lavaloop.deploy.kinds.dqn import source_network
    from lavaloop.deploy.mixed_signal import MixedSignalNetwork, calibrate_instance
    from lavaloop.processes.dynamics import encode_input

    _, arts = mapped
    art = arts["prune"]
    chip = art.instance(11, 0.2)
    calibrated = calibrate_instance(art, chip)
    n = art.manifest["normalization"]
    obs = collect_observations(source_network(art), art.env_spec, min(n["calib_steps"], 2000), n["calib_seed"],
                               n["calib_epsilon"])
    source = source_network(art).q_values(obs).argmax(1)
    payload = encode_input(obs, 1 << art.manifest["input_scale_bits"], 16)
    agree = {name: float((MixedSignalNetwork(a, chip).decide(payload).argmax(1) == source).mean())
             for name, a in (("nominal", art), ("calibrated", calibrated))}
    assert agree["calibrated"] >= agree["nominal"] and agree["calibrated"] > 0.7
    assert np.array_equal(calibrated.mapped.layers[0].code, art.mapped.layers[0].code)
    result = run(art, RunSettings(episodes=1, backend="emulator", mismatch_seed=11, mismatch_sigma=0.2,
                                  calibrate_readout=True, readout_fit="cv"), progress=False)
    assert result.details["readout_calibrated_to_instance"]
    fit = result.details["instance_readout"]
    assert fit["fit"] == "cv" and fit["windows"] == len(obs) and fit["ridge"] in [lam for lam, _ in fit["curve"]]
    assert "readout calibrated to this chip (ridge" in result.summary()
    fixed = run(art, RunSettings(episodes=1, backend="emulator", mismatch_seed=11, mismatch_sigma=0.2,
                                 calibrate_readout=True), progress=False)
    assert fixed.details["instance_readout"]["fit"] == "fixed" and "(fixed ridge" in fixed.summary()


def test_a_longer_window_deploys_with_the_readout_refitted_to_it(mapped):
    """run --timesteps on a mixed-signal artifact: the chip counts over the new window (twice the
    window, more than twice the spikes: from rest the layers charge before their first spikes),
    the readout refitted to those counts decides as the source more often than the stored one,
    fitted to the trained window's counts, and Lava == emulator over the new window."""
    from lavaloop.conversion.normalize import collect_observations
    from lavaloop.deploy.kinds.dqn import source_network
    from lavaloop.deploy.mixed_signal import MixedSignalNetwork, calibrate_instance
    from lavaloop.processes.dynamics import encode_input

    art = mapped[1]["prune"]
    chip = art.instance(11, 0.2)
    obs = collect_observations(source_network(art), art.env_spec, 500, 7, 0.0)
    source = source_network(art).q_values(obs).argmax(1)
    payload = encode_input(obs, 1 << art.manifest["input_scale_bits"], 16)
    counts = {t: MixedSignalNetwork(art.with_timesteps(t), chip).counts(payload).sum() for t in (32, 64)}
    assert counts[64] > 2 * counts[32] > 0
    longer = art.with_timesteps(64)
    agree = {name: float((MixedSignalNetwork(a, chip).decide(payload).argmax(1) == source).mean())
             for name, a in (("stored", longer), ("refitted", calibrate_instance(longer, chip)))}
    assert agree["refitted"] > agree["stored"]
    short = with_manifest(art, env={**art.manifest["env"], "max_episode_steps": 8})
    settings = dict(episodes=1, epsilon=0.2, mismatch_seed=11, mismatch_sigma=0.2, calibrate_readout=True,
                    timesteps=64)
    lava = run(short, RunSettings(**settings, backend="lava"), progress=False)
    emu = run(short, RunSettings(**settings, backend="emulator"), progress=False)
    assert lava.details["timesteps"] == emu.details["timesteps"] == 64 and emu.details["trained_timesteps"] == 32
    assert "T=64 (trained at T=32)" in emu.summary()
    assert lava.decisions == emu.decisions == 8 and lava.log.spikes == emu.log.spikes
    for a, b in zip(lava.log.greedy + lava.log.actions, emu.log.greedy + emu.log.actions):
        assert np.array_equal(a, b)
    assert not multiprocessing.active_children()


@pytest.mark.slow
def test_training_through_the_chip_lifts_agreement():
    """The readout fitted to the nominal chip lifts the mapping's agreement; training through
    the chip at sigma 0.1 lifts the nominal chip's held-out agreement further."""
    import lavaloop

    art = lavaloop.convert(CARTPOLE, "CartPole-v1", profile="dynapse2", calib_steps=1000, timesteps=32,
                           fan_in="prune", distill=True, distill_steps=600, distill_mismatch=0.1)
    c, t = art.manifest["readout_calibration"], art.manifest["mismatch_training"]
    assert c["heldout_after"] > c["heldout_before"] + 0.1
    assert t["sigma"] == 0.1 and t["heldout_after"] > t["heldout_before"]
