"""The host readout's fits (conversion/readout_fit.py): the cross-validated ridge."""
import numpy as np
import torch

from lavaloop.conversion.readout_fit import calibrated_readout, ridge_readout


def episodes_like(rng, rows=300, features=120, actions=3, rate=10.0, rho=0.95):
    """Spike counts of many noisy neurons (Poisson, sigmoid tuning) reading a slowly moving
    state (AR(1): consecutive rows are near copies, as in an episode); the target: a linear
    function of the state."""
    state = np.zeros((rows, 4))
    step = rng.normal(size=(rows, 4)) * np.sqrt(1 - rho ** 2)
    for t in range(1, rows):
        state[t] = rho * state[t - 1] + step[t]
    counts = rng.poisson(rate / (1 + np.exp(-state @ rng.normal(size=(4, features))))).astype(float)
    return counts, state @ rng.normal(size=(4, actions))


def test_block_cross_validation_equals_refitting_without_each_block():
    rng = np.random.default_rng(0)
    x, y = episodes_like(rng)
    grid, folds = (0.01, 1.0, 100.0), 4
    _, _, info = calibrated_readout(x, y, grid, folds)
    scale = np.sum((x - x.mean(0)) ** 2) / x.shape[1]
    for lam, score in info["curve"]:
        hits = 0
        for b in np.array_split(np.arange(len(x)), folds):
            keep = np.setdiff1d(np.arange(len(x)), b)
            # ridge_readout's penalty is ridge * rows: the same absolute strength on fewer rows
            w, c = ridge_readout(torch.as_tensor(x[keep]), torch.as_tensor(y[keep]), lam * scale / len(keep))
            hits += int(np.sum((x[b] @ w.numpy().T + c.numpy()).argmax(1) == y[b].argmax(1)))
        assert score == hits / len(x)


def test_the_chosen_fit_is_the_ridge_fit_of_that_strength():
    rng = np.random.default_rng(1)
    x, y = episodes_like(rng)
    w, b, info = calibrated_readout(x, y)
    assert info["ridge"] in [lam for lam, _ in info["curve"]]
    assert info["cv_agreement"] == max(score for _, score in info["curve"])
    scale = np.sum((x - x.mean(0)) ** 2) / x.shape[1]
    w_ref, b_ref = ridge_readout(torch.as_tensor(x), torch.as_tensor(y), info["ridge"] * scale / len(x))
    np.testing.assert_allclose(w, w_ref.numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(b, b_ref.numpy(), rtol=1e-6, atol=1e-9)


def test_the_choice_decides_better_on_new_episodes_than_a_weak_penalty():
    """Fewer windows than neurons: a nearly unpenalized fit interpolates the calibration windows
    and decides worse on others; the cross-validated strength does not."""
    rng = np.random.default_rng(2)
    x, y = episodes_like(rng, rows=4000, features=400, actions=2)
    fit, new = slice(0, 300), slice(300, None)
    w, b, info = calibrated_readout(x[fit], y[fit])
    assert info["ridge"] > min(lam for lam, _ in info["curve"])
    w_weak, b_weak = ridge_readout(torch.as_tensor(x[fit]), torch.as_tensor(y[fit]), 1e-6)
    agree = np.mean((x[new] @ w.T + b).argmax(1) == y[new].argmax(1))
    agree_weak = np.mean((x[new] @ w_weak.numpy().T + b_weak.numpy()).argmax(1) == y[new].argmax(1))
    assert agree > agree_weak + 0.02
