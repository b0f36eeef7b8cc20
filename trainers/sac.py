"""Train a recurrent policy with SAC on a POMDP task: continuous (Pendulum-V) or SAC-discrete.

    python -m lavaloop.trainers.sac --env Pendulum-V --cell grsn --seed 0 \\
        -o checkpoints/grsn/pendulum_v_grsn_s0.pt

The GRSN paper's trainer (the pomdp-baselines scaffold of Ni et al. 2022), CleanRL style:
a recurrent actor and a separate recurrent critic trunk with twin Q heads (same cell and
sizes), a sequence replay of whole episodes, 32 chunks of 64 steps per update with BPTT
(state zero at each chunk's start), Adam 3e-4, soft target updates (tau 0.005) and
automatic entropy tuning.

* Continuous actions are a tanh-squashed Gaussian in [-1, 1] per dimension (`make_env`
  rescales a Box action space to [-1, 1]); the critic heads also take the action; target
  entropy -dim(A).
* SAC-discrete (Christodoulou 2019) for discrete tasks: a softmax actor, one Q per action,
  exact expectations over actions; target entropy `target_entropy_scale` x log |A|.

The actor is the deployable policy (a `RecurrentNet`, saved with `save_policy`); its
deterministic action is tanh(mean), or the argmax logit. Every `--eval-every` steps it plays
10 seeded episodes; the best-evaluated actor is the checkpoint, the curve `<out>.csv`.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lavaloop.conversion.models.grsn import CELLS, PolicyConfig, RecurrentEncoder, RecurrentNet, mlp
from lavaloop.envs import EnvSpec, make_env
from lavaloop.trainers.recurrent import Actor, EvalCurve, SequenceReplay, evaluate

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass
class Config:
    total_steps: int = 20_000
    learning_starts: int = 1_000    # uniform random actions until then
    train_freq: int = 2             # env steps per gradient update
    batch_size: int = 32
    seq_len: int = 64
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    target_entropy_scale: float = 0.5
    grad_clip: float = 10.0


class TwinCritic(RecurrentEncoder):
    """The critic: its own recurrent trunk and two Q heads (the action joins continuous heads)."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__(dataclasses.replace(cfg, weight_bits=None))
        n_in = self.n_features + (cfg.n_actions if cfg.continuous else 0)
        n_out = 1 if cfg.continuous else cfg.n_actions
        self.q1, self.q2 = mlp(n_in, cfg.head, n_out), mlp(n_in, cfg.head, n_out)

    def q(self, z: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        """min(Q1, Q2) and both Qs, stacked: (3, ...); continuous heads take `action`."""
        x = z if action is None else torch.cat([z, action], dim=-1)
        q1, q2 = self.q1(x), self.q2(x)
        if action is not None:
            q1, q2 = q1.squeeze(-1), q2.squeeze(-1)
        return torch.stack([torch.minimum(q1, q2), q1, q2])


def squashed_gaussian(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A sampled action in [-1, 1] and its log-probability, from the actor's (mean, log std)."""
    mean, log_std = out.chunk(2, dim=-1)
    log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
    std = log_std.exp()
    x = mean + std * torch.randn_like(mean)
    a = torch.tanh(x)
    logp = (-0.5 * ((x - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
            - torch.log(1 - a ** 2 + 1e-6))
    return a, logp.sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum()


class SAC:
    """Actor, critic, target critic, entropy temperature and their optimizers."""

    def __init__(self, cfg: PolicyConfig, train_cfg: Config):
        self.cfg, self.tc = cfg, train_cfg
        self.actor, self.critic, self.target = RecurrentNet(cfg), TwinCritic(cfg), TwinCritic(cfg)
        self.target.load_state_dict(self.critic.state_dict())
        self.log_alpha = torch.zeros(1, requires_grad=True)
        self.target_entropy = (-float(cfg.n_actions) if cfg.continuous
                               else train_cfg.target_entropy_scale * math.log(cfg.n_actions))
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=train_cfg.lr)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=train_cfg.lr)
        self.opt_alpha = torch.optim.Adam([self.log_alpha], lr=train_cfg.lr)

    def update(self, b: dict) -> dict[str, float]:
        """One gradient step of critic, actor and temperature on a batch of chunks."""
        tc, n, mask = self.tc, b["r"].shape[1], b["mask"]
        seq = (b["obs"], b["prev_a"], b["prev_r"])
        out, _, _ = self.actor(*seq, self.actor.zero_state(n))                  # (L+1, B, n_outputs)
        z, _, _ = self.critic.features(*seq, self.critic.zero_state(n))
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            zt, _, _ = self.target.features(*seq, self.target.zero_state(n))
            if self.cfg.continuous:
                a_next, logp_next = squashed_gaussian(out[1:])
                v_next = self.target.q(zt[1:], a_next)[0] - alpha * logp_next
            else:
                logp_next = F.log_softmax(out[1:], dim=-1)
                v_next = (logp_next.exp() * (self.target.q(zt[1:])[0] - alpha * logp_next)).sum(-1)
            y = b["r"] + tc.gamma * (1 - b["done"]) * v_next
        if self.cfg.continuous:
            q_taken = self.critic.q(z[:-1], b["a"])[1:]
        else:
            q_taken = self.critic.q(z[:-1])[1:].gather(-1, b["a"][None, ..., None].expand(2, -1, -1, 1)).squeeze(-1)
        critic_loss = masked_mean(((q_taken - y) ** 2).sum(0), mask)
        self.opt_critic.zero_grad()
        critic_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.critic.parameters(), tc.grad_clip)
        self.opt_critic.step()

        if self.cfg.continuous:
            a_pi, logp = squashed_gaussian(out[:-1])
            actor_loss = masked_mean(alpha * logp - self.critic.q(z[:-1].detach(), a_pi)[0], mask)
            entropy = -logp.detach()
        else:
            logp = F.log_softmax(out[:-1], dim=-1)
            q_min = self.critic.q(z[:-1].detach())[0].detach()
            actor_loss = masked_mean((logp.exp() * (alpha * logp - q_min)).sum(-1), mask)
            entropy = -(logp.exp() * logp).sum(-1).detach()
        self.opt_actor.zero_grad()
        actor_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.actor.parameters(), tc.grad_clip)
        self.opt_actor.step()

        alpha_loss = masked_mean(self.log_alpha * (entropy - self.target_entropy), mask)
        self.opt_alpha.zero_grad()
        alpha_loss.backward()
        self.opt_alpha.step()
        with torch.no_grad():
            for p, pt in zip(self.critic.parameters(), self.target.parameters()):
                pt.lerp_(p, tc.tau)
        return {"critic_loss": float(critic_loss), "actor_loss": float(actor_loss), "alpha": float(alpha),
                "entropy": float(masked_mean(entropy, mask))}

    @torch.no_grad()
    def explore(self, out: np.ndarray, rng: np.random.Generator):
        """A sampled action from the actor's output for one step."""
        if self.cfg.continuous:
            return squashed_gaussian(torch.as_tensor(out))[0].numpy()
        p = torch.softmax(torch.as_tensor(out, dtype=torch.float64), -1).numpy()
        return int(rng.choice(len(p), p=p / p.sum()))


def random_action(cfg: PolicyConfig, rng: np.random.Generator):
    return rng.uniform(-1, 1, cfg.n_actions).astype(np.float32) if cfg.continuous else int(rng.integers(cfg.n_actions))


def train(env_id: str, cell: str, seed: int, out: Path, cfg: Config, eval_every: int = 1_000,
          progress: bool = True) -> dict:
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    spec = EnvSpec.for_id(env_id)
    env = make_env(spec)
    space = env.action_space
    continuous = not hasattr(space, "n")
    pcfg = PolicyConfig(obs_dim=int(np.prod(env.observation_space.shape)),
                        n_actions=int(np.prod(space.shape)) if continuous else int(space.n),
                        cell=cell, continuous=continuous)
    sac = SAC(pcfg, cfg)
    replay, actor = SequenceReplay(pcfg.n_actions, continuous), Actor(sac.actor)
    curve, stats, t0 = EvalCurve(), {}, time.time()

    obs, _ = env.reset(seed=seed)
    actor.reset()
    ep_obs, ep_a, ep_r = [obs], [], []
    bar = tqdm(range(1, cfg.total_steps + 1), desc=f"{env_id} {cell} s{seed} SAC", disable=not progress)
    for step in bar:
        values = actor.values(obs)
        a = random_action(pcfg, rng) if step <= cfg.learning_starts else sac.explore(values, rng)
        obs, r, term, trunc, _ = env.step(a)
        actor.observe(a, r)
        ep_obs.append(obs), ep_a.append(a), ep_r.append(r)
        if term or trunc:
            replay.add(np.stack(ep_obs), np.asarray(ep_a), np.asarray(ep_r), term)
            bar.set_postfix(ret=f"{sum(ep_r):.0f}", **{k: f"{v:.3g}" for k, v in stats.items()})
            obs, _ = env.reset()
            actor.reset()
            ep_obs, ep_a, ep_r = [obs], [], []
        if step > cfg.learning_starts and step % cfg.train_freq == 0 and replay.episodes:
            stats = sac.update(replay.sample(rng, cfg.batch_size, cfg.seq_len))
        if step % eval_every == 0 or step == cfg.total_steps:
            curve.record(step, evaluate(sac.actor, spec), time.time() - t0, sac.actor)
    env.close()
    return curve.save(sac.actor, out, {"env": env_id, "seed": seed, "train_steps": cfg.total_steps,
                                       "trainer": "recurrent SAC" if continuous else "recurrent SAC-discrete",
                                       "config": asdict(cfg)})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="Pendulum-V")
    p.add_argument("--cell", default="grsn", choices=CELLS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-steps", type=int, default=Config.total_steps)
    p.add_argument("--gamma", type=float, default=Config.gamma)
    p.add_argument("--eval-every", type=int, default=1_000)
    p.add_argument("-o", "--out", type=Path, required=True)
    args = p.parse_args()
    res = train(args.env, args.cell, args.seed, args.out,
                Config(total_steps=args.total_steps, gamma=args.gamma), args.eval_every)
    print(f"{args.env} {args.cell} seed {args.seed} (SAC): best eval {res['best_eval']:.1f} at step "
          f"{res['best_step']}, final {res['final_eval']:.1f} -> {args.out}")


if __name__ == "__main__":
    main()
