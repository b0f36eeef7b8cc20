"""Train a QMIX team of recurrent agents (GRSN or GRU) on a cooperative MPE task.

    python -m lavaloop.trainers.qmix --env mpe2:simple_spread_v3 --cell grsn --seed 0 \\
        -o checkpoints/qmix_spread_grsn_s0.pt

QMIX (Rashid et al. 2018) as EPyMARL runs it on MPE, with the GRSN paper's agents: one
agent network shared by all agents (`conversion.models.qmix.agent_config`: observation
and agent one-hot, previous action and reward, a recurrent layer of 64 with TAP, a Q head),
a monotonic mixer on the global state, an episode replay (whole 25-step episodes, so one
BPTT chunk is one episode; 5000 episodes), one update of 32 episodes per collected episode,
double Q-learning with the target networks copied every 200 episodes, Adam 5e-4, gamma 0.99,
epsilon 1 -> 0.05 over the first 50k env steps.

Episode k of a run resets the env with `lavaloop.rollout.training_seed(seed, k)`, clear of
the test seeds (0, 1, ...). Every `--eval-every` env steps the greedy team plays 10 seeded
episodes (seeds 10000+); the curve goes to `<out>.csv` and the best-evaluated networks are
the checkpoint. Training state (networks, optimizer, replay, random streams)
goes to `<out>.resume.pt` every `--save-every` episodes; rerunning the same command
continues from it.

Quantization-aware fine-tuning continues a trained GRSN team with its agent's weights
rounded to the chip's mantissas in every forward pass (as `lavaloop.trainers.recurrent`):

    python -m lavaloop.trainers.qmix --env mpe2:simple_spread_v3 --init-from team.pt \\
        --weight-bits 8 -o team_qat.pt
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lavaloop.atomic import atomic_path
from lavaloop.conversion.models.grsn import CELLS, RecurrentNet
from lavaloop.conversion.models.qmix import QMixer, agent_config, load_team, save_team
from lavaloop.errors import LavaloopError
from lavaloop.rollout import training_seed
from lavaloop.teams import TeamShape, TeamSpec, masked_argmax
from lavaloop.trainers.recurrent import EvalCurve

EVAL_SEED = 10_000


@dataclass
class Config:
    total_steps: int = 100_000        # env (team) steps
    buffer_episodes: int = 5_000
    batch_episodes: int = 32
    learning_starts: int = 32         # episodes collected before the first update
    lr: float = 5e-4
    gamma: float = 0.99
    target_every: int = 200           # episodes between target-network copies
    start_eps: float = 1.0
    final_eps: float = 0.05
    eps_steps: int = 50_000           # env steps of the linear epsilon schedule
    grad_clip: float = 10.0
    mixer_embed: int = 32

    @classmethod
    def finetune(cls, total_steps: int = 20_000) -> Config:
        """Continuing a trained team: little exploration, a smaller step size."""
        return cls(total_steps=total_steps, start_eps=0.05, final_eps=0.05, lr=1e-4, learning_starts=32)


class EpisodeReplay:
    """A ring of whole episodes, stored as fixed-size arrays (MPE episodes have one length)."""

    def __init__(self, capacity: int, length: int, shape: TeamShape):
        n, a = shape.n_agents, shape.max_actions
        self.capacity, self.size, self.next = capacity, 0, 0
        self.data = {
            "obs": np.zeros((capacity, length + 1, n, shape.agent_obs_dim), np.float32),
            "prev_a": np.zeros((capacity, length + 1, n, a), np.float32),
            "prev_r": np.zeros((capacity, length + 1, n, 1), np.float32),
            "state": np.zeros((capacity, length + 1, shape.state_dim), np.float32),
            "a": np.zeros((capacity, length, n), np.int64),
            "r": np.zeros((capacity, length), np.float32),
            "done": np.zeros((capacity, length), np.float32),
            "mask": np.zeros((capacity, length), np.float32),
        }

    def add(self, episode: dict[str, np.ndarray]) -> None:
        i = self.next
        for k, v in self.data.items():
            v[i] = 0
            v[i, : len(episode[k])] = episode[k]
        self.next, self.size = (i + 1) % self.capacity, min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch: int) -> dict[str, torch.Tensor]:
        """Episodes, time-major: (L[+1], batch, ...)."""
        idx = rng.integers(0, self.size, size=batch)
        return {k: torch.from_numpy(np.ascontiguousarray(np.swapaxes(v[idx], 0, 1))) for k, v in self.data.items()}


class Team:
    """The shared agent network run for all agents of one env, state carried."""

    def __init__(self, net: RecurrentNet, shape: TeamShape):
        self.net, self.shape = net, shape
        self.masks = shape.masks()

    def reset(self) -> None:
        n = self.shape.n_agents
        self.state = self.net.zero_state(n)
        self.prev_a = np.zeros((n, self.shape.max_actions), np.float32)
        self.prev_r = np.zeros((n, 1), np.float32)

    @torch.no_grad()
    def values(self, obs: np.ndarray) -> np.ndarray:
        """(n_agents, max_actions) Q-values for the agents' inputs `obs` (the state advances)."""
        t = [torch.from_numpy(x)[None] for x in (obs, self.prev_a, self.prev_r)]
        q, self.state, _ = self.net(*t, self.state)
        return q[0].numpy()

    def act(self, rng: np.random.Generator, obs: np.ndarray, epsilon: float) -> np.ndarray:
        """Epsilon-greedy actions over each agent's available actions."""
        greedy = masked_argmax(self.values(obs), self.masks)
        explore = rng.random(len(greedy)) < epsilon
        random = np.array([rng.integers(n) for n in self.shape.n_actions])
        return np.where(explore, random, greedy)

    def observe(self, actions: np.ndarray, rewards: np.ndarray) -> None:
        self.prev_a = np.eye(self.shape.max_actions, dtype=np.float32)[actions]
        self.prev_r = np.asarray(rewards, np.float32)[:, None]


def play(env, spec: TeamSpec, team: Team, seed: int, rng: np.random.Generator, epsilon: float) -> dict:
    """One episode; the recorded arrays of EpisodeReplay plus the team return."""
    shape = team.shape
    obs, _ = env.reset(seed=seed)
    team.reset()
    rec = {k: [] for k in ("obs", "prev_a", "prev_r", "state", "a", "r", "done")}
    for _ in range(spec.max_cycles):
        o = shape.agent_obs(obs)
        rec["obs"].append(o), rec["prev_a"].append(team.prev_a), rec["prev_r"].append(team.prev_r)
        rec["state"].append(env.state())
        actions = team.act(rng, o, epsilon)
        obs, rewards, term, trunc, _ = env.step({a: int(x) for a, x in zip(shape.agents, actions)})
        r = np.array([rewards[a] for a in shape.agents], np.float32)
        team.observe(actions, r)
        terminated = all(term.get(a, True) for a in shape.agents)
        rec["a"].append(actions), rec["r"].append(r.sum()), rec["done"].append(float(terminated))
        if terminated or any(trunc.values()) or not env.agents:
            break
    last = {a: obs.get(a, np.zeros(n)) for a, n in zip(shape.agents, shape.obs_dims)}
    rec["obs"].append(shape.agent_obs(last)), rec["prev_a"].append(team.prev_a), rec["prev_r"].append(team.prev_r)
    rec["state"].append(np.concatenate([np.ravel(last[a]) for a in shape.agents]))
    ep = {k: np.stack(v) for k, v in rec.items()}
    ep["mask"] = np.ones(len(ep["a"]), np.float32)
    ep["return"] = float(ep["r"].sum())
    return ep


def evaluate(env, spec: TeamSpec, team: Team, episodes: int = 10, seed: int = EVAL_SEED) -> float:
    """Mean greedy team return over seeded episodes."""
    rng = np.random.default_rng(seed)
    return float(np.mean([play(env, spec, team, seed + i, rng, 0.0)["return"] for i in range(episodes)]))


def td_loss(q: RecurrentNet, mixer: QMixer, target: RecurrentNet, target_mixer: QMixer, batch: dict,
            masks: torch.Tensor, gamma: float) -> torch.Tensor:
    """QMIX's double-Q TD loss (mean squared, over real transitions)."""
    length1, b, n = batch["obs"].shape[:3]

    def agent_q(net):
        flat = [batch[k].reshape(length1, b * n, -1) for k in ("obs", "prev_a", "prev_r")]
        out, _, _ = net(*flat, net.zero_state(b * n))
        return out.view(length1, b, n, -1).masked_fill(~masks, -1e9)

    qs = agent_q(q)
    chosen = qs[:-1].gather(-1, batch["a"][..., None]).squeeze(-1)
    q_tot = mixer(chosen, batch["state"][:-1])
    with torch.no_grad():
        qt = agent_q(target)
        best = qs[1:].argmax(-1, keepdim=True)
        next_tot = target_mixer(qt[1:].gather(-1, best).squeeze(-1), batch["state"][1:])
        y = batch["r"] + gamma * (1 - batch["done"]) * next_tot
    return ((q_tot - y) ** 2 * batch["mask"]).sum() / batch["mask"].sum()


def epsilon_at(cfg: Config, step: int) -> float:
    frac = min(1.0, step / max(cfg.eps_steps, 1))
    return cfg.start_eps + frac * (cfg.final_eps - cfg.start_eps)


class Trainer:
    """Networks, optimizer, replay, random streams and the evaluation curve of one run."""

    def __init__(self, spec: TeamSpec, cell: str, seed: int, cfg: Config, weight_bits: int | None = None,
                 init_from: Path | None = None):
        self.spec, self.cfg, self.seed = spec, cfg, seed
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.shape = TeamShape.of(spec)
        self.origin: dict = {}
        if init_from is None:
            self.q = RecurrentNet(agent_config(self.shape, cell, weight_bits))
            self.mixer = QMixer(self.shape.n_agents, self.shape.state_dim, cfg.mixer_embed)
        else:
            src, self.mixer, src_spec, src_shape, meta, _ = load_team(init_from)
            if src_spec.id != spec.id:
                raise ValueError(f"{init_from} was trained on {src_spec.id}, not {spec.id}")
            src_shape.check_fits(self.shape, src_spec.id, spec.id)
            self.q = RecurrentNet(dataclasses.replace(src.cfg, weight_bits=weight_bits))
            self.q.load_state_dict(src.state_dict())
            self.origin = {"init_from": Path(init_from).name, "init_best_eval": meta.get("best_eval")}
        self.target = RecurrentNet(self.q.cfg)
        self.target_mixer = QMixer(self.shape.n_agents, self.shape.state_dim, self.mixer.embed)
        self.copy_targets()
        self.opt = torch.optim.Adam([*self.q.parameters(), *self.mixer.parameters()], lr=cfg.lr)
        self.replay = EpisodeReplay(cfg.buffer_episodes, spec.max_cycles, self.shape)
        self.masks = torch.from_numpy(self.shape.masks())
        self.step = self.episode = 0
        self.curve = EvalCurve()          # the best team's mixer rides along as a companion
        self.wall = 0.0
        self.identity = {"config": asdict(cfg), "env": spec.id, "cell": self.q.cfg.cell, "seed": seed,
                         "weight_bits": weight_bits, "origin": self.origin}

    def copy_targets(self) -> None:
        self.target.load_state_dict(self.q.state_dict())
        self.target_mixer.load_state_dict(self.mixer.state_dict())

    def update(self) -> float:
        batch = self.replay.sample(self.rng, self.cfg.batch_episodes)
        loss = td_loss(self.q, self.mixer, self.target, self.target_mixer, batch, self.masks, self.cfg.gamma)
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*self.q.parameters(), *self.mixer.parameters()], self.cfg.grad_clip)
        self.opt.step()
        return float(loss)

    def record(self, env, wall_s: float) -> None:
        """Evaluate the greedy team; keep its networks if it is the best so far (the later on ties)."""
        score = evaluate(env, self.spec, Team(self.q, self.shape))
        self.curve.record(self.step, score, wall_s, self.q, {"mixer": self.mixer})

    # -- resume -----------------------------------------------------------------------------
    def save_state(self, path: Path) -> None:
        nets = {name: getattr(self, name).state_dict() for name in ("q", "mixer", "target", "target_mixer")}
        best = self.curve.best
        counters = {**self.identity, "step": self.step, "episode": self.episode, "wall": self.wall,
                    "curve": self.curve.points, "rng": self.rng.bit_generator.state,
                    "replay": [self.replay.size, self.replay.next], "best": None if best is None else best[1:]}
        with atomic_path(path) as tmp:
            torch.save({"nets": nets, "opt": self.opt.state_dict(), "torch_rng": torch.get_rng_state(),
                        "replay": {k: torch.from_numpy(v) for k, v in self.replay.data.items()},
                        "best": None if best is None else {"agent": best[0], **self.curve.best_companions},
                        "counters": json.dumps(counters)}, tmp)

    def load_state(self, path: Path) -> None:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        c = json.loads(obj["counters"])
        if any(c.get(k) != v for k, v in self.identity.items()):
            raise ValueError(f"{path} belongs to another run (config, task, cell, seed, weight bits or origin "
                             "differ); delete it to start over")
        for name, sd in obj["nets"].items():
            getattr(self, name).load_state_dict(sd)
        self.opt.load_state_dict(obj["opt"])
        torch.set_rng_state(obj["torch_rng"])
        for k, v in obj["replay"].items():
            self.replay.data[k][:] = v.numpy()
        self.replay.size, self.replay.next = c["replay"]
        self.rng.bit_generator.state = c["rng"]
        self.step, self.episode, self.wall = c["step"], c["episode"], c["wall"]
        self.curve.points = [tuple(p) for p in c["curve"]]
        if c["best"] is not None:
            best = dict(obj["best"])
            self.curve.best = (best.pop("agent"), *c["best"])
            self.curve.best_companions = best


def train(env_id: str, cell: str, seed: int, out: Path, cfg: Config, eval_every: int = 5_000,
          save_every: int = 200, progress: bool = True, weight_bits: int | None = None,
          init_from: Path | None = None) -> dict:
    """Train (or continue) one run; returns the run's summary (also in the checkpoint's meta)."""
    torch.set_num_threads(1)
    spec = TeamSpec.for_id(env_id)
    tr = Trainer(spec, cell, seed, cfg, weight_bits, init_from)
    resume = out.with_suffix(".resume.pt")
    env = spec.make()
    if resume.exists():
        tr.load_state(resume)
    elif init_from is not None:    # the loaded team (rounded, if quantization-aware) competes
        tr.record(env, 0.0)
    t0 = time.time() - tr.wall
    next_eval = (tr.step // eval_every + 1) * eval_every
    bar = tqdm(total=cfg.total_steps, initial=tr.step, desc=f"{spec.task} {tr.q.cfg.cell} s{seed}",
               disable=not progress)
    team = Team(tr.q, tr.shape)
    try:
        while tr.step < cfg.total_steps:
            ep = play(env, spec, team, training_seed(seed, tr.episode), tr.rng, epsilon_at(cfg, tr.step))
            tr.replay.add(ep)
            tr.step += len(ep["a"])
            tr.episode += 1
            bar.update(len(ep["a"]))
            if tr.episode >= cfg.learning_starts:
                loss = tr.update()
                bar.set_postfix(ret=round(ep["return"], 1), loss=round(loss, 3), eps=round(epsilon_at(cfg, tr.step), 2))
            if tr.episode % cfg.target_every == 0:
                tr.copy_targets()
            if tr.step >= next_eval or tr.step >= cfg.total_steps:
                tr.record(env, time.time() - t0)
                next_eval += eval_every
            if tr.episode % save_every == 0:
                tr.wall = time.time() - t0
                tr.save_state(resume)
    finally:
        bar.close()
        env.close()
    best, points = tr.curve.best, tr.curve.points
    meta = {"env": spec.id, "seed": seed, "train_steps": cfg.total_steps, "trainer": "QMIX (double Q)",
            "config": asdict(cfg), "best_step": best[1], "best_eval": best[2], "final_eval": points[-1][1],
            "wall_s": round(time.time() - t0, 1), **tr.origin}
    tr.q.load_state_dict(best[0])
    tr.mixer.load_state_dict(tr.curve.best_companions["mixer"])
    tr.q.snap_weights()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_team(tr.q, tr.mixer, spec, tr.shape, out, meta)
    tr.curve.write_csv(out.with_suffix(".csv"))
    resume.unlink(missing_ok=True)
    return {"curve": points, **meta}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="mpe2:simple_spread_v3")
    p.add_argument("--cell", default="grsn", choices=[c for c in CELLS if c not in ("grsn_notap", "grsn_chip")])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total-steps", type=int, help="env steps (default 100k; 20k when fine-tuning)")
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--save-every", type=int, default=200, help="episodes between resume points")
    p.add_argument("--weight-bits", type=int, help="quantization-aware training with this weight mantissa width")
    p.add_argument("--init-from", type=Path, help="continue this trained team (Config.finetune settings)")
    p.add_argument("-o", "--out", type=Path, required=True)
    args = p.parse_args()
    cfg = Config.finetune(args.total_steps or 20_000) if args.init_from else Config(args.total_steps or 100_000)
    try:
        res = train(args.env, args.cell, args.seed, args.out, cfg, args.eval_every, args.save_every,
                    weight_bits=args.weight_bits, init_from=args.init_from)
    except (LavaloopError, ValueError) as exc:
        p.error(str(exc))
    print(f"{args.env} {args.cell} seed {args.seed}: best eval {res['best_eval']:.1f} at step {res['best_step']}, "
          f"final {res['final_eval']:.1f} -> {args.out}")


if __name__ == "__main__":
    main()
