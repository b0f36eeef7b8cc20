"""Train a recurrent Q-policy (GRSN, GRU, LIF, GRSN without TAP) on a POMDP task.

    python -m conversion.models.train_recurrent --env CartPole-V --cell grsn --seed 0 \\
        -o checkpoints/grsn_cartpole_v_s0.pt

A recurrent Double DQN in the pomdp-baselines scaffold the GRSN paper trains in: whole
episodes go into a sequence replay; each update samples 32 chunks of 64 steps (start
uniform in the episode, state zero at the chunk's start, the true previous action and
reward as inputs) and back-propagates through time over the chunk. One update every
`train_freq` (2) env steps after `learning_starts`, Adam 3e-4, soft target updates
(tau 0.005), 10k env steps and gamma 0.9 for CartPole as in the paper, epsilon-greedy
exploration annealed 1 -> 0.05 over the first quarter. Advantage learning (alpha 0.9,
Bellemare et al. 2016) widens the action gaps, which fixed-point deployment needs (README). (The paper uses
SAC-discrete; the value-based variant costs a third of the compute on this CPU, and
README reports whether it reaches the same returns.)

Every `--eval-every` steps the greedy policy plays 10 seeded episodes; the curve goes to
`<out>.csv`. The best-evaluated network is the checkpoint (`conversion.models.grsn.save_policy`:
tensors and JSON only).
"""
from __future__ import annotations

import argparse
import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from conversion.envs import EnvSpec, make_env
from conversion.models.grsn import CELLS, PolicyConfig, RecurrentQNet, save_policy


@dataclass
class Config:
    total_steps: int = 10_000
    learning_starts: int = 1_000
    train_freq: int = 2             # env steps per gradient update
    batch_size: int = 32
    seq_len: int = 64
    lr: float = 3e-4
    gamma: float = 0.9
    tau: float = 0.005
    start_eps: float = 1.0
    final_eps: float = 0.05
    exploration_fraction: float = 0.25
    grad_clip: float = 10.0
    action_gap: float = 0.9         # advantage learning (Bellemare et al. 2016); 0 = plain DQN


class SequenceReplay:
    """Whole episodes; samples fixed-length chunks for truncated BPTT."""

    def __init__(self, n_actions: int):
        self.n_actions = n_actions
        self.episodes: list[dict] = []
        self.lengths: list[int] = []

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: bool) -> None:
        """obs has one more row than actions/rewards (the final observation)."""
        onehot = np.zeros((len(actions) + 1, self.n_actions), np.float32)
        onehot[np.arange(1, len(actions) + 1), actions] = 1.0          # previous action at each step
        prev_r = np.concatenate([[0.0], rewards]).astype(np.float32)[:, None]
        done = np.zeros(len(actions), np.float32)
        done[-1] = float(terminated)
        self.episodes.append(dict(obs=obs.astype(np.float32), prev_a=onehot, prev_r=prev_r,
                                  a=actions.astype(np.int64), r=rewards.astype(np.float32), done=done))
        self.lengths.append(len(actions))

    def sample(self, rng: np.random.Generator, batch: int, seq_len: int) -> dict[str, torch.Tensor]:
        """Chunks (time-major, padded to seq_len; `mask` marks real transitions)."""
        p = np.asarray(self.lengths, np.float64)
        idx = rng.choice(len(self.episodes), size=batch, p=p / p.sum())
        out = {k: np.zeros((seq_len + 1, batch, *shape), np.float32) for k, shape in
               (("obs", self.episodes[0]["obs"].shape[1:]), ("prev_a", (self.n_actions,)), ("prev_r", (1,)))}
        out.update({k: np.zeros((seq_len, batch), np.float32) for k in ("r", "done", "mask")})
        out["a"] = np.zeros((seq_len, batch), np.int64)
        for b, i in enumerate(idx):
            ep, n = self.episodes[i], self.lengths[i]
            start = int(rng.integers(0, max(1, n - seq_len + 1)))
            l = min(seq_len, n - start)
            for k in ("obs", "prev_a", "prev_r"):
                out[k][: l + 1, b] = ep[k][start: start + l + 1]
            for k in ("a", "r", "done"):
                out[k][:l, b] = ep[k][start: start + l]
            out["mask"][:l, b] = 1.0
        return {k: torch.from_numpy(v) for k, v in out.items()}


def td_loss(q: RecurrentQNet, target: RecurrentQNet, batch: dict, gamma: float, action_gap: float = 0.0) -> torch.Tensor:
    """Double-DQN Huber loss over the chunk's real transitions, with the advantage-learning
    term -alpha (V(s) - Q(s, a)) of the target network (alpha = `action_gap`)."""
    n = batch["a"].shape[1]
    qs, _, _ = q(batch["obs"], batch["prev_a"], batch["prev_r"], q.zero_state(n))
    with torch.no_grad():
        qt, _, _ = target(batch["obs"], batch["prev_a"], batch["prev_r"], target.zero_state(n))
        best = qs[1:].argmax(-1, keepdim=True)
        y = batch["r"] + gamma * (1 - batch["done"]) * qt[1:].gather(-1, best).squeeze(-1)
        y = y - action_gap * (qt[:-1].max(-1).values - qt[:-1].gather(-1, batch["a"][..., None]).squeeze(-1))
    q_sa = qs[:-1].gather(-1, batch["a"][..., None]).squeeze(-1)
    loss = F.smooth_l1_loss(q_sa, y, reduction="none")
    return (loss * batch["mask"]).sum() / batch["mask"].sum()


class Actor:
    """Runs a RecurrentQNet step by step in an env, carrying its state."""

    def __init__(self, q: RecurrentQNet):
        self.q, self.n_actions = q, q.cfg.n_actions

    def reset(self) -> None:
        self.state = self.q.zero_state(1)
        self.prev_a = torch.zeros(1, 1, self.n_actions)
        self.prev_r = torch.zeros(1, 1, 1)

    @torch.no_grad()
    def values(self, obs: np.ndarray) -> np.ndarray:
        o = torch.as_tensor(np.asarray(obs, np.float32)).view(1, 1, -1)
        qv, self.state, _ = self.q(o, self.prev_a, self.prev_r, self.state)
        return qv[0, 0].numpy()

    def observe(self, action: int, reward: float) -> None:
        self.prev_a = torch.zeros(1, 1, self.n_actions)
        self.prev_a[0, 0, action] = 1.0
        self.prev_r = torch.full((1, 1, 1), float(reward))


def episode_returns(q: RecurrentQNet, spec: EnvSpec, seeds: list[int]) -> list[float]:
    """Greedy returns of seeded episodes."""
    env, actor, returns = make_env(spec), Actor(q), []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        actor.reset()
        done, ret = False, 0.0
        while not done:
            a = int(np.argmax(actor.values(obs)))
            obs, r, term, trunc, _ = env.step(a)
            actor.observe(a, r)
            ret += float(r)
            done = term or trunc
        returns.append(ret)
    env.close()
    return returns


def evaluate(q: RecurrentQNet, spec: EnvSpec, episodes: int = 10, seed: int = 10_000) -> float:
    """Mean greedy return over seeded episodes."""
    return float(np.mean(episode_returns(q, spec, list(range(seed, seed + episodes)))))


def train(env_id: str, cell: str, seed: int, out: Path, cfg: Config, eval_every: int = 1_000,
          progress: bool = True) -> dict:
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    spec = EnvSpec.for_id(env_id)
    env = make_env(spec)
    pcfg = PolicyConfig(obs_dim=int(np.prod(env.observation_space.shape)), n_actions=int(env.action_space.n),
                        cell=cell)
    q, target = RecurrentQNet(pcfg), RecurrentQNet(pcfg)
    target.load_state_dict(q.state_dict())
    opt = torch.optim.Adam(q.parameters(), lr=cfg.lr)
    replay, actor = SequenceReplay(pcfg.n_actions), Actor(q)
    curve, t0 = [], time.time()

    obs, _ = env.reset(seed=seed)
    actor.reset()
    ep_obs, ep_a, ep_r = [obs], [], []
    bar = tqdm(range(1, cfg.total_steps + 1), desc=f"{env_id} {cell} s{seed}", disable=not progress)
    for step in bar:
        frac = min(1.0, step / (cfg.exploration_fraction * cfg.total_steps))
        eps = cfg.start_eps + frac * (cfg.final_eps - cfg.start_eps)
        values = actor.values(obs)
        a = int(rng.integers(pcfg.n_actions)) if rng.random() < eps else int(np.argmax(values))
        obs, r, term, trunc, _ = env.step(a)
        actor.observe(a, r)
        ep_obs.append(obs), ep_a.append(a), ep_r.append(r)
        if term or trunc:
            replay.add(np.stack(ep_obs), np.asarray(ep_a), np.asarray(ep_r), term)
            bar.set_postfix(ret=sum(ep_r), eps=round(eps, 2))
            obs, _ = env.reset()
            actor.reset()
            ep_obs, ep_a, ep_r = [obs], [], []
        if step > cfg.learning_starts and step % cfg.train_freq == 0 and replay.episodes:
            loss = td_loss(q, target, replay.sample(rng, cfg.batch_size, cfg.seq_len), cfg.gamma, cfg.action_gap)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(q.parameters(), cfg.grad_clip)
            opt.step()
            with torch.no_grad():
                for p, pt in zip(q.parameters(), target.parameters()):
                    pt.lerp_(p, cfg.tau)
        if step % eval_every == 0 or step == cfg.total_steps:
            curve.append((step, evaluate(q, spec), round(time.time() - t0, 1)))
            if curve[-1][1] >= max(c[1] for c in curve):
                best = ({k: v.clone() for k, v in q.state_dict().items()}, step, curve[-1][1])
    env.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    q.load_state_dict(best[0])
    meta = {"env": env_id, "seed": seed, "train_steps": cfg.total_steps, "best_step": best[1],
            "best_eval": best[2], "final_eval": curve[-1][1], "trainer": "recurrent double DQN",
            "config": asdict(cfg)}
    save_policy(q, out, meta)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "eval_return", "wall_s"])
        w.writerows(curve)
    return {"curve": curve, **meta}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="CartPole-V")
    p.add_argument("--cell", default="grsn", choices=CELLS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-steps", type=int, default=Config.total_steps)
    p.add_argument("--eval-every", type=int, default=1_000)
    p.add_argument("-o", "--out", type=Path, required=True)
    args = p.parse_args()
    res = train(args.env, args.cell, args.seed, args.out, Config(total_steps=args.total_steps), args.eval_every)
    print(f"{args.env} {args.cell} seed {args.seed}: best eval {res['best_eval']:.1f} at step {res['best_step']}, "
          f"final {res['final_eval']:.1f} -> {args.out}")


if __name__ == "__main__":
    main()
