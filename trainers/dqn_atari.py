"""Train a Nature DQN on an Atari game (CleanRL `dqn_atari` style: one file, seeded, resumable).

    python -m lavaloop.trainers.dqn_atari --env ALE/Pong-v5 --run runs/dqn_pong \\
        -o checkpoints/pong_dqn.pt [--threads 2]
    python -m lavaloop.trainers.dqn_atari --evaluate checkpoints/pong_dqn.pt --eval-episodes 10

Standard Atari DQN settings (Mnih et al. 2015, with Adam and the Huber loss as in
stable-baselines3 / CleanRL): replay 100k, batch 32, lr 1e-4, gamma 0.99, a gradient step
every 4 agent steps, target network copied every 1000 steps, rewards clipped to their
sign in training, a lost life ending the TD target (not the game), epsilon annealed
1 -> 0.01. The schedule is shortened for a CPU
budget: learning starts at 10k steps and epsilon reaches 0.01 at 250k steps.

The env is the artifact's: `lavaloop.envs` AtariPreprocessing (no-op reset, frame
skip 4 with max-pool, 84x84 grayscale, 4-frame stack, full games). Every `--eval-every`
steps the policy plays `--eval-episodes` games with epsilon 0.05 (the paper's evaluation);
the best network goes to `-o` as a plain state dict (`network.N.weight`, CleanRL's layout).
The run folder keeps TensorBoard logs, `eval.csv` and the training state; a restarted
command resumes from it. The state has a slim form (`--export-state FILE`: networks and
counters, no optimizer moments, no replay) small enough to commit: resuming from it
refills the replay buffer for `learning_starts` steps with the current policy first.
"""
from __future__ import annotations

import argparse
import csv
import functools
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from lavaloop import rollout
from lavaloop.atomic import atomic_path
from lavaloop.conversion.models.qnet import NatureDQN
from lavaloop.envs import EnvSpec, make_env
from lavaloop.rollout import epsilon_greedy


@dataclass
class Config:
    total_steps: int = 2_000_000
    buffer_size: int = 100_000
    batch_size: int = 32
    lr: float = 1e-4
    gamma: float = 0.99
    learning_starts: int = 10_000
    train_freq: int = 4
    target_update: int = 1_000
    start_eps: float = 1.0
    final_eps: float = 0.01
    eps_steps: int = 250_000
    eval_eps: float = 0.05
    max_episode_steps: int = 18_000


class FrameReplay:
    """Replay of stacked-frame transitions that stores each 84x84 frame once.

    Slot i holds the newest frame of obs_i and of next_obs_i; obs_i's older frames are the
    slots before it, clamped at the episode start (FrameStackObservation pads with the
    reset frame), so a stack is rebuilt from `frames` and the steps since reset.
    """

    def __init__(self, capacity: int, stack: int, size: int):
        self.capacity, self.stack = capacity, stack
        self.frames = np.zeros((capacity, size, size), np.uint8)
        self.next_frames = np.zeros((capacity, size, size), np.uint8)
        self.since_reset = np.zeros(capacity, np.int64)
        self.action = np.zeros(capacity, np.int64)
        self.reward = np.zeros(capacity, np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.pos, self.full = 0, False

    def add(self, obs, next_obs, action, reward, done, since_reset) -> None:
        i = self.pos
        self.frames[i], self.next_frames[i] = obs[-1], next_obs[-1]
        self.since_reset[i] = min(since_reset, self.stack - 1)
        self.action[i], self.reward[i], self.done[i] = action, reward, done
        self.pos = (i + 1) % self.capacity
        self.full = self.full or self.pos == 0

    def __len__(self) -> int:
        return self.capacity if self.full else self.pos

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, torch.Tensor]:
        if self.full:  # the oldest slots lost the frames before them to newer writes
            idx = (self.pos + self.stack - 1 + rng.integers(self.capacity - self.stack + 1, size=n)) % self.capacity
        else:
            idx = rng.integers(self.pos, size=n)
        back = np.minimum(np.arange(self.stack - 1, -1, -1)[None], self.since_reset[idx, None])
        obs = self.frames[(idx[:, None] - back) % self.capacity]
        next_obs = np.concatenate([obs[:, 1:], self.next_frames[idx, None]], axis=1)
        return {"obs": torch.as_tensor(obs), "next_obs": torch.as_tensor(next_obs),
                "action": torch.as_tensor(self.action[idx]), "reward": torch.as_tensor(self.reward[idx]),
                "done": torch.as_tensor(self.done[idx])}


def epsilon_at(cfg: Config, step: int) -> float:
    frac = min(step / cfg.eps_steps, 1.0)
    return cfg.start_eps + frac * (cfg.final_eps - cfg.start_eps)


def act(q: NatureDQN, obs: np.ndarray, eps: float, rng: np.random.Generator) -> int:
    """Epsilon-greedy over the network's Q-values (lavaloop.rollout.epsilon_greedy)."""
    with torch.no_grad():
        return epsilon_greedy(rng, q(torch.as_tensor(obs[None]))[0].numpy(), eps)[1]


def evaluate(q: NatureDQN, spec: EnvSpec, episodes: int, eps: float, seed: int = 10_000) -> list[float]:
    """Raw game returns of `episodes` full games with epsilon-greedy actions (one random
    stream for all of them)."""
    rng = np.random.default_rng(seed)
    return rollout.evaluate(functools.partial(make_env, spec), list(range(seed, seed + episodes)),
                            lambda _seed: lambda obs: act(q, obs, eps, rng)).tolist()


def save_atomic(obj, path: Path) -> None:
    """torch.save, atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def train(env_id: str, run: Path, out: Path, seed: int, cfg: Config, eval_every: int,
          eval_episodes: int, save_every: int, resume_from: Path | None = None, threads: int = 1) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    spec = EnvSpec.for_id(env_id, max_episode_steps=cfg.max_episode_steps)
    env = make_env(spec)
    n_actions = int(env.action_space.n)
    q, target = NatureDQN(n_actions), NatureDQN(n_actions)
    opt = torch.optim.Adam(q.parameters(), lr=cfg.lr, eps=1.5e-4)
    replay = FrameReplay(cfg.buffer_size, spec.atari.frame_stack, spec.atari.screen_size)
    run.mkdir(parents=True, exist_ok=True)
    state_path = run / "state.pt"
    step, episode, best, refill_until = 0, 0, -np.inf, cfg.learning_starts
    source = state_path if state_path.exists() else resume_from
    if source is not None:
        st = torch.load(source, map_location="cpu", weights_only=True)
        q.load_state_dict(st["q"])
        target.load_state_dict(st["target"])
        if "opt" in st:
            opt.load_state_dict(st["opt"])
        step, episode, best = int(st["step"]), int(st["episode"]), float(st["best"])
        rng = np.random.default_rng([seed, step])      # the replay is not kept: new streams
        torch.manual_seed(seed + step)
        refill_until = step + cfg.learning_starts
        print(f"resumed from {source} at step {step}; refilling the replay until step {refill_until}")
    writer = SummaryWriter(str(run / "tb"))
    eval_log = run / "eval.csv"
    obs, info = env.reset(seed=seed + episode)
    lives = info.get("lives", 0)
    since_reset, ep_return, ep_len = 0, 0.0, 0
    t0, losses = time.time(), []
    bar = tqdm(range(step, cfg.total_steps), initial=step, total=cfg.total_steps, desc=env_id, unit="step")
    for step in bar:
        eps = epsilon_at(cfg, step)
        action = act(q, obs, eps, rng)
        next_obs, r, term, trunc, info = env.step(action)
        life_lost, lives = info.get("lives", 0) < lives, info.get("lives", 0)
        replay.add(obs, next_obs, action, np.sign(r), float(term or life_lost), since_reset)
        obs, since_reset = next_obs, since_reset + 1
        ep_return, ep_len = ep_return + float(r), ep_len + 1
        if term or trunc:
            writer.add_scalar("charts/episodic_return", ep_return, step)
            writer.add_scalar("charts/episodic_length", ep_len, step)
            bar.set_postfix(ret=f"{ep_return:.0f}", eps=f"{eps:.2f}", best=f"{best:.1f}")
            episode += 1
            obs, info = env.reset(seed=seed + episode)
            lives = info.get("lives", 0)
            since_reset, ep_return, ep_len = 0, 0.0, 0
        if step >= refill_until and step % cfg.train_freq == 0:
            b = replay.sample(rng, cfg.batch_size)
            with torch.no_grad():
                y = b["reward"] + cfg.gamma * (1 - b["done"]) * target(b["next_obs"]).max(1).values
            pred = q(b["obs"]).gather(1, b["action"][:, None]).squeeze(1)
            loss = F.smooth_l1_loss(pred, y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(q.parameters(), 10.0)
            opt.step()
            losses.append(float(loss))
        if (step + 1) % cfg.target_update == 0:
            target.load_state_dict(q.state_dict())
        if (step + 1) % 1000 == 0 and losses:
            writer.add_scalar("losses/td_loss", float(np.mean(losses)), step)
            writer.add_scalar("charts/epsilon", eps, step)
            writer.add_scalar("charts/SPS", (step + 1 - bar.initial) / (time.time() - t0), step)
            losses.clear()
        if (step + 1) % eval_every == 0:
            scores = evaluate(q, spec, eval_episodes, cfg.eval_eps)
            score = float(np.mean(scores))
            writer.add_scalar("eval/mean_return", score, step)
            new = not eval_log.exists()
            with eval_log.open("a", newline="") as f:
                w = csv.writer(f)
                if new:
                    w.writerow(["step", "mean_return", "returns", "wall_s"])
                w.writerow([step + 1, score, " ".join(f"{s:.0f}" for s in scores), round(time.time() - t0)])
            tqdm.write(f"step {step + 1}: eval return {score:.1f} ({', '.join(f'{s:.0f}' for s in scores)})")
            if score >= best:
                best = score
                save_atomic(q.state_dict(), out)
        if (step + 1) % save_every == 0:
            save_atomic({"q": q.state_dict(), "target": target.state_dict(), "opt": opt.state_dict(),
                         "step": step + 1, "episode": episode, "best": best, "config": asdict(cfg),
                         "env": spec.to_dict()}, state_path)
    env.close()
    writer.close()
    print(f"best eval return {best:.1f}; saved {out}")


def export_state(run: Path, dest: Path) -> None:
    """The run's training state without optimizer moments (small enough to commit)."""
    st = torch.load(run / "state.pt", map_location="cpu", weights_only=True)
    st.pop("opt", None)
    save_atomic(st, dest)
    print(f"wrote {dest} (step {st['step']}, best eval {st['best']:.1f})")


def evaluate_checkpoint(path: Path, env_id: str, episodes: int, eps: float, seed: int) -> list[float]:
    """Raw game returns of a saved network (a state dict or a training state), printed."""
    st = torch.load(path, map_location="cpu", weights_only=True)
    sd = st.get("q", st)
    q = NatureDQN(sd["network.9.weight"].shape[0])
    q.load_state_dict(sd)
    returns = evaluate(q, EnvSpec.for_id(env_id, max_episode_steps=Config.max_episode_steps), episodes, eps, seed)
    print(f"{path}: mean return {np.mean(returns):.2f} +- {np.std(returns):.2f} over {episodes} games "
          f"(seeds {seed}..{seed + episodes - 1}, epsilon {eps}): {' '.join(f'{r:.0f}' for r in returns)}")
    return returns


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="ALE/Pong-v5")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--run", type=Path, help="run folder (logs, state; resumed if present)")
    p.add_argument("-o", "--out", type=Path, help="best network (plain state dict)")
    p.add_argument("--resume-from", type=Path, help="a slim state (see --export-state) when the run folder is new")
    p.add_argument("--total-steps", type=int, default=Config.total_steps)
    p.add_argument("--eval-every", type=int, default=50_000)
    p.add_argument("--eval-episodes", type=int, default=3)
    p.add_argument("--save-every", type=int, default=10_000, help="steps between training-state saves")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the gradient steps are most of the time)")
    p.add_argument("--export-state", type=Path, help="write the run's slim state here and exit")
    p.add_argument("--evaluate", type=Path, help="play --eval-episodes games with this network and exit")
    p.add_argument("--eval-seed", type=int, default=20_000, help="first game seed for --evaluate")
    args = p.parse_args()
    if args.evaluate:
        torch.set_num_threads(args.threads)
        evaluate_checkpoint(args.evaluate, args.env, args.eval_episodes, Config.eval_eps, args.eval_seed)
        return
    if args.run is None or (args.out is None and not args.export_state):
        p.error("--run is required, and -o/--out for training")
    if args.export_state:
        export_state(args.run, args.export_state)
        return
    cfg = Config(total_steps=args.total_steps)
    train(args.env, args.run, args.out, args.seed, cfg, args.eval_every, args.eval_episodes, args.save_every,
          args.resume_from, args.threads)


if __name__ == "__main__":
    main()
