"""Host-side readouts of the on-chip populations, batched over independent runs (leading axis R).

The policy learns by REINFORCE with an eligibility trace and no baseline (optionally with an
entropy bonus, `ReadoutRules.entropy`, and in dreams a running-mean baseline,
`ReadoutRules.dream_baseline`); the world model's
readouts by an online delta rule. Both use Adam. All products are elementwise followed by a
sum over the last axis, so a run computes the same bits alone or in a batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lavaloop.adam import Adam
from lavaloop.deploy.dreaming import portable
from lavaloop.options import at_least, within


@dataclass(frozen=True)
class ReadoutRules:
    filter_decay: float = 0.6065      # s <- decay * s + (1 - decay) * gain * counts (tau = 2 steps)
    filter_gain: float = 5.0          # the policy's
    model_filter_gain: float = 5.0    # the world model's (the authors': 1)
    logit_clip: float = 50.0
    init_std: float = 0.1
    trace_decay: float = 0.998
    lr_policy: float = 0.004
    lr_state: float = 0.002
    lr_reward: float = 0.0004
    reward_decay: float = 0.5         # reward target: r_l <- 0.5 r_l + r
    max_delta: float = 30.0           # larger state changes (wrap-around, resets) count as 0
    adam_eps: float = 1e-8
    lr_drop: float = 1.0              # every Adam's step size x lr_drop every lr_drop_every steps
    lr_drop_every: int = 10_000
    model_per_action: bool = False    # the world model's readouts: one set per action (see WorldModel)
    model_taps: int = 1               # the world model reads its features of this many model windows (see WorldModel)
    entropy: float = 0.0              # entropy bonus: beta x the gradient of each step's policy entropy joins G
    dream_baseline: float = 0.0       # dreamed rewards less their running mean, which moves this share of the way
    #                                   to each dream's mean (0: no baseline, the authors'; see DreamBaseline)

    def __post_init__(self):
        at_least("entropy", self.entropy, 0.0)
        at_least("model_taps", self.model_taps, 1)
        within("dream_baseline", self.dream_baseline, 0.0, 1.0)

    def adam(self, shape, lr: float) -> Adam:
        return Adam(shape, lr, eps=self.adam_eps, drop=self.lr_drop, drop_every=self.lr_drop_every)


def linear(w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """w (R, k, N) applied to s (R, N) -> (R, k)."""
    return (w * s[:, None, :]).sum(-1)


class Filter:
    """Low-pass filtered spike counts of one population, per run."""

    def __init__(self, decay: float, gain: float, runs: int, n: int):
        self.decay, self.gain, self.s = decay, gain, np.zeros((runs, n))

    def update(self, counts: np.ndarray) -> np.ndarray:
        self.s = self.decay * self.s + (1 - self.decay) * self.gain * counts
        return self.s

    def reset(self) -> None:
        self.s[:] = 0.0


class Policy:
    """Softmax policy over 3 actions read out from the agent population."""

    def __init__(self, rules: ReadoutRules, runs: int, n: int, rngs: list[np.random.Generator]):
        self.rules, self.rngs = rules, rngs
        self.J = np.stack([rng.normal(0.0, rules.init_std, (3, n)) for rng in rngs])
        self.filter = Filter(rules.filter_decay, rules.filter_gain, runs, n)
        self.adam = rules.adam(self.J.shape, rules.lr_policy)
        self.e, self.G, self.dH = np.zeros_like(self.J), np.zeros_like(self.J), np.zeros_like(self.J)

    def start_episode(self, keep_gradient: bool = False) -> None:
        """Reset the filter and the trace; `keep_gradient`: add this episode's gradient to the
        previous one's, which had no update of its own."""
        self.filter.reset()
        self.e[:] = 0.0
        if not keep_gradient:
            self.G[:] = 0.0

    def act(self, counts: np.ndarray) -> np.ndarray:
        """Sample one action per run and extend the eligibility trace."""
        s = self.filter.update(counts)
        logits = np.clip(linear(self.J, s), -self.rules.logit_clip, self.rules.logit_clip)
        z = logits - logits.max(1, keepdims=True)
        p = portable.exp(z)
        total = p.sum(1, keepdims=True)
        p /= total
        u = np.array([rng.random() for rng in self.rngs])
        actions = np.minimum((np.cumsum(p, 1) <= u[:, None]).sum(1), 2)
        onehot = np.eye(3)[actions]
        self.e = self.rules.trace_decay * self.e + (onehot - p)[:, :, None] * s[:, None, :]
        if self.rules.entropy:
            logp = z - portable.log(total)
            h = -(p * logp).sum(1, keepdims=True)       # dH/dlogit_a = -p_a (log p_a + H)
            self.dH = (-p * (logp + h))[:, :, None] * s[:, None, :]
        return actions

    def reward(self, r: np.ndarray, weight: float = 1.0) -> None:
        """The step's reward r (per run) after `act`; `weight` 0 in the silent games (no learning)."""
        if self.rules.entropy:
            self.G += weight * (r[:, None, None] * self.e + self.rules.entropy * self.dH)
        else:
            self.G += weight * r[:, None, None] * self.e

    def update(self) -> None:
        """Once per game (or dream): Adam ascent along the accumulated G."""
        self.J += self.adam.step(self.G)

    def state(self) -> dict:
        return {"policy.J": self.J, "policy.G": self.G, **self.adam.state("policy.adam")}

    def load(self, d: dict) -> None:
        self.J = d["policy.J"]
        self.G = d["policy.G"] if "policy.G" in d else np.zeros_like(self.J)
        self.adam.load("policy.adam", d)


class DreamBaseline:
    """A running mean of the dreamed rewards per run, subtracted from them before they reach the
    policy: the world model's reward readout predicts a steady level (a losing agent's reward
    trace averages below 0) that, weighted by the eligibility trace of actions sampled at random,
    is a zero-mean but full-sized policy gradient, and Adam gives it a game's step size. The mean
    is the previous dreams' (each dream's own rewards do not shift its baseline), moving `rate`
    of the way to each finished dream's mean; rate 0 subtracts nothing.
    """

    def __init__(self, rate: float, runs: int):
        self.rate, self.b = rate, np.zeros(runs)
        self.total, self.steps = np.zeros(runs), 0

    def centre(self, r: np.ndarray) -> np.ndarray:
        """A dream step's rewards (R,) less the baseline; recorded for `finish`."""
        self.total += r
        self.steps += 1
        return r - self.b

    def finish(self) -> None:
        """After a dream: move the baseline toward its mean reward."""
        if self.steps:
            self.b += self.rate * (self.total / self.steps - self.b)
        self.total[:], self.steps = 0.0, 0

    def state(self) -> dict:
        return {"dream.baseline": self.b}

    def load(self, d: dict) -> None:
        self.b = d["dream.baseline"]


class WorldModel:
    """Predicts the change of the 4 state bytes and the reward trace from the model population.

    With `rules.model_per_action` it has one state and one reward readout per action, and the
    transition's action selects the one that predicts and learns (the others keep their Adam
    moments and do not move): a linear readout of the
    population's features times the one-hot action, which the host that chose the action can
    compute. Its predictions then depend on the action by construction, where one shared
    readout sees the action only through the few synapses an action channel has on the chip.

    With `rules.model_taps` k > 1 the readouts read the filtered features of the last k model
    windows side by side (a tapped delay line on the host; zeros before an episode's first): a
    state shows positions, not velocities, and one filtered trace cannot weigh this window
    against the last, which a difference (the ball's velocity) needs.
    """

    def __init__(self, rules: ReadoutRules, runs: int, n: int):
        self.rules = rules
        self.filter = Filter(rules.filter_decay, rules.model_filter_gain, runs, n)
        heads, width = (3,) if rules.model_per_action else (), n * rules.model_taps
        self.W_s, self.W_r = np.zeros((runs, *heads, 4, width)), np.zeros((runs, *heads, 1, width))
        self.adam_s = rules.adam(self.W_s.shape, rules.lr_state)
        self.adam_r = rules.adam(self.W_r.shape, rules.lr_reward)
        self.r_trace = np.zeros(runs)
        self.x = np.zeros((runs, width))    # the features last read: this window's, then the earlier taps'

    def start_episode(self) -> None:
        self.filter.reset()
        self.r_trace[:] = 0.0
        self.x[:] = 0.0

    def _head(self, w: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The readout (R, k, N) of each run's action (the shared one without per-action readouts)."""
        return w[np.arange(len(w)), actions] if self.rules.model_per_action else w

    def _step(self, adam, grad: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The change of all readouts for the gradient (R, k, N) of the actions' readouts: only
        those move (lazy Adam: the others keep their moments)."""
        if not self.rules.model_per_action:
            return adam.step(grad)
        full = np.zeros((len(grad), 3, *grad.shape[1:]))
        full[np.arange(len(grad)), actions] = grad
        selected = (np.arange(3) == actions[:, None])[:, :, None, None]
        return adam.step(full, where=selected)

    def predict(self, counts: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(delta state (R, 4), reward (R,)) for the transition the model population was shown.

        Parameters
        ----------
        counts: the model population's spike counts (R, N) of the window.
        actions: the transition's action per run (R,).
        """
        s = self.filter.update(counts)
        self.x = np.concatenate([s, self.x[:, :self.x.shape[1] - s.shape[1]]], axis=1)
        return linear(self._head(self.W_s, actions), self.x), linear(self._head(self.W_r, actions), self.x)[:, 0]

    def learn(self, delta_pred, reward_pred, delta: np.ndarray, reward: np.ndarray, actions: np.ndarray) -> None:
        """One delta-rule step toward the observed change and reward trace of the transition
        last predicted (`predict` with the same actions)."""
        r = self.rules
        delta = np.where(np.abs(delta) > r.max_delta, 0.0, delta)
        self.r_trace = r.reward_decay * self.r_trace + reward
        s = self.x[:, None, :]
        self.W_s += self._step(self.adam_s, (delta - delta_pred)[:, :, None] * s, actions)
        self.W_r += self._step(self.adam_r, (self.r_trace - reward_pred)[:, None, None] * s, actions)

    def state(self) -> dict:
        return {"model.W_s": self.W_s, "model.W_r": self.W_r,
                **self.adam_s.state("model.adam_s"), **self.adam_r.state("model.adam_r")}

    def load(self, d: dict) -> None:
        self.W_s, self.W_r = d["model.W_s"], d["model.W_r"]
        self.adam_s.load("model.adam_s", d)
        self.adam_r.load("model.adam_r", d)
