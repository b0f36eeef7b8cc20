"""Train a recurrent Q-policy (GRSN, GRU, LIF, GRSN without TAP) on a POMDP task.

    python -m lavaloop.trainers.recurrent --env CartPole-V --cell grsn --seed 0 \\
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
tensors and JSON only). Episode k of a run resets the env with
`lavaloop.rollout.training_seed(seed, k)`.

Resumable: at the first episode end after every `--save-every` env steps, the whole training
state (networks, optimizer, replay, random streams, curve) goes to `<out>.resume.pt` (tensors
and JSON; `save_resume`); the same command continues from it.

Quantization-aware fine-tuning continues a trained GRSN policy with its weights rounded to
the chip's mantissas in every forward pass (`conversion.models.grsn.FakeQuantLinear`):

    python -m lavaloop.trainers.recurrent --env CartPole-V --init-from grsn_s0.pt \
        --weight-bits 8 -o grsn_qat_s0.pt

It runs `Config.finetune()` (5k env steps, epsilon 0.05, lr 1e-4; the loaded policy is
evaluated first and competes for best) and saves the rounded weights.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lavaloop import rollout
from lavaloop.atomic import atomic_path
from lavaloop.conversion.models.grsn import CELLS, PolicyConfig, RecurrentNet, action_input, greedy_action, save_policy
from lavaloop.envs import EnvSpec, make_env
from lavaloop.errors import LavaloopError
from lavaloop.rollout import epsilon_greedy, training_seed


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

    @classmethod
    def finetune(cls, total_steps: int = 5_000) -> Config:
        """Continuing a trained policy: short, little exploration, a smaller step size."""
        return cls(total_steps=total_steps, start_eps=0.05, final_eps=0.05, lr=1e-4)


class SequenceReplay:
    """Whole episodes; samples fixed-length chunks for truncated BPTT.

    Actions are indices (discrete) or vectors in [-1, 1] (`continuous`); each step's input
    holds the previous action (one-hot, or the vector) and the previous reward.
    """

    def __init__(self, n_actions: int, continuous: bool = False):
        self.n_actions, self.continuous = n_actions, continuous
        self.episodes: list[dict] = []
        self.lengths: list[int] = []

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: bool) -> None:
        """obs has one more row than actions/rewards (the final observation)."""
        prev_a = np.zeros((len(actions) + 1, self.n_actions), np.float32)
        if self.continuous:
            prev_a[1:] = actions
        else:
            prev_a[np.arange(1, len(actions) + 1), actions] = 1.0
        prev_r = np.concatenate([[0.0], rewards]).astype(np.float32)[:, None]
        done = np.zeros(len(actions), np.float32)
        done[-1] = float(terminated)
        self.episodes.append(dict(obs=obs.astype(np.float32), prev_a=prev_a, prev_r=prev_r,
                                  a=actions.astype(np.float32 if self.continuous else np.int64),
                                  r=rewards.astype(np.float32), done=done))
        self.lengths.append(len(actions))

    KEYS = ("obs", "prev_a", "prev_r", "a", "r", "done")

    def state(self) -> dict[str, torch.Tensor]:
        """The episodes as tensors (each key concatenated over episodes) plus their lengths."""
        out = {k: torch.from_numpy(np.concatenate([ep[k] for ep in self.episodes])) for k in self.KEYS}
        return {**out, "lengths": torch.as_tensor(self.lengths, dtype=torch.int64)} if self.episodes else {}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore `state()`'s episodes."""
        self.episodes, self.lengths = [], [int(n) for n in state.get("lengths", [])]
        offsets = {k: 0 for k in self.KEYS}
        for n in self.lengths:
            ep = {}
            for k in self.KEYS:
                rows = n + 1 if k in ("obs", "prev_a", "prev_r") else n
                ep[k] = state[k][offsets[k]: offsets[k] + rows].numpy()
                offsets[k] += rows
            self.episodes.append(ep)

    def sample(self, rng: np.random.Generator, batch: int, seq_len: int) -> dict[str, torch.Tensor]:
        """Chunks (time-major, padded to seq_len; `mask` marks real transitions)."""
        p = np.asarray(self.lengths, np.float64)
        idx = rng.choice(len(self.episodes), size=batch, p=p / p.sum())
        out = {k: np.zeros((seq_len + 1, batch, *shape), np.float32) for k, shape in
               (("obs", self.episodes[0]["obs"].shape[1:]), ("prev_a", (self.n_actions,)), ("prev_r", (1,)))}
        out.update({k: np.zeros((seq_len, batch), np.float32) for k in ("r", "done", "mask")})
        out["a"] = (np.zeros((seq_len, batch, self.n_actions), np.float32) if self.continuous
                    else np.zeros((seq_len, batch), np.int64))
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


def td_loss(q: RecurrentNet, target: RecurrentNet, batch: dict, gamma: float, action_gap: float = 0.0) -> torch.Tensor:
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
    """Runs a RecurrentNet step by step in an env, carrying its state."""

    def __init__(self, net: RecurrentNet):
        self.net, self.cfg = net, net.cfg

    def reset(self) -> None:
        self.state = self.net.zero_state(1)
        self.observe(None if self.cfg.continuous else -1, 0.0)

    @torch.no_grad()
    def values(self, obs: np.ndarray) -> np.ndarray:
        """The network's outputs for this step's observation (the state advances)."""
        o = torch.as_tensor(np.asarray(obs, np.float32)).view(1, 1, -1)
        out, self.state, _ = self.net(o, self.prev_a, self.prev_r, self.state)
        return out[0, 0].numpy()

    def observe(self, action, reward: float) -> None:
        self.prev_a = torch.as_tensor(action_input(self.cfg, action)).view(1, 1, -1)
        self.prev_r = torch.full((1, 1, 1), float(reward))


def episode_returns(net: RecurrentNet, spec: EnvSpec, seeds: list[int]) -> list[float]:
    """Returns of seeded episodes with the policy's deterministic (greedy) actions."""
    actor = Actor(net)

    def policy(_seed):
        actor.reset()
        return (lambda obs: greedy_action(net.cfg, actor.values(obs)),
                lambda obs, a, r, term, trunc: actor.observe(a, r))

    return rollout.evaluate(functools.partial(make_env, spec), seeds, policy).tolist()


def evaluate(q: RecurrentNet, spec: EnvSpec, episodes: int = 10, seed: int = 10_000) -> float:
    """Mean greedy return over seeded episodes."""
    return float(np.mean(episode_returns(q, spec, list(range(seed, seed + episodes)))))


class EvalCurve:
    """A run's evaluation curve; keeps the best-evaluated network (the later one on ties) and,
    with it, the state of its training companions (e.g. SAC's critic)."""

    def __init__(self):
        self.points: list[tuple[int, float, float]] = []
        self.best: tuple[dict, int, float] | None = None
        self.best_companions: dict[str, dict] = {}

    def record(self, step: int, score: float, wall_s: float, net: RecurrentNet,
               companions: dict[str, torch.nn.Module] | None = None) -> None:
        self.points.append((step, score, round(wall_s, 1)))
        if self.best is None or score >= self.best[2]:
            self.best = ({k: v.clone() for k, v in net.state_dict().items()}, step, score)
            self.best_companions = {name: {k: v.clone() for k, v in m.state_dict().items()}
                                    for name, m in (companions or {}).items()}

    def save(self, net: RecurrentNet, out: Path, meta: dict) -> dict:
        """The best network (weights snapped if quantization-aware) and its companions to `out`,
        the curve to `out`.csv."""
        net.load_state_dict(self.best[0])
        net.snap_weights()
        meta = {**meta, "best_step": self.best[1], "best_eval": self.best[2], "final_eval": self.points[-1][1]}
        out.parent.mkdir(parents=True, exist_ok=True)
        save_policy(net, out, meta, self.best_companions)
        self.write_csv(out.with_suffix(".csv"))
        return {"curve": self.points, **meta}

    def write_csv(self, path: Path) -> None:
        """The curve as CSV (step, eval_return, wall_s), written atomically."""
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "eval_return", "wall_s"])
            w.writerows(self.points)


def save_resume(path: Path, nets: dict[str, dict], replay: SequenceReplay, curve: EvalCurve, counters: dict,
                rng: np.random.Generator) -> None:
    """A run's whole training state, written atomically (tensors and JSON only).

    nets: the state dicts of its networks and optimizers; counters: JSON-able progress and the
    run's identity (checked by `load_resume`)."""
    best = None if curve.best is None else {"policy": curve.best[0], **curve.best_companions}
    counters = {**counters, "rng": rng.bit_generator.state, "curve": curve.points,
                "best": None if curve.best is None else curve.best[1:]}
    with atomic_path(path) as tmp:
        torch.save({"nets": nets, "torch_rng": torch.get_rng_state(), "replay": replay.state(),
                    "best": best, "counters": json.dumps(counters)}, tmp)


def load_resume(path: Path, replay: SequenceReplay, curve: EvalCurve, rng: np.random.Generator,
                expect: dict) -> tuple[dict[str, dict], dict]:
    """Restore `save_resume`'s replay, curve and random streams; returns (nets, counters).
    ValueError if the file belongs to another run (its identity differs from `expect`)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    counters = json.loads(saved["counters"])
    if any(counters.get(k) != v for k, v in expect.items()):
        raise ValueError(f"{path} belongs to another run (config, cell, seed or origin differ); "
                         "delete it to start over")
    torch.set_rng_state(saved["torch_rng"])
    replay.load_state(saved["replay"])
    rng.bit_generator.state = counters["rng"]
    curve.points = [tuple(p) for p in counters["curve"]]
    if saved["best"] is not None:
        best = dict(saved["best"])
        curve.best = (best.pop("policy"), *counters["best"])
        curve.best_companions = best
    return saved["nets"] if "nets" in saved else saved["sac"], counters   # "sac": files of the first SAC runs


def initial_policy(env: gym.Env, env_id: str, cell: str | None, weight_bits: int | None,
                   init_from: Path | None, mismatch_sigma: float = 0.0) -> tuple[RecurrentNet, dict]:
    """A fresh policy for `env`, or the policy of checkpoint `init_from` (trained on `env_id`;
    `cell` None keeps its cell)."""
    if init_from is None:
        return RecurrentNet(PolicyConfig(obs_dim=int(np.prod(env.observation_space.shape)),
                                          n_actions=int(env.action_space.n), cell=cell or "grsn",
                                          weight_bits=weight_bits, mismatch_sigma=mismatch_sigma)), {}
    from lavaloop.conversion.grsn import load_policy

    src, meta, _ = load_policy(init_from)
    if meta.get("env") != env_id:
        raise ValueError(f"{init_from} was trained on {meta.get('env')}, not {env_id}")
    cell = cell or src.cfg.cell
    if cell != src.cfg.cell and {cell, src.cfg.cell} != {"grsn", "grsn_chip"}:
        raise ValueError(f"{init_from} holds a {src.cfg.cell} policy; it can be fine-tuned as {src.cfg.cell} "
                         "(or, a GRSN policy, as grsn_chip)")
    q = RecurrentNet(dataclasses.replace(src.cfg, weight_bits=weight_bits, cell=cell, mismatch_sigma=mismatch_sigma))
    q.load_state_dict(src.state_dict())
    return q, {"init_from": Path(init_from).name, "init_best_eval": meta.get("best_eval")}


def train(env_id: str, cell: str | None, seed: int, out: Path, cfg: Config, eval_every: int = 1_000,
          progress: bool = True, weight_bits: int | None = None, init_from: Path | None = None,
          save_every: int = 2_000, mismatch_sigma: float = 0.0) -> dict:
    """Train (or continue, or fine-tune) one run; returns the run's summary (also in the checkpoint's meta).
    `cell` None: "grsn", or the cell of `init_from`; `mismatch_sigma`: see `PolicyConfig`."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    spec = EnvSpec.for_id(env_id)
    env = make_env(spec)
    q, origin = initial_policy(env, env_id, cell, weight_bits, init_from, mismatch_sigma)
    pcfg = q.cfg
    target = RecurrentNet(pcfg)
    target.load_state_dict(q.state_dict())
    opt = torch.optim.Adam(q.parameters(), lr=cfg.lr)
    replay, actor = SequenceReplay(pcfg.n_actions), Actor(q)
    curve = EvalCurve()
    resume = out.with_suffix(".resume.pt")
    identity = {"config": asdict(cfg), "cell": pcfg.cell, "seed": seed, "origin": origin, "weight_bits": weight_bits,
                **({"mismatch_sigma": mismatch_sigma} if mismatch_sigma else {})}   # older files: none
    step = episode = 0
    wall = 0.0
    if resume.exists():
        nets, c = load_resume(resume, replay, curve, rng, identity)
        for name, obj in (("q", q), ("target", target), ("opt", opt)):
            obj.load_state_dict(nets[name])
        step, episode, wall = c["step"], c["episode"], c["wall"]
    elif init_from is not None:   # the loaded policy (its weights rounded, if quantization-aware) competes
        curve.record(0, evaluate(q, spec), 0.0, q)
    t0, last_save = time.time() - wall, step

    obs, _ = env.reset(seed=training_seed(seed, episode))
    actor.reset()
    ep_obs, ep_a, ep_r = [obs], [], []
    bar = tqdm(total=cfg.total_steps, initial=step, desc=f"{env_id} {pcfg.cell} s{seed}", disable=not progress)
    try:
        while step < cfg.total_steps:
            step += 1
            bar.update(1)
            frac = min(1.0, step / (cfg.exploration_fraction * cfg.total_steps))
            eps = cfg.start_eps + frac * (cfg.final_eps - cfg.start_eps)
            _, a = epsilon_greedy(rng, actor.values(obs), eps)
            obs, r, term, trunc, _ = env.step(a)
            actor.observe(a, r)
            ep_obs.append(obs), ep_a.append(a), ep_r.append(r)
            if term or trunc:
                replay.add(np.stack(ep_obs), np.asarray(ep_a), np.asarray(ep_r), term)
                bar.set_postfix(ret=sum(ep_r), eps=round(eps, 2))
                episode += 1
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
                curve.record(step, evaluate(q, spec), time.time() - t0, q)
            if term or trunc:
                if step - last_save >= save_every and step < cfg.total_steps:
                    nets = {"q": q.state_dict(), "target": target.state_dict(), "opt": opt.state_dict()}
                    save_resume(resume, nets, replay, curve, {**identity, "step": step, "episode": episode,
                                                              "wall": time.time() - t0}, rng)
                    last_save = step
                obs, _ = env.reset(seed=training_seed(seed, episode))
                actor.reset()
                ep_obs, ep_a, ep_r = [obs], [], []
    finally:
        bar.close()
        env.close()
    res = curve.save(q, out, {"env": env_id, "seed": seed, "train_steps": cfg.total_steps,
                              "trainer": "recurrent double DQN", "config": asdict(cfg),
                              "wall_s": round(time.time() - t0, 1), **origin})
    resume.unlink(missing_ok=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="CartPole-V")
    p.add_argument("--cell", choices=CELLS, help="default grsn, or the cell of --init-from (a GRSN policy "
                   "may be fine-tuned as grsn_chip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-steps", type=int, help="env steps (default 10k; 5k when fine-tuning)")
    p.add_argument("--gamma", type=float, default=Config.gamma, help="discount (CartPole: 0.9, as in the paper)")
    p.add_argument("--eval-every", type=int, default=1_000)
    p.add_argument("--save-every", type=int, default=2_000, help="env steps between resume points")
    p.add_argument("--weight-bits", type=int, help="quantization-aware training with this weight mantissa width")
    p.add_argument("--init-from", type=Path, help="continue this trained policy (Config.finetune settings)")
    p.add_argument("--mismatch-sigma", type=float, default=0.0,
                   help="grsn_chip: train through sampled chip mismatch of this sigma")
    p.add_argument("-o", "--out", type=Path, required=True)
    args = p.parse_args()
    cfg = Config.finetune(args.total_steps or 5_000) if args.init_from else Config(args.total_steps or 10_000)
    cfg = dataclasses.replace(cfg, gamma=args.gamma)
    try:
        res = train(args.env, args.cell, args.seed, args.out, cfg, args.eval_every, weight_bits=args.weight_bits,
                    init_from=args.init_from, save_every=args.save_every, mismatch_sigma=args.mismatch_sigma)
    except (LavaloopError, ValueError) as exc:
        p.error(str(exc))
    print(f"{args.env} {args.cell or 'grsn'} seed {args.seed}: best eval {res['best_eval']:.1f} at step "
          f"{res['best_step']}, final {res['final_eval']:.1f} -> {args.out}")


if __name__ == "__main__":
    main()
