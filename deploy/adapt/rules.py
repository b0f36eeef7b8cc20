"""The readout trainers of `lavaloop adapt` and their configuration.

Every rule sees one finished episode at a time (the chip's features, actions and rewards,
and the observations), updates the float readout with Adam and leaves the chip to take the
quantized result before the next episode. All arithmetic is numpy float64 with one seeded
generator, so a run repeats bit for bit (and resumes: `state`/`load`).

td: DQN-style TD(0) on the readout (Mnih et al. 2015): a replay of (x, a, r, x', terminal)
    and a target copy. Solver "lstsq" (default): after each episode, `fit_iterations` rounds
    of fitted Q iteration (Ernst et al. 2005): targets from the target copy, every action's
    readout row the ridge-regression solution on the whole replay, then the copy updated.
    Solver "adam": minibatch Adam steps on the Huber loss, the copy every `target_every` steps.
reinforce: the dreaming agent's rule: REINFORCE on a softmax over the readout values, weighted
    by the normalized discounted returns-to-go, one Adam step per episode.
distill: match the source network's Q-values on the same observations (no reward needed).
    Solver "lstsq": the ridge-regression solution on the replay of past observations; "adam":
    minibatch Adam steps on the squared error plus a cross-entropy term on the source's
    greedy action.

A readout's features are a linear model's inputs, so least squares finds in one solve what
Adam approaches with steps: at a constant step size Adam keeps moving every weight by about
`lr`, and with hundreds of active features that moves the values more than the gaps
between two actions' values that decide (measured: docs/adapt.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lavaloop.adam import Adam
from lavaloop.deploy.adapt.readout import Readout
from lavaloop.errors import LavaloopError
from lavaloop.options import at_least, one_of, within

RULES = ("td", "reinforce", "distill")
SOLVERS = ("lstsq", "adam")
KEEP = ("last", "best")
BEST_WINDOW = 10          # keep="best": episodes in the moving mean that ranks the readouts


@dataclass
class AdaptConfig:
    """What an adaptation run does.

    Parameters
    ----------
    rule: "td", "reinforce" or "distill" (see the module).
    solver: td and distill: "lstsq" (ridge regression on the replay) or "adam" (minibatches).
    episodes: adaptation episodes, >= 1; episode k uses seed `seed + k`.
    seed: the first seed, >= 0 (also seeds the minibatches).
    epsilon: exploration of the chip's epsilon-greedy decisions while adapting, in [0, 1].
    lr: Adam step size, > 0 (on readout weights of threshold units).
    ridge: lstsq: L2 penalty per sample on the distance from the deployed readout, relative
        to the features' mean square, >= 0.
    fit_iterations: td with lstsq: fitted-Q rounds after each episode, >= 1.
    gamma: discount of td and reinforce, in [0, 1].
    batch: minibatch size of td and distill, >= 1.
    replay: transitions (td) or observations (distill) kept, >= batch.
    updates_per_decision: td and distill minibatch steps per decision played, > 0.
    target_every: td: minibatch steps between copies of the target readout, >= 1.
    temperature: softmax temperature of reinforce and of distill's cross-entropy, > 0, in
        the readout's normalized units (1 = the largest calibrated output).
    ce_weight: distill: weight of the cross-entropy on the source's greedy action, >= 0.
    timesteps: T of the deployed network (None: the artifact's).
    headroom_bits: room for the readout's weights to grow this many bits before they clip,
        0..8, at that much coarser resolution (lavaloop.deploy.adapt.readout).
    keep: which readout the adapted artifact gets: "last" (after the final episode) or "best"
        (the one that played the episode ending the best BEST_WINDOW-episode mean of the
        curve's returns; TD's curve is not monotone). The chip keeps training either way.
    """

    rule: str = "td"
    solver: str = "lstsq"
    episodes: int = 100
    seed: int = 0
    epsilon: float = 0.1
    lr: float = 1e-3
    ridge: float = 1e-2
    fit_iterations: int = 2
    gamma: float = 0.99
    batch: int = 64
    replay: int = 10_000
    updates_per_decision: float = 1.0
    target_every: int = 200
    temperature: float = 0.1
    ce_weight: float = 0.1
    timesteps: int | None = None
    headroom_bits: int = 0
    keep: str = "last"

    def __post_init__(self):
        one_of("rule", self.rule, RULES)
        one_of("keep", self.keep, KEEP)
        one_of("solver", self.solver, SOLVERS)
        at_least("ridge", self.ridge, 0.0)
        at_least("fit_iterations", self.fit_iterations, 1)
        at_least("episodes", self.episodes, 1)
        at_least("seed", self.seed, 0)
        within("epsilon", self.epsilon, 0, 1)
        within("lr", self.lr, 0, 1, low_open=True)
        within("gamma", self.gamma, 0, 1)
        at_least("batch", self.batch, 1)
        at_least("replay", self.replay, self.batch)
        within("updates_per_decision", self.updates_per_decision, 0, 64, low_open=True)
        at_least("target_every", self.target_every, 1)
        within("temperature", self.temperature, 0, 1e6, low_open=True)
        at_least("ce_weight", self.ce_weight, 0.0)
        at_least("timesteps", self.timesteps, 1)
        at_least("headroom_bits", self.headroom_bits, 0)
        if self.headroom_bits > 8:
            raise LavaloopError(f"headroom_bits must be <= 8, got {self.headroom_bits}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Episode:
    """One adaptation episode as the trainer sees it.

    features: (L, n) what the readout received per decision (spike counts in the window, or
    sigma-delta messages since the episode began); actions: (L,) the taken action indices;
    rewards: (L,); observations: (L, ...) the observations decided on; terminated: the env
    ended it (not a time limit), so its last transition has no successor.
    """

    features: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    observations: np.ndarray
    terminated: bool


class Trainer:
    """Float readout (W, b) with Adam; subclasses implement `update`.

    Parameters
    ----------
    cfg: the run's configuration. readout: the chip's readout. w, b: the starting parameters
    (the deployed network's, dequantized). source: q_values(observations) of the float
    source network (distill; the agreement of every rule's curve).
    """

    def __init__(self, cfg: AdaptConfig, readout: Readout, w: np.ndarray, b: np.ndarray, source):
        self.cfg, self.readout, self.source = cfg, readout, source
        self.w, self.b = w.astype(np.float64).copy(), b.astype(np.float64).copy()
        self.prior = (self.w.copy(), self.b.copy())     # the deployed readout
        self.adam_w, self.adam_b = Adam(w.shape, cfg.lr), Adam(b.shape, cfg.lr)
        self.rng = np.random.default_rng(cfg.seed)
        self.recent = np.zeros((0, w.shape[1]))       # the last episode's features

    def values(self, x: np.ndarray, w=None, b=None) -> np.ndarray:
        """Readout values (normalized units) of features x (normalized units), (..., n_actions)."""
        w, b = (self.w, self.b) if w is None else (w, b)
        return x @ w.T + b

    def step(self, grad_w: np.ndarray, grad_b: np.ndarray) -> None:
        """One Adam descent step."""
        self.w -= self.adam_w.step(grad_w)
        self.b -= self.adam_b.step(grad_b)

    def update(self, ep: Episode) -> dict:
        """Learn from one episode; returns the numbers for its curve entry."""
        raise NotImplementedError

    def features(self) -> np.ndarray:
        """The features the quantized readout should reproduce the float one on."""
        return self.recent

    def n_updates(self, decisions: int) -> int:
        return max(1, int(round(self.cfg.updates_per_decision * decisions)))

    def state(self) -> dict:
        return {"w": self.w, "b": self.b, **self.adam_w.state("adam_w"), **self.adam_b.state("adam_b")}

    def load(self, d: dict) -> None:
        self.w, self.b = d["w"], d["b"]
        self.adam_w.load("adam_w", d)
        self.adam_b.load("adam_b", d)


def ridge_fit(x: np.ndarray, y: np.ndarray, ridge: float, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(w, b) minimizing |x w^T + b - y|^2 + ridge * n * mean(x^2) * |w - prior|^2 (b free):
    ridge regression pulled toward `prior`, the deployed readout, so that a few samples move
    it a little; x (n, k), y (n, m), prior (m, k) -> w (m, k), b (m,)."""
    n, k = x.shape
    a = np.hstack([x, np.ones((n, 1))])
    penalty = np.full(k + 1, ridge * n * max(float(np.mean(x * x)), 1e-12))
    penalty[-1] = 0.0
    start = np.vstack([prior.T, np.zeros((1, prior.shape[0]))])
    sol = np.linalg.lstsq(a.T @ a + np.diag(penalty), a.T @ y + penalty[:, None] * start, rcond=None)[0]
    return sol[:-1].T, sol[-1]


class Replay:
    """A ring buffer of named float arrays (its contents are checkpointed)."""

    def __init__(self, capacity: int, **columns: tuple):
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.data = {k: np.zeros((capacity, *shape)) for k, shape in columns.items()}

    def add(self, **rows: np.ndarray) -> None:
        n = len(next(iter(rows.values())))
        for i in range(n):
            for k, v in rows.items():
                self.data[k][self.pos] = v[i]
            self.pos = (self.pos + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch: int) -> dict:
        idx = rng.integers(self.size, size=batch)
        return {k: v[idx] for k, v in self.data.items()}

    def state(self) -> dict:
        return {**{f"replay.{k}": v[:self.size] for k, v in self.data.items()},
                "replay.pos": np.array(self.pos)}

    def load(self, d: dict) -> None:
        for k in self.data:
            rows = d[f"replay.{k}"]
            self.data[k][:len(rows)] = rows
            self.size = len(rows)
        self.pos = int(d["replay.pos"])


class ReplayTrainer(Trainer):
    """A trainer whose replay's features are the quantizer's calibration set."""

    memory: Replay

    def features(self) -> np.ndarray:
        return self.memory.data["x"][:self.memory.size]


class TD(ReplayTrainer):
    def __init__(self, cfg, readout, w, b, source):
        super().__init__(cfg, readout, w, b, source)
        n = w.shape[1]
        self.memory = Replay(cfg.replay, x=(n,), a=(), r=(), x2=(n,), term=())
        self.target = (self.w.copy(), self.b.copy())
        self.steps = 0

    def update(self, ep: Episode) -> dict:
        x = self.readout.features(ep.features)
        last = len(x) - (0 if ep.terminated else 1)     # a time limit's last step has no successor
        if last > 0:
            x2 = np.concatenate([x[1:], np.zeros((1, x.shape[1]))])[:last]
            term = np.zeros(last)
            term[-1] = float(ep.terminated)
            self.memory.add(x=x[:last], a=ep.actions[:last].astype(float), r=ep.rewards[:last], x2=x2, term=term)
        if self.cfg.solver == "lstsq":
            return self.fit_q()
        scale, losses = self.readout.out_scale, []
        for _ in range(self.n_updates(len(x)) if self.memory.size >= self.cfg.batch else 0):
            s = self.memory.sample(self.rng, self.cfg.batch)
            a = s["a"].astype(np.int64)
            rows = np.arange(len(a))
            y = s["r"] + self.cfg.gamma * (1 - s["term"]) * scale * self.values(s["x2"], *self.target).max(1)
            err = scale * self.values(s["x"])[rows, a] - y
            d = np.clip(err, -1.0, 1.0) * scale / len(a)         # Huber loss, d/d(values)
            gw, gb = np.zeros_like(self.w), np.zeros_like(self.b)
            np.add.at(gw, a, d[:, None] * s["x"])
            np.add.at(gb, a, d)
            self.step(gw, gb)
            losses.append(float(np.mean(np.minimum(err ** 2 / 2, np.abs(err) - 0.5))))
            self.steps += 1
            if self.steps % self.cfg.target_every == 0:
                self.target = (self.w.copy(), self.b.copy())
        return {"loss": float(np.mean(losses)) if losses else None}

    def fit_q(self) -> dict:
        """Fitted Q iteration on the whole replay: per action, the ridge solution for the
        targets of the target copy; each round then becomes the copy."""
        m, n = self.memory.data, self.memory.size
        x, a, r, x2, term = (m[k][:n] for k in ("x", "a", "r", "x2", "term"))
        scale, losses = self.readout.out_scale, []
        for _ in range(self.cfg.fit_iterations):
            y = (r + self.cfg.gamma * (1 - term) * scale * self.values(x2, *self.target).max(1)) / scale
            for action in range(len(self.b)):
                rows = a == action
                if rows.sum() > x.shape[1] // 8:      # too few samples: keep the row
                    w, b = ridge_fit(x[rows], y[rows, None], self.cfg.ridge, self.prior[0][action, None])
                    self.w[action], self.b[action] = w[0], b[0]
            losses.append(float(np.mean((self.values(x)[np.arange(n), a.astype(np.int64)] - y) ** 2) * scale ** 2))
            self.target = (self.w.copy(), self.b.copy())
        return {"loss": losses[-1]}

    def state(self) -> dict:
        return {**super().state(), **self.memory.state(), "target_w": self.target[0], "target_b": self.target[1],
                "td_steps": np.array(self.steps)}

    def load(self, d: dict) -> None:
        super().load(d)
        self.memory.load(d)
        self.target, self.steps = (d["target_w"], d["target_b"]), int(d["td_steps"])


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class Reinforce(Trainer):
    def update(self, ep: Episode) -> dict:
        x = self.recent = self.readout.features(ep.features)
        g = np.zeros(len(ep.rewards))
        acc = 0.0
        for t in range(len(g) - 1, -1, -1):
            acc = ep.rewards[t] + self.cfg.gamma * acc
            g[t] = acc
        sd = g.std()
        adv = (g - g.mean()) / sd if sd > 0 else np.zeros_like(g)
        p = softmax(self.values(x) / self.cfg.temperature)
        onehot = np.eye(p.shape[1])[ep.actions.astype(np.int64)]
        d = -(onehot - p) * adv[:, None] / (self.cfg.temperature * len(x))   # d(-sum adv log p)/d(values)
        self.step(d.T @ x, d.sum(0))
        return {"loss": None}


class Distill(ReplayTrainer):
    def __init__(self, cfg, readout, w, b, source):
        super().__init__(cfg, readout, w, b, source)
        self.memory = Replay(cfg.replay, x=(w.shape[1],), y=(w.shape[0],))

    def update(self, ep: Episode) -> dict:
        x = self.readout.features(ep.features)
        self.memory.add(x=x, y=self.source(ep.observations) / self.readout.out_scale)
        if self.cfg.solver == "lstsq":
            n = self.memory.size
            xs, ys = self.memory.data["x"][:n], self.memory.data["y"][:n]
            self.w, self.b = ridge_fit(xs, ys, self.cfg.ridge, self.prior[0])
            return {"loss": float(np.mean((self.values(xs) - ys) ** 2) / 2)}
        losses = []
        for _ in range(self.n_updates(len(x))):
            s = self.memory.sample(self.rng, self.cfg.batch)
            v = self.values(s["x"])
            p = softmax(v / self.cfg.temperature)
            onehot = np.eye(v.shape[1])[s["y"].argmax(1)]
            d = ((v - s["y"]) + self.cfg.ce_weight * (p - onehot) / self.cfg.temperature) / len(v)
            self.step(d.T @ s["x"], d.sum(0))
            losses.append(float(np.mean((v - s["y"]) ** 2) / 2))
        return {"loss": float(np.mean(losses))}

    def state(self) -> dict:
        return {**super().state(), **self.memory.state()}

    def load(self, d: dict) -> None:
        super().load(d)
        self.memory.load(d)


TRAINERS = {"td": TD, "reinforce": Reinforce, "distill": Distill}
