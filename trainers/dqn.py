"""Train a DQN on a classic-control task (CleanRL-style, single file, seeded, resumable).

    python -m lavaloop.trainers.dqn --env CartPole-v1 --seed 0 -o checkpoints/cartpole_dqn.pt

Hyper-parameters default to the rl-baselines3-zoo DQN settings for each environment.
Every `--eval-every` steps the greedy policy is evaluated on 10 seeded episodes; the best
network is written to `-o` as a plain state dict (`network.N.weight`, CleanRL's layout),
the evaluations to `*.eval.csv` (step, mean return). The full training state is saved
beside it (`*.state.pt`) and picked up again on restart.
"""
from __future__ import annotations

import argparse
import functools
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lavaloop import rollout
from lavaloop.atomic import atomic_path
from lavaloop.conversion.models.qnet import QNetwork
from lavaloop.envs import EnvSpec, make_env, parse_env_param
from lavaloop.rollout import epsilon_greedy


@dataclass
class Config:
    total_steps: int = 50_000
    lr: float = 2.3e-3
    buffer_size: int = 100_000
    batch_size: int = 64
    learning_starts: int = 1_000
    gamma: float = 0.99
    target_update: int = 10
    train_freq: int = 256
    gradient_steps: int = 128
    exploration_fraction: float = 0.16
    final_eps: float = 0.04
    hidden: tuple = (256, 256)
    action_gap: float = 0.0      # advantage learning (Bellemare et al. 2016); 0 = plain DQN


PRESETS = {
    "CartPole-v1": Config(total_steps=100_000, lr=5e-4, buffer_size=50_000, batch_size=64,
                          learning_starts=1_000, target_update=500, train_freq=4, gradient_steps=1,
                          exploration_fraction=0.2, final_eps=0.02),
    "Acrobot-v1": Config(total_steps=100_000, lr=6.3e-4, buffer_size=50_000, batch_size=128,
                         learning_starts=0, target_update=250, train_freq=4, gradient_steps=-1,
                         exploration_fraction=0.12, final_eps=0.1),
}


def evaluate(q: QNetwork, spec: EnvSpec, episodes: int = 10, seed: int = 10_000) -> float:
    """Mean greedy return over `episodes` seeded episodes."""
    def greedy(_seed):
        return lambda obs: int(q.q_values(obs[None])[0].argmax())

    return float(np.mean(rollout.evaluate(functools.partial(make_env, spec), list(range(seed, seed + episodes)),
                                          greedy)))


def train(env_id: str, out: str, seed: int, cfg: Config, eval_every: int, physics: dict | None = None) -> float:
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    spec = EnvSpec(env_id, physics=physics or {})
    env = make_env(spec)
    obs_dim, n_actions = env.observation_space.shape[0], env.action_space.n
    q = QNetwork(obs_dim, n_actions, cfg.hidden)
    target = QNetwork(obs_dim, n_actions, cfg.hidden)
    target.load_state_dict(q.state_dict())
    opt = torch.optim.Adam(q.parameters(), lr=cfg.lr)
    buf = {"obs": np.zeros((cfg.buffer_size, obs_dim), np.float32),
           "next_obs": np.zeros((cfg.buffer_size, obs_dim), np.float32),
           "action": np.zeros(cfg.buffer_size, np.int64),
           "reward": np.zeros(cfg.buffer_size, np.float32),
           "done": np.zeros(cfg.buffer_size, np.float32)}
    start, best, episode = 0, -np.inf, 0
    state_path, eval_path = out + ".state.pt", out + ".eval.csv"
    evals = ["step,mean_return,wall_s"]
    if os.path.exists(eval_path):
        evals = open(eval_path).read().splitlines()
    if os.path.exists(state_path):
        st = torch.load(state_path, weights_only=True)
        q.load_state_dict(st["q"])
        target.load_state_dict(st["target"])
        opt.load_state_dict(st["opt"])
        for k in buf:
            buf[k] = st["buf"][k].numpy()
        start, best, episode = st["step"], st["best"], st["episode"]
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        print(f"resumed from {state_path} at step {start}")
    obs, _ = env.reset(seed=seed + episode)
    t0 = time.time()
    bar = tqdm(range(start, cfg.total_steps), initial=start, total=cfg.total_steps, desc=env_id)
    for step in bar:
        eps = max(cfg.final_eps, 1 - (1 - cfg.final_eps) * step / (cfg.exploration_fraction * cfg.total_steps))
        _, action = epsilon_greedy(rng, q.q_values(obs[None])[0], eps)
        next_obs, r, term, trunc, _ = env.step(action)
        i = step % cfg.buffer_size
        buf["obs"][i], buf["next_obs"][i], buf["action"][i] = obs, next_obs, action
        buf["reward"][i], buf["done"][i] = r, float(term)
        obs = next_obs
        if term or trunc:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
        if step >= cfg.learning_starts and (step + 1) % cfg.train_freq == 0:
            n_grad = cfg.train_freq if cfg.gradient_steps < 0 else cfg.gradient_steps
            for _ in range(n_grad):
                idx = rng.integers(min(step + 1, cfg.buffer_size), size=cfg.batch_size)
                b = {k: torch.as_tensor(v[idx]) for k, v in buf.items()}
                with torch.no_grad():
                    y = b["reward"] + cfg.gamma * (1 - b["done"]) * target(b["next_obs"]).max(1).values
                    if cfg.action_gap:  # gap-increasing operator: same optimal policy, wider gaps
                        q_t = target(b["obs"])
                        y -= cfg.action_gap * (q_t.max(1).values - q_t.gather(1, b["action"][:, None]).squeeze(1))
                pred = q(b["obs"]).gather(1, b["action"][:, None]).squeeze(1)
                loss = F.smooth_l1_loss(pred, y)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(q.parameters(), 10.0)
                opt.step()
        if (step + 1) % cfg.target_update == 0:
            target.load_state_dict(q.state_dict())
        if (step + 1) % eval_every == 0:
            score = evaluate(q, spec)
            bar.set_postfix(eval=f"{score:.1f}", best=f"{best:.1f}", eps=f"{eps:.2f}")
            tqdm.write(f"step {step + 1}: eval return {score:.1f} ({time.time() - t0:.0f}s)")
            evals = [line for line in evals if not line.startswith(f"{step + 1},")]
            evals.append(f"{step + 1},{score:.2f},{time.time() - t0:.0f}")
            with atomic_path(eval_path) as tmp:
                tmp.write_text("\n".join(evals) + "\n")
            if score >= best:
                best = score
                with atomic_path(out) as tmp:
                    torch.save(q.state_dict(), tmp)
            with atomic_path(state_path) as tmp:
                torch.save({"q": q.state_dict(), "target": target.state_dict(), "opt": opt.state_dict(),
                            "buf": {k: torch.as_tensor(v) for k, v in buf.items()}, "step": step + 1,
                            "best": best, "episode": episode, "rng": rng.bit_generator.state,
                            "torch_rng": torch.get_rng_state()}, tmp)
    env.close()
    print(f"best greedy eval return {best:.1f}; saved {out}")
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="CartPole-v1", choices=sorted(PRESETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-steps", type=int)
    p.add_argument("--gamma", type=float)
    p.add_argument("--action-gap", type=float, help="advantage-learning alpha (0 = plain DQN)")
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--env-param", type=parse_env_param, action="append", metavar="NAME=VALUE", default=[],
                   help="train on a changed environment, e.g. length=1.0 (lavaloop.envs.set_physics)")
    p.add_argument("-o", "--out", required=True)
    args = p.parse_args()
    cfg = PRESETS[args.env]
    overrides = {k: v for k, v in (("total_steps", args.total_steps), ("gamma", args.gamma),
                                                 ("action_gap", args.action_gap)) if v}
    cfg = Config(**{**asdict(cfg), **overrides})
    train(args.env, args.out, args.seed, cfg, args.eval_every, dict(args.env_param))


if __name__ == "__main__":
    main()
