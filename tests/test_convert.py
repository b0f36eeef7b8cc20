"""Normalization, quantization and the artifact contract."""
import copy
import json

import h5py
import numpy as np
import pytest

from conftest import CARTPOLE
from lavaloop import convert
from lavaloop.conversion.artifact_if import IFArtifact
from lavaloop.conversion.network import DenseLayer
from lavaloop.conversion.normalize import normalize
from lavaloop.conversion.quantize import quantize_layer
from lavaloop.errors import ArtifactError, LavaloopError, ProfileError, ShapeMismatchError
from lavaloop.profiles import PROFILES, ChipProfile, load_profile


def test_normalization_rescales_outputs_exactly(cartpole_artifact):
    _, art = cartpole_artifact
    scales = art.manifest["normalization"]["scales"]
    normed = normalize(art.source, scales)
    obs = np.random.default_rng(0).normal(size=(64, 4))
    x, y = obs, obs
    for i, (src, nrm) in enumerate(zip(art.source, normed)):
        x = x @ src.weight.T + src.bias
        y = y @ nrm.weight.T + nrm.bias
        if i < len(normed) - 1:
            x, y = np.maximum(x, 0), np.maximum(y, 0)
        np.testing.assert_allclose(y * scales[i], x, rtol=1e-4, atol=1e-4)


def test_percentile_scales_are_ordered(cartpole_checkpoint):
    obs_opts = dict(calib_steps=1000)
    lo = convert(cartpole_checkpoint, "CartPole-v1", percentile=99.0, **obs_opts)
    hi = convert(cartpole_checkpoint, "CartPole-v1", percentile=100.0, **obs_opts)
    assert all(a < b for a, b in zip(lo.manifest["normalization"]["scales"],
                                     hi.manifest["normalization"]["scales"]))


def test_quantization_follows_loihi2_rules_and_reports_error(cartpole_artifact):
    _, art = cartpole_artifact
    prof = PROFILES["loihi2"]
    for q, rep in zip(art.layers, art.manifest["quantization"]):
        assert np.abs(q.weight).max() == 127                      # full 8-bit signed mantissa used
        assert prof.weight_exp_min <= q.weight_exp <= prof.weight_exp_max
        assert q.vth.min() >= 2 ** 12                               # threshold resolution target
        assert 0 < rep["weight_rel_rms_error"] < 0.05


def test_quantize_layer_rejects_bias_outside_state_range():
    layer = DenseLayer("x", np.array([[1.0, -0.5]]), np.array([1e6]))
    with pytest.raises(ProfileError, match="bias does not fit"):
        quantize_layer(layer, PROFILES["loihi2"], per_neuron=True)


def test_artifact_round_trip(cartpole_artifact):
    path, art = cartpole_artifact
    back = IFArtifact.load(path)
    assert back.manifest == art.manifest
    for a, b in zip(art.layers, back.layers):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
        assert np.array_equal(a.vth, b.vth) and a.weight_exp == b.weight_exp
    with h5py.File(path) as f:                                     # netx-style layout
        assert f["layer/0/type"][()] == b"dense" and f["layer/0/neuron/type"][()] == b"IF"
        assert "vThMant" in f["layer/0/neuron"]


def test_manifest_records_provenance(cartpole_artifact):
    _, art = cartpole_artifact
    m = art.manifest
    assert m["env"]["id"] == "CartPole-v1" and m["obs_shape"] == [4] and m["action_map"] == [0, 1]
    assert len(m["source"]["sha256"]) == 64 and m["profile"]["name"] == "loihi2"
    assert m["normalization"]["percentile"] == 99.9 and m["lavaloop_version"]


def test_failed_save_leaves_no_file(tmp_path, cartpole_artifact, monkeypatch):
    _, art = cartpole_artifact
    bad = IFArtifact({**art.manifest, "unserializable": object()}, art.layers, art.source)
    with pytest.raises(TypeError):
        bad.save(tmp_path / "out.h5")
    assert list(tmp_path.iterdir()) == []


def test_corrupted_and_foreign_artifacts(tmp_path, cartpole_artifact):
    path, _ = cartpole_artifact
    data = path.read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 3])
    (tmp_path / "noise.h5").write_bytes(b"\x89HDF\r\n" + bytes(range(256)) * 10)
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = [1, 2, 3]
    for name in ("trunc.h5", "noise.h5", "foreign.h5", "missing.h5"):
        with pytest.raises(ArtifactError):
            IFArtifact.load(tmp_path / name)


def test_tampered_artifact_is_rejected(tmp_path, cartpole_artifact):
    path, art = cartpole_artifact
    bad = tmp_path / "bad.h5"
    bad.write_bytes(path.read_bytes())
    with h5py.File(bad, "r+") as f:
        w = f["layer/1/weight"][()]
        w[0, 0] = 1000                                            # no longer an 8-bit mantissa
        f["layer/1/weight"][...] = w
    with pytest.raises(ArtifactError, match="digest mismatch"):
        IFArtifact.load(bad)
    wide = copy.deepcopy(art.layers)                              # written with a valid digest:
    wide[1].weight[0, 0] = 1000                                   # validation still refuses it
    IFArtifact(art.manifest, wide, art.source).save(bad)
    with pytest.raises(ArtifactError, match="break profile"):
        IFArtifact.load(bad)
    with h5py.File(bad, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(ArtifactError, match="format version 99"):
        IFArtifact.load(bad)


def test_convert_rejects_env_that_does_not_fit(cartpole_checkpoint):
    with pytest.raises(ShapeMismatchError, match="takes 4 inputs"):
        convert(cartpole_checkpoint, "Acrobot-v1", calib_steps=10)
    with pytest.raises(LavaloopError, match="unknown environment id"):
        convert(cartpole_checkpoint, "NoSuchEnv-v0", calib_steps=10)


def test_profiles_are_data(tmp_path):
    assert load_profile("loihi2") is PROFILES["loihi2"]
    good = tmp_path / "chip.json"
    good.write_text(json.dumps({**PROFILES["loihi2"].to_dict(), "name": "mychip", "weight_bits": 6}))
    assert load_profile(str(good)).weight_bits == 6
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "half", "weight_bits": 8}))
    with pytest.raises(ProfileError, match="missing fields"):
        load_profile(str(bad))
    with pytest.raises(ProfileError, match="unknown chip profile"):
        load_profile("loihi9")
    assert isinstance(ChipProfile.from_dict(PROFILES["loihi2"].to_dict()), ChipProfile)


def test_profile_beyond_exact_arithmetic_is_rejected(cartpole_artifact):
    _, art = cartpole_artifact
    wide = {**art.manifest, "profile": {**art.manifest["profile"], "state_bits": 32}}
    with pytest.raises(ArtifactError, match="exact arithmetic range"):
        IFArtifact(wide, art.layers, art.source).validate()


def test_rate_limit_is_what_long_windows_approach(cartpole_artifact):
    """quantize.rate_limit is the T -> infinity limit of the emulated IF network's readout."""
    from lavaloop.conversion.normalize import collect_observations
    from lavaloop.conversion.quantize import rate_limit
    from lavaloop.deploy.emulator import FixedPointNetwork
    from lavaloop.deploy.kinds.dqn import source_network
    from lavaloop.envs import EnvSpec
    from lavaloop.processes.dynamics import encode_input

    _, art = cartpole_artifact
    spec = EnvSpec.from_dict(art.manifest["env"])
    obs = collect_observations(source_network(art), spec, 200, seed=5, epsilon=0.05)
    scale = 1 << art.manifest["input_scale_bits"]
    payload = encode_input(obs, scale, art.profile.input_bits)
    limit = rate_limit(art.layers, payload / scale)
    T, vth = 4096, art.layers[-1].vth
    per_step = (FixedPointNetwork(art, T, "robust").decide(payload) - art.layers[-1].v_init) / (T * vth)
    assert np.abs(per_step - limit).max() < 0.01 * np.abs(limit).max()
    assert (per_step.argmax(1) == limit.argmax(1)).mean() >= 0.98
    assert 0.9 <= art.manifest["rate_limit_agreement"] <= 1.0


def test_channel_normalization_rescales_every_channel():
    """normalize() with per-channel lambdas: each conv channel's (and dense hidden neuron's)
    outputs come out in its own units, and the next layer undoes them (conv -> conv -> dense -> dense)."""
    from lavaloop.conversion.network import ConvLayer
    from lavaloop.conversion.quantize import forward

    rng = np.random.default_rng(0)
    layers = [ConvLayer("c1", rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4), 1, (2, 6, 6)),
              ConvLayer("c2", rng.normal(size=(3, 4, 2, 2)), rng.normal(size=3), 2, (4, 4, 4)),
              DenseLayer("d1", rng.normal(size=(5, 12)), rng.normal(size=5)),
              DenseLayer("out", rng.normal(size=(2, 5)), rng.normal(size=2))]
    scales = [rng.uniform(0.5, 2, 4).tolist(), rng.uniform(0.5, 2, 3).tolist(), rng.uniform(0.5, 2, 5).tolist(), 0.9]
    x = y = rng.normal(size=(16, 72))
    for i, (src, nrm, lam) in enumerate(zip(layers, normalize(layers, scales), scales)):
        x, y = forward(src, src.weight, src.bias, x), forward(nrm, nrm.weight, nrm.bias, y)
        if i < len(layers) - 1:
            x, y = np.maximum(x, 0), np.maximum(y, 0)
        per_output = np.repeat(lam, x.shape[1] // len(lam)) if isinstance(lam, list) else lam
        np.testing.assert_allclose(y * per_output, x, rtol=1e-9, atol=1e-9)


def test_neuron_normalization_gives_every_hidden_neuron_its_own_lambda():
    """"neuron": one lambda per dense hidden neuron, the percentile of its own positive
    outputs (the layer's lambda lies among them), one for the output layer as "layer" has."""
    layer = convert(CARTPOLE, "CartPole-v1", calib_steps=600)
    neuron = convert(CARTPOLE, "CartPole-v1", calib_steps=600, normalization="neuron")
    lam_l, lam_n = layer.manifest["normalization"]["scales"], neuron.manifest["normalization"]["scales"]
    assert [len(s) if isinstance(s, list) else None for s in lam_n] == [256, 256, None]
    assert lam_n[-1] == lam_l[-1]
    for per_neuron, per_layer in zip(lam_n[:-1], lam_l[:-1]):
        assert min(per_neuron) < per_layer <= max(per_neuron)
    assert neuron.manifest["normalization"]["mode"] == "neuron"
    assert neuron.manifest["rate_limit_agreement"] >= 0.9


def test_unknown_normalization_is_refused(cartpole_checkpoint):
    with pytest.raises(LavaloopError, match="unknown normalization"):
        convert(cartpole_checkpoint, "CartPole-v1", normalization="batch")


def test_timesteps_auto_picks_the_first_power_of_two_that_reaches_the_target():
    import lavaloop

    art = lavaloop.convert(CARTPOLE, "CartPole-v1", calib_steps=600, timesteps="auto", timesteps_target=0.85)
    auto = art.manifest["timesteps_auto"]
    curve = {int(t): a for t, a in auto["curve"].items()}
    assert list(curve) == [2 ** k for k in range(len(curve))]
    assert art.timesteps == auto["chosen"] == max(curve)
    assert curve[art.timesteps] >= auto["goal"] and all(a < auto["goal"] for t, a in curve.items() if t < art.timesteps)
    assert auto["goal"] == min(0.85, auto["ceiling"] - 0.005)


@pytest.mark.parametrize("options, needle", [
    ({"timesteps": "fast"}, "timesteps must be an integer >= 1 or 'auto'"),
    ({"timesteps": "auto", "distill": True}, "give --timesteps a number"),
    ({"timesteps_target": 0.9}, "applies to --timesteps auto only"),
])
def test_timesteps_auto_options_are_checked(options, needle):
    from lavaloop.errors import LavaloopError
    from lavaloop.options import ConvertOptions

    with pytest.raises(LavaloopError, match=needle):
        ConvertOptions(**options)
