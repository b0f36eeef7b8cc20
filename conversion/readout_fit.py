"""The host readout of a chip's spike counts: least-squares fits of the source's advantages.

A mixed-signal chip sends the last layer's spikes out; the host decides from their counts
with integer weights (`integer_readout`). The weights are a ridge regression of the source
network's advantages on the counts, the bias unpenalized, at a fixed strength
(`least_squares_readout`; `ridge_readout` is its differentiable form for training), or with
the strength chosen by cross-validated decision agreement (`calibrated_readout`: run
--calibrate-readout --readout-fit cv).
"""
from __future__ import annotations

import math

import numpy as np
import torch

READOUT_BITS = 16     # host readout weights
# calibrated_readout: ridge strengths tried, relative to the features' total variance per feature
RIDGE_GRID = tuple(float(10.0 ** e) for e in np.arange(-2.0, 3.01, 0.5))
CV_FOLDS = 5          # contiguous blocks: calibration windows come from a few long episodes


def integer_readout(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(weight, bias, shift): a host readout's real weights (per spike) and biases as
    READOUT_BITS-bit integers, both scaled by 2**shift (decisions do not depend on it)."""
    top = max(float(np.abs(weight).max()), float(np.abs(bias).max()), 1e-30)
    shift = READOUT_BITS - 1 - math.ceil(math.log2(top))
    return (np.rint(weight * 2.0 ** shift).astype(np.int64), np.rint(bias * 2.0 ** shift).astype(np.int64), shift)


def least_squares_readout(features: np.ndarray, target: np.ndarray, ridge: float = 1e-3
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(weight (|A|, n), bias): the ridge fit (bias unpenalized) of target (B, |A|) on features (B, n)."""
    w, b = ridge_readout(torch.as_tensor(np.asarray(features, np.float64)),
                         torch.as_tensor(np.asarray(target, np.float64)), ridge)
    return w.numpy(), b.numpy()


def ridge_readout(features: torch.Tensor, target: torch.Tensor, ridge: float = 1e-3
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """`least_squares_readout` on tensors, differentiable in both (mismatch training fits a
    readout per sampled chip instance inside the loss)."""
    x = torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], 1)
    reg = ridge * len(x) * torch.eye(x.shape[1], dtype=x.dtype)
    reg[-1, -1] = 0.0
    sol = torch.linalg.solve(x.T @ x + reg, x.T @ target.to(x.dtype))
    return sol[:-1].T, sol[-1]


def calibrated_readout(features: np.ndarray, target: np.ndarray, grid=RIDGE_GRID, folds: int = CV_FOLDS
                       ) -> tuple[np.ndarray, np.ndarray, dict]:
    """(weight (|A|, n), bias, info): the ridge fit of target (B, |A|) on features (B, n) whose
    strength maximizes the agreement of held-out decisions (argmax) with the target's.

    The strength lambda * (trace of the centred features' covariance x B / n) runs over `grid`;
    each is scored by `folds`-fold cross-validation over contiguous blocks of the rows
    (consecutive windows of an episode are near copies: leave-one-out would reward fitting
    them), computed exactly from one SVD with the block-deletion identity of linear smoothers
    (held-out residual = (I - H_bb)^-1 x residual of the full fit on block b). Ties go to the
    stronger penalty. info: {"ridge": lambda, "cv_agreement": its score, "folds": folds,
    "curve": [[lambda, score] for every lambda of the grid]}.

    features: spike counts per calibration window; target: the source's advantages there.
    """
    x, y = np.asarray(features, np.float64), np.asarray(target, np.float64)
    mean_x, mean_y = x.mean(0), y.mean(0)
    u, s, vt = np.linalg.svd(x - mean_x, full_matrices=False)
    uy = u.T @ (y - mean_y)
    scale = max(float(np.sum(s ** 2)) / x.shape[1], 1e-30)
    blocks = np.array_split(np.arange(len(x)), folds)
    curve = []
    for lam in grid:
        shrink = s ** 2 / (s ** 2 + lam * scale)
        resid = y - mean_y - u @ (shrink[:, None] * uy)          # the full fit's residuals
        hits = 0
        for b in blocks:   # hat matrix on the block: 1/B (the free bias) + U_b diag(shrink) U_b^T
            hat = 1.0 / len(x) + (u[b] * shrink) @ u[b].T
            held_out = y[b] - np.linalg.solve(np.eye(len(b)) - hat, resid[b])
            hits += int(np.sum(held_out.argmax(1) == y[b].argmax(1)))
        curve.append([float(lam), hits / len(x)])
    lam, score = max(reversed(curve), key=lambda point: point[1])   # first maximum from the strong end
    weight = vt.T @ ((s / (s ** 2 + lam * scale))[:, None] * uy)
    return weight.T, mean_y - mean_x @ weight, {"ridge": lam, "cv_agreement": score, "folds": folds, "curve": curve}
