"""Fast unit tests beside the end-to-end ones: one IF layer in Lava on synthetic input, the
run record (sign-safe returns, energy), the kinds registry, the runtime's signal handling."""
import os
import signal

import numpy as np
import pytest

from lavaloop.deploy.energy import ENERGY_MODELS, energy, energy_report
from lavaloop.deploy.episodes import EpisodeLog
from lavaloop.deploy.kinds.base import Fidelity
from lavaloop.deploy.results import RunResult, build_result
from lavaloop.processes.dynamics import if_steps


def if_layer(rng, n_in=12, n_out=7, max_input=1):
    weight = rng.integers(-90, 91, (n_out, n_in)).astype(np.int16)
    return {"name": "l0", "weight": weight, "weight_exp": 1, "max_input": max_input,
            "bias": rng.integers(-50, 200, n_out), "vth": rng.integers(300, 900, n_out),
            "v_init": rng.integers(0, 300, n_out)}


@pytest.mark.parametrize("max_input", [1, 1000])
def test_one_if_layer_in_lava_follows_the_arithmetic(max_input):
    """An IFStack of one dense layer driven by a RingBuffer: its spikes, step by step over two
    decision windows, are processes.dynamics.if_steps of the same inputs."""
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from lavaloop.processes.if_layers.process import IFStack
    from lavaloop.runtime import LavaRuntime

    rng = np.random.default_rng(max_input)
    layer, timesteps, window = if_layer(rng, max_input=max_input), 5, 7
    steps = 2 * window
    x = rng.integers(0, max_input + 1, (12, steps))
    x[:, rng.random(steps) < 0.3] = 0
    src, sink = Source(data=x), Sink(shape=(7,), buffer=steps)
    stack = IFStack(layers=[layer], state_bits=24, offset=0, timesteps=timesteps, window=window)
    src.s_out.connect(stack.s_in)
    stack.s_out.connect(sink.a_in)
    with LavaRuntime(src) as rt:
        rt.run(steps)
        got = sink.data.get().astype(np.int64)          # (7, steps): what arrived at each step
    for w in range(2):
        v = layer["v_init"].astype(np.int64)
        inputs = x[:, w * window: w * window + timesteps].T
        current = (inputs @ layer["weight"].T.astype(np.int64)) * 2 + layer["bias"]
        want = if_steps(v, current, layer["vth"], 24)    # (timesteps, 7)
        # spikes of active step k arrive one step later; the rest of the window is silent
        np.testing.assert_array_equal(got[:, w * window + 1: w * window + 1 + timesteps], want.T)
        assert not got[:, w * window + 1 + timesteps: (w + 1) * window].any()
    assert got.any()


def result(returns, source, random) -> RunResult:
    n = len(returns)
    return RunResult(kind="if", env="X-v0", backend="emulator", profile="loihi2", epsilon=0.0,
                     seeds=list(range(n)), returns=returns, lengths=[10] * n, source_returns=source,
                     random_returns=random, agreement=0.9, agreement_per_episode=[0.9] * n, decisions=10 * n,
                     spikes=100, synops=1000, energy=energy_report({"mac": 10, "ac": 100, "neuron": 5}, 10 * n),
                     backend_steps=100, wall_s=2.0, compile_s=None, source_sha256="0" * 64)


def test_negative_returns_are_compared_sign_safely():
    """Acrobot-like returns: the chip does worse (-92 vs -72); no ratio that reads as better."""
    r = result([-92.0, -92.4], [-72.0, -72.6], [-500.0, -500.0])
    assert r.return_ratio is None
    assert r.return_difference == pytest.approx(-19.9)
    assert r.normalized_score == pytest.approx((-92.2 + 500) / (-72.3 + 500))
    assert 0.9 < r.normalized_score < 1.0
    better = result([10.0], [8.0], [0.0])
    assert better.return_ratio == pytest.approx(1.25) and better.normalized_score == pytest.approx(1.25)
    assert result([5.0], [5.0], [5.0]).normalized_score is None      # the source is no better than chance


def test_record_is_json_and_complete():
    import json

    d = result([1.0, 2.0], [2.0, 2.0], [0.0, 0.0]).to_dict()
    json.dumps(d)
    assert "log" not in d and len(d["episodes"]) == 2 and d["episodes"][1]["random_return"] == 0.0
    for key in ("returns", "normalized_score", "agreement", "spikes", "synops", "energy", "steps_per_s",
                "wall_s", "seeds", "versions", "details"):
        assert key in d, key
    assert d["steps_per_s"] == 50.0 and d["spikes_per_decision"] == 5.0


def test_energy_report_per_decision():
    rep = energy_report({"mac": 460, "ac": 900, "neuron": 0}, decisions=10)
    assert rep["ops_per_decision"] == {"mac": 46.0, "ac": 90.0, "neuron": 0.0}
    assert rep["energy_per_decision_nj"]["cmos45"] == pytest.approx(1e9 * energy({"mac": 46, "ac": 90}))
    assert rep["energy_per_decision_nj"]["cmos45"] == pytest.approx((46 * 4.6 + 90 * 0.9) * 1e-3)
    assert set(rep["energy_per_decision_nj"]) == set(ENERGY_MODELS)


def test_build_result_counts_if_operations(cartpole_artifact):
    """An IF run's energy: input-layer synops are MACs (graded payload), the others ACs,
    every neuron updates T times per decision."""
    from lavaloop.deploy.kinds.rate_if import IFDeployment
    from lavaloop.options import RunSettings

    _, art = cartpole_artifact
    dep = IFDeployment(art, RunSettings(episodes=2, backend="emulator", timesteps=4))
    log = EpisodeLog(seeds=[0, 1], returns=np.array([3.0, 5.0]), lengths=np.array([3, 5]), actions=[], greedy=[],
                     spikes=[10, 20, 2], synops=[400, 300, 50], steps=56, wall_s=1.0)
    res = build_result(dep, log, Fidelity(0.5, [0.4, 0.6], {"outcome_agreement": None}),
                       np.array([4.0, 4.0]), np.array([1.0, 1.0]))
    ops = res.energy["ops_per_decision"]
    assert ops == {"mac": 50.0, "ac": 43.75, "neuron": (256 + 256 + 2) * 4}
    assert res.spikes == 32 and res.synops == 750 and res.decisions == 8
    assert res.details["timesteps"] == 4 and res.details["spikes_per_layer"] == [10, 20, 2]
    assert res.normalized_score == pytest.approx((4 - 1) / (4 - 1))


def test_kinds_registry_resolves_every_kind():
    from lavaloop.artifact import Artifact
    from lavaloop.deploy.kinds.base import Deployment
    from lavaloop.kinds import KINDS, artifact_class, deployment_class, resolve

    for name, kind in KINDS.items():
        assert issubclass(artifact_class(name), Artifact) and artifact_class(name).kind == name
        assert issubclass(deployment_class(name), Deployment)
        assert kind.converter is None or callable(resolve(kind.converter))
    assert sum(kind.converter is not None and kind.claims is None for kind in KINDS.values()) == 1


def test_a_kind_refuses_settings_it_does_not_take(tmp_path):
    from lavaloop.deploy.kinds.grsn import GRSNDeployment
    from lavaloop.errors import LavaloopError
    from lavaloop.options import RunSettings

    class Fake:
        kind, manifest = "grsn", {"epsilon": 0.0}

    with pytest.raises(LavaloopError, match="does not take --timesteps, --per-layer-processes"):
        GRSNDeployment(Fake(), RunSettings(timesteps=8, per_layer_processes=True))


def test_sigterm_becomes_an_interrupt_with_its_number():
    from lavaloop.runtime import Terminated, signals_as_interrupts

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as exc, signals_as_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
    assert isinstance(exc.value, Terminated) and exc.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
