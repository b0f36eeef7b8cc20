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


def _lif_reference(state, spikes_in, p, noise=None):
    """lif_step's equations in plain numpy (the formulas of its docstring, one array op each)."""
    state["i_syn"] = p["a_syn"] * state["i_syn"] + p["gain"] * (np.asarray(spikes_in, np.float64) @ p["conn"])
    v = p["a_mem"] * state["v"] + p["b_mem"] * state["i_syn"]
    v = np.where(state["refr"] > 0, 0.0, v if noise is None else v + noise)
    s = (v >= p["vth"]).astype(np.int64)
    state["v"] = np.where(s == 1, 0.0, v)
    state["refr"] = np.where(s == 1, p["refractory"], np.maximum(state["refr"] - 1, 0))
    return s


@pytest.mark.parametrize("batch, shared", [((), True), ((5,), True), ((5,), False), ((2, 3), True)])
def test_compiled_lif_neurons_equal_the_numpy_equations_bit_for_bit(batch, shared):
    """lif_step, regular_spikes and population_window (numba) give the same bits as the
    equations in numpy, for single neurons, batches, and shared or per-row constants."""
    rng = np.random.default_rng(len(batch) + shared)
    c, n, one = 12, 40, 1000
    cshape = (n,) if shared else (*batch, n)
    p = {"conn": rng.integers(0, 4, (c, n)) * 1.0, "gain": rng.uniform(0.5, 2, cshape),
         "a_syn": rng.uniform(0.5, 0.99, cshape), "a_mem": rng.uniform(0.5, 0.99, cshape),
         "b_mem": rng.uniform(0.05, 0.5, cshape), "vth": rng.uniform(0.5, 3, cshape), "refractory": 2}
    fresh = {"i_syn": np.zeros((*batch, n)), "v": np.zeros((*batch, n)), "refr": np.zeros((*batch, n), np.int64)}
    ours, ref = dict(fresh), dict(fresh)
    inc = rng.integers(0, 600, (*batch, c))
    phase_ours = phase_ref = rng.integers(0, one, (*batch, c))
    for _ in range(20):
        noise = 0.2 * rng.standard_normal((10, *batch, n))
        counts_ref = np.zeros((*batch, n), np.int64)
        phase_ours, counts = D.population_window(ours, phase_ours, inc, p, 10, one, noise=iter(noise).__next__)
        for t in range(10):
            phase_ref = phase_ref + inc
            s_in = (phase_ref >= one).astype(np.int64)
            phase_ref = phase_ref - s_in * one
            counts_ref += _lif_reference(ref, s_in, p, noise[t])
        assert np.array_equal(phase_ours, phase_ref) and np.array_equal(counts, counts_ref)
        for key in fresh:
            assert np.array_equal(ours[key], ref[key])
        s_in = (rng.random((*batch, c)) < 0.4).astype(np.int64)     # and one step through lif_step
        assert np.array_equal(D.lif_step(ours, s_in, p), _lif_reference(ref, s_in, p))
    assert counts_ref.sum() > 0
    ph, s = D.regular_spikes(phase_ref, inc, one)
    assert np.array_equal(s, (phase_ref + inc >= one).astype(np.int64))
    assert np.array_equal(ph, phase_ref + inc - s * one)


@pytest.mark.parametrize("batch", [(), (7,), (2, 3)])
def test_sparse_connections_give_the_dense_drive_bit_for_bit(batch):
    """A `SparseConn` (what the mapped networks' emulator and Lava model use) gives the dense
    product's sums exactly, for a block-sparse matrix of weights on the analog grid, and the
    same fan-out."""
    rng = np.random.default_rng(len(batch))
    conn = D.on_grid(rng.normal(0, 3, (65, 48)) * (rng.random((65, 48)) < 0.25))
    conn[:, :12] = 0.0                                   # a target that nothing reaches
    conn[5] = 0.0                                        # an input that reaches nothing
    sparse = D.sparse_conn(conn)
    assert sparse.shape == conn.shape and len(sparse.data) == np.count_nonzero(conn)
    assert np.array_equal(D.fanout(sparse), D.fanout(conn))
    for rate in (0.0, 0.3, 1.0):
        s = (rng.random((*batch, 65)) < rate).astype(np.int64)
        dense = D.synaptic_drive(s, conn)
        assert dense.shape == (*batch, 48)
        assert np.array_equal(D.synaptic_drive(s, sparse), dense)
    assert np.abs(dense).sum() > 0


def test_population_window_refuses_a_connection_of_the_wrong_shape():
    state = {"i_syn": np.zeros(4), "v": np.zeros(4), "refr": np.zeros(4, np.int64)}
    p = {"conn": np.ones((3, 5)), "gain": np.ones(4), "a_syn": np.ones(4), "a_mem": np.ones(4), "b_mem": np.ones(4),
         "vth": np.ones(4), "refractory": 1}
    with pytest.raises(ValueError, match="does not connect"):
        D.population_window(state, np.zeros(3, np.int64), np.ones(3, np.int64), p, 2, 10)
