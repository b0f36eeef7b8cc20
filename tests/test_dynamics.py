"""The shared integer arithmetic (processes.dynamics)."""
import numpy as np
import pytest

from lavaloop.processes import dynamics as D
from lavaloop.rollout import epsilon_greedy


def test_if_step_fires_and_subtracts_threshold():
    v, s = D.if_step(np.array([0, 5, 9]), np.array([3, 6, 25]), vth=10, bits=24)
    assert s.tolist() == [0, 1, 1]
    assert v.tolist() == [3, 1, 24]          # one spike per step at most; the rest is kept


def test_if_step_saturates_to_state_width():
    v, s = D.if_step(np.array([0]), np.array([1 << 30]), vth=1 << 40, bits=24)
    assert v[0] == (1 << 23) - 1 and s[0] == 0
    v, _ = D.if_step(np.array([0]), np.array([-(1 << 30)]), vth=10, bits=24)
    assert v[0] == -(1 << 23)


def test_shift_rounds_half_up_and_multiplies():
    x = np.array([5, 6, 7, -5, -6, -7])
    assert D.shift(x, -2).tolist() == [1, 2, 2, -1, -1, -2]
    assert D.shift(x, 3).tolist() == (x * 8).tolist()


def test_dense_matches_float_product_on_batches():
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, size=(5, 7))
    x = rng.integers(0, 2, size=(3, 7))
    assert np.array_equal(D.dense(w, x, 2), (x @ w.T) * 4)
    assert D.Synapse(w, 0, 1).synops(x) == sum(int(np.count_nonzero(w[:, r.astype(bool)])) for r in x)


def test_robust_readout_equals_total_integrated_input():
    rng = np.random.default_rng(1)
    a = rng.integers(-300, 900, size=(50, 4))
    v, count = np.zeros(4, np.int64), np.zeros(4, np.int64)
    for a_t in a:
        v, s = D.if_step(v, a_t, vth=1000, bits=24)
        count += s
    assert np.array_equal(D.readout(count, v, 1000, "robust"), a.sum(0))
    assert np.array_equal(D.readout(count, v, 1000, "spike_count"), count)
    with pytest.raises(ValueError):
        D.readout(count, v, 1000, "nope")


def test_encode_input_scales_rounds_and_saturates():
    out = D.encode_input(np.array([0.5, -0.25, 1e9]), scale=1 << 4, bits=16)
    assert out.tolist() == [8, -4, (1 << 15) - 1]


def test_epsilon_greedy_streams_stay_aligned_across_policies():
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    taken = [(epsilon_greedy(r1, np.array([1, 0]), 0.3), epsilon_greedy(r2, np.array([0, 1]), 0.3))
             for _ in range(200)]
    explored = [a for a, b in taken if a[0] != a[1] or b[0] != b[1]]
    assert explored                              # epsilon does explore
    assert r1.random() == r2.random()            # same number of draws whatever the greedy action
    assert epsilon_greedy(np.random.default_rng(0), np.array([2, 2, 1]), 0.0) == (0, 0)


@pytest.mark.parametrize("shape, stride, in_shape", [((5, 3, 4, 4), 2, (3, 11, 9)), ((4, 2, 3, 3), 1, (2, 7, 8)),
                                                      ((3, 4, 8, 8), 4, (4, 20, 23)), ((6, 17), None, None)])
def test_spike_synapses_sum_event_by_event_exactly(shape, stride, in_shape):
    """Binary inputs take the event-driven integer path; it must equal the exact float product."""
    rng = np.random.default_rng(2)
    w = rng.integers(-128, 128, size=shape)
    n_in = int(np.prod(in_shape)) if in_shape else shape[1]
    x = (rng.random((2, 3, n_in)) < 0.3).astype(np.int8)
    events, products = D.Synapse(w, 3, 1, stride, in_shape), D.Synapse(w, 3, 2, stride, in_shape)
    assert events.spikes and not products.spikes
    assert np.array_equal(events.current(x), products.current(x))
    assert events.current(x).shape == (2, 3, events.n_out)


def test_if_steps_equals_repeated_if_step():
    rng = np.random.default_rng(4)
    currents = rng.integers(-400, 900, size=(12, 2, 5))
    vth = rng.integers(300, 1000, size=5)
    v = np.zeros((2, 5), np.int64)
    spikes = D.if_steps(v, currents, vth, bits=10)          # 10 bits: saturation is reached
    w = np.zeros((2, 5), np.int64)
    for t, a in enumerate(currents):
        w, s = D.if_step(w, a, vth, bits=10)
        assert np.array_equal(s, spikes[t])
    assert np.array_equal(v, w)
    held = np.zeros((2, 5), np.int64)
    assert np.array_equal(D.if_steps(held, currents[0], vth, 10, steps=12),
                          D.if_steps(np.zeros((2, 5), np.int64), np.repeat(currents[:1], 12, axis=0), vth, 10))
