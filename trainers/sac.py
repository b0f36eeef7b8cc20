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
10 seeded episodes; the best-evaluated actor is the checkpoint, with the critic and the
entropy temperature of that moment kept beside it (training-only entries), the curve
`<out>.csv`. Episode k of a run resets the env with `lavaloop.rollout.training_seed(seed, k)`.

Resumable: at the first episode end after every `--save-every` env steps, the whole training
state (networks, optimizers, replay, random streams, curve) goes to `<out>.resume.pt`
(tensors and JSON); the same command continues from it.

Quantization-aware fine-tuning continues a trained policy and its critic with the actor's
weights rounded to the chip's mantissas in every forward pass (as
`lavaloop.trainers.recurrent`; `Config.finetune`: 10k env steps, no random warm-up, lr 1e-4):

    python -m lavaloop.trainers.sac --env Pendulum-V --init-from grsn_s0.pt --weight-bits 8 \
        -o grsn_qat_s0.pt
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
from lavaloop.errors import LavaloopError
from lavaloop.rollout import training_seed
from lavaloop.trainers.recurrent import Actor, EvalCurve, SequenceReplay, evaluate, load_resume, save_resume

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

    @classmethod
    def finetune(cls, total_steps: int = 10_000, gamma: float = 0.99) -> Config:
        """Continuing a trained actor and critic: no random warm-up, a smaller step size."""
        return cls(total_steps=total_steps, learning_starts=0, lr=1e-4, gamma=gamma)


class Temperature(torch.nn.Module):
    """SAC's entropy temperature alpha = exp(log_alpha), a module so that it is saved like the networks."""

    def __init__(self):
        super().__init__()
        self.log_alpha = torch.nn.Parameter(torch.zeros(1))


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
        self.temperature = Temperature()
        self.log_alpha = self.temperature.log_alpha
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

    MODULES = ("actor", "critic", "target", "temperature")
    OPTIMIZERS = ("opt_actor", "opt_critic", "opt_alpha")

    def state(self) -> dict:
        return {name: getattr(self, name).state_dict() for name in self.MODULES + self.OPTIMIZERS}

    def load_state(self, state: dict) -> None:
        for name in self.MODULES + self.OPTIMIZERS:
            getattr(self, name).load_state_dict(state[name])


def random_action(cfg: PolicyConfig, rng: np.random.Generator):
    return rng.uniform(-1, 1, cfg.n_actions).astype(np.float32) if cfg.continuous else int(rng.integers(cfg.n_actions))


def initial_sac(pcfg: PolicyConfig, cfg: Config, env_id: str, weight_bits: int | None,
                init_from: Path | None) -> tuple[SAC, dict]:
    """A fresh SAC for `pcfg`, or the actor, critic and temperature of checkpoint `init_from`."""
    if init_from is None:
        return SAC(dataclasses.replace(pcfg, weight_bits=weight_bits), cfg), {}
    from lavaloop.conversion.grsn import load_policy

    src, meta, _ = load_policy(init_from)
    if meta.get("env") != env_id:
        raise ValueError(f"{init_from} was trained on {meta.get('env')}, not {env_id}")
    saved = torch.load(init_from, map_location="cpu", weights_only=True)
    if "critic" not in saved or "temperature" not in saved:
        raise ValueError(f"{init_from} keeps no critic: fine-tuning needs a checkpoint written by this trainer")
    sac = SAC(dataclasses.replace(src.cfg, weight_bits=weight_bits), cfg)
    sac.actor.load_state_dict(src.state_dict())
    for name in ("critic", "target"):
        getattr(sac, name).load_state_dict(saved["critic"])
    sac.temperature.load_state_dict(saved["temperature"])
    return sac, {"init_from": Path(init_from).name, "init_best_eval": meta.get("best_eval")}


def train(env_id: str, cell: str, seed: int, out: Path, cfg: Config, eval_every: int = 1_000,
          progress: bool = True, weight_bits: int | None = None, init_from: Path | None = None,
          save_every: int = 2_000) -> dict:
    """Train (or continue, or fine-tune) one run; returns the run's summary (also in the checkpoint's meta)."""
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
    sac, origin = initial_sac(pcfg, cfg, env_id, weight_bits, init_from)
    pcfg = sac.cfg
    replay, actor = SequenceReplay(pcfg.n_actions, continuous), Actor(sac.actor)
    curve, stats = EvalCurve(), {}
    companions = {"critic": sac.critic, "temperature": sac.temperature}
    resume = out.with_suffix(".resume.pt")
    identity = {"config": asdict(cfg), "cell": pcfg.cell, "seed": seed, "origin": origin,
                "weight_bits": weight_bits}
    step = episode = 0
    wall = 0.0
    if resume.exists():
        nets, c = load_resume(resume, replay, curve, rng, identity)
        sac.load_state(nets)
        step, episode, wall = c["step"], c["episode"], c["wall"]
    elif init_from is not None:     # the loaded policy (its weights rounded, if quantization-aware) competes
        curve.record(0, evaluate(sac.actor, spec), 0.0, sac.actor, companions)
    t0, last_save = time.time() - wall, step

    obs, _ = env.reset(seed=training_seed(seed, episode))
    actor.reset()
    ep_obs, ep_a, ep_r = [obs], [], []
    bar = tqdm(total=cfg.total_steps, initial=step, desc=f"{env_id} {pcfg.cell} s{seed} SAC", disable=not progress)
    try:
        while step < cfg.total_steps:
            step += 1
            bar.update(1)
            values = actor.values(obs)
            a = random_action(pcfg, rng) if step <= cfg.learning_starts else sac.explore(values, rng)
            obs, r, term, trunc, _ = env.step(a)
            actor.observe(a, r)
            ep_obs.append(obs), ep_a.append(a), ep_r.append(r)
            if term or trunc:
                replay.add(np.stack(ep_obs), np.asarray(ep_a), np.asarray(ep_r), term)
                bar.set_postfix(ret=f"{sum(ep_r):.0f}", **{k: f"{v:.3g}" for k, v in stats.items()})
                episode += 1
            if step > cfg.learning_starts and step % cfg.train_freq == 0 and replay.episodes:
                stats = sac.update(replay.sample(rng, cfg.batch_size, cfg.seq_len))
            if step % eval_every == 0 or step == cfg.total_steps:
                curve.record(step, evaluate(sac.actor, spec), time.time() - t0, sac.actor, companions)
            if term or trunc:
                if step - last_save >= save_every and step < cfg.total_steps:
                    save_resume(resume, sac.state(), replay, curve, {**identity, "step": step, "episode": episode,
                                                                     "wall": time.time() - t0}, rng)
                    last_save = step
                obs, _ = env.reset(seed=training_seed(seed, episode))
                actor.reset()
                ep_obs, ep_a, ep_r = [obs], [], []
    finally:
        bar.close()
        env.close()
    res = curve.save(sac.actor, out, {"env": env_id, "seed": seed, "train_steps": cfg.total_steps,
                                      "trainer": "recurrent SAC" if continuous else "recurrent SAC-discrete",
                                      "config": asdict(cfg), "wall_s": round(time.time() - t0, 1), **origin})
    resume.unlink(missing_ok=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="Pendulum-V")
    p.add_argument("--cell", default="grsn", choices=CELLS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-steps", type=int, help="env steps (default 20k; 10k when fine-tuning)")
    p.add_argument("--gamma", type=float, default=Config.gamma)
    p.add_argument("--eval-every", type=int, default=1_000)
    p.add_argument("--save-every", type=int, default=2_000, help="env steps between resume points")
    p.add_argument("--weight-bits", type=int, help="quantization-aware training with this weight mantissa width")
    p.add_argument("--init-from", type=Path, help="continue this trained policy and its critic (Config.finetune)")
    p.add_argument("-o", "--out", type=Path, required=True)
    args = p.parse_args()
    cfg = (Config.finetune(args.total_steps or 10_000, args.gamma) if args.init_from
           else Config(total_steps=args.total_steps or Config.total_steps, gamma=args.gamma))
    try:
        res = train(args.env, args.cell, args.seed, args.out, cfg, args.eval_every, weight_bits=args.weight_bits,
                    init_from=args.init_from, save_every=args.save_every)
    except (LavaloopError, ValueError) as exc:
        p.error(str(exc))
    print(f"{args.env} {args.cell} seed {args.seed} (SAC): best eval {res['best_eval']:.1f} at step "
          f"{res['best_step']}, final {res['final_eval']:.1f} -> {args.out}")


if __name__ == "__main__":
    main()
