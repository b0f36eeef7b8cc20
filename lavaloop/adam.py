"""Adam, in numpy, deterministic: the optimizer of every host-side readout trainer."""
from __future__ import annotations

import numpy as np


class Adam:
    """Adam ascent on arrays of any shape (one step counter for all runs: they update together).

    The step size is lr * drop ** (t // drop_every) at step t (the dreaming authors' schedule;
    drop 1: constant).
    """

    def __init__(self, shape, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                 drop: float = 1.0, drop_every: int = 10_000):
        self.lr0, self.b1, self.b2, self.eps, self.drop, self.drop_every = lr, b1, b2, eps, drop, drop_every
        self.m, self.v, self.t = np.zeros(shape), np.zeros(shape), 0

    @property
    def lr(self) -> float:
        return self.lr0 * self.drop ** (self.t // self.drop_every)

    def step(self, grad: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        """The parameter change for gradient `grad` (to be added: ascent).

        `where` (boolean, broadcast to grad's shape): only these entries take part in the step;
        the others keep their moments and do not move ("lazy" Adam, as for sparse gradients).
        """
        self.t += 1
        m = self.b1 * self.m + (1 - self.b1) * grad
        v = self.b2 * self.v + (1 - self.b2) * grad * grad
        if where is not None:
            where = np.broadcast_to(where, grad.shape)
            m, v = np.where(where, m, self.m), np.where(where, v, self.v)
        self.m, self.v = m, v
        m_hat = self.m / (1 - self.b1 ** self.t)
        v_hat = self.v / (1 - self.b2 ** self.t)
        change = self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        return change if where is None else np.where(where, change, 0.0)

    def state(self, prefix: str) -> dict:
        return {f"{prefix}.m": self.m, f"{prefix}.v": self.v, f"{prefix}.t": np.array(self.t)}

    def load(self, prefix: str, d: dict) -> None:
        self.m, self.v, self.t = d[f"{prefix}.m"], d[f"{prefix}.v"], int(d[f"{prefix}.t"])
