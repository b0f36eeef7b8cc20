"""Deploy a GRSN team: every agent runs the shared fixed-point network on its own observation.

On Lava, TeamEnvIO (processes.team_envio) steps the parallel env; the agents' networks are
GRSNStack processes in one of two layouts (`RunSettings.layout`): "per-agent", one process
per agent (one chip each), or "shared", one process holding all agents as a batch. Both run
the same stages (processes.dynamics.run_stage) as the emulator, which batches episodes and
agents together, so all three are bit-exact. `fidelity` replays every episode through the
float agents and the fixed-point network side by side, per agent.
"""
from __future__ import annotations

import functools
import time

import numpy as np
import torch
from tqdm import tqdm

from lavaloop.conversion.artifact_team import TeamArtifact
from lavaloop.conversion.grsn import float_step
from lavaloop.conversion.models.grsn import RecurrentNet
from lavaloop.conversion.team import team_inputs, team_shape_for
from lavaloop.deploy.episodes import EpisodeLog, Played, run_envio_episodes
from lavaloop.deploy.kinds.base import Deployment, Fidelity
from lavaloop.deploy.kinds.grsn import FixedPointGRSN, float_policy
from lavaloop.errors import LavaloopError
from lavaloop.options import LAYOUTS
from lavaloop.rollout import epsilon_greedy
from lavaloop.runtime import LavaRuntime
from lavaloop.teams import TeamShape, TeamSpec


def make_team_env(spec: TeamSpec):
    """The task's parallel env (a picklable env factory for TeamEnvIO)."""
    return spec.make()


def play_team(spec: TeamSpec, shape: TeamShape, seeds: list[int], values, epsilon: float,
              progress: bool = True) -> Played:
    """One episode per seed, all stepped together; every agent picks epsilon-greedily over its own actions.

    Parameters
    ----------
    values: values(active, u) -> (len(active) * n_agents, n_values): the agents' values for
        their inputs u (`team_inputs` of each active episode, agents consecutive).
    epsilon: exploration; the episode's generator (seeded by its seed) draws for the agents
        in order, as TeamEnvIO does.
    """
    n_ep, n = len(seeds), shape.n_agents
    rngs = [np.random.default_rng(s) for s in seeds]
    prev_a, prev_r = np.full((n_ep, n), -1), np.zeros((n_ep, n))
    returns, lengths = np.zeros(n_ep), np.zeros(n_ep, np.int64)
    actions, greedy = [[] for _ in seeds], [[] for _ in seeds]
    envs, t0 = [], time.time()
    bar = tqdm(total=n_ep, desc="team episodes", unit="ep", disable=not progress, leave=False)
    try:
        for _ in seeds:
            envs.append(spec.make())
        obs = [env.reset(seed=s)[0] for env, s in zip(envs, seeds)]
        active, rounds = list(range(n_ep)), 0
        while active:
            u = np.concatenate([team_inputs(shape, obs[e], prev_a[e], prev_r[e]) for e in active])
            q = values(np.asarray(active), u).reshape(len(active), n, -1)
            rounds += 1
            still = []
            for row, e in enumerate(active):
                picks = [epsilon_greedy(rngs[e], q[row, i, :k], epsilon) for i, k in enumerate(shape.n_actions)]
                greedy[e].append([g for g, _ in picks])
                actions[e].append([a for _, a in picks])
                obs[e], rewards, term, trunc, _ = envs[e].step({name: a for name, (_, a) in zip(shape.agents, picks)})
                prev_a[e] = [a for _, a in picks]
                prev_r[e] = [rewards[name] for name in shape.agents]
                returns[e] += float(prev_r[e].sum())
                lengths[e] += 1
                if any(term.values()) or any(trunc.values()) or not envs[e].agents or lengths[e] >= spec.max_cycles:
                    bar.update(1)
                else:
                    still.append(e)
            active = still
    finally:
        bar.close()
        for env in envs:
            env.close()
    return Played(returns, lengths, [np.asarray(a, np.int64) for a in actions],
                  [np.asarray(g, np.int64) for g in greedy], rounds, time.time() - t0)


def run_team_emulator(art: TeamArtifact, seeds: list[int], epsilon: float, progress: bool = True) -> EpisodeLog:
    """The episodes on the emulator: one batch row per (episode, agent)."""
    shape, n = art.team, art.team.n_agents
    net = FixedPointGRSN(art, len(seeds) * n)
    agent_spikes = np.zeros(n, np.int64)

    def values(active, u):
        rows = (active[:, None] * n + np.arange(n)).ravel()
        q = net.step(u, rows)
        agent_spikes[:] += net.last_spikes.reshape(len(active), n, -1).sum(axis=(0, 2))
        return q

    played = play_team(art.env_spec, shape, seeds, values, epsilon, progress)
    return EpisodeLog(seeds=list(seeds), returns=played.returns, lengths=played.lengths, actions=played.actions,
                      greedy=played.greedy, spikes=[net.spikes], synops=[net.ops["mac"] + net.ops["ac"]],
                      steps=int(played.lengths.sum()) * (len(art.stages) + 1), wall_s=played.wall_s, agents=n,
                      extra={"ops": dict(net.ops), "spikes_per_agent": agent_spikes.tolist()})


def build_graph(art: TeamArtifact, seeds: list[int], epsilon: float, layout: str):
    """(TeamEnvIO, [GRSNStack...], window) wired in `layout` (see the module doc)."""
    from lavaloop.processes.grsn.process import GRSNStack
    from lavaloop.processes.team_envio.process import TeamEnvIO

    shape, spec = art.team, art.env_spec
    depth, n = len(art.stages), art.team.n_agents
    envio = TeamEnvIO(env_fn=functools.partial(make_team_env, spec), agents=shape.agents, n_actions=shape.n_actions,
                      n_inputs=art.stages[0]["weight"].shape[1], inputs_fn=functools.partial(team_inputs, shape),
                      input_scale_bits=int(art.manifest["input_scale_bits"]), input_bits=art.profile.input_bits,
                      latency=depth, seeds=seeds, epsilon=epsilon, max_steps=spec.max_cycles, layout=layout)
    if layout == "per-agent":
        stacks = [GRSNStack(stages=art.stages, window=depth + 1, name=f"agent_{i}") for i in range(n)]
        for i, stack in enumerate(stacks):
            obs_out, q_in = envio.agent_ports(i)
            obs_out.connect(stack.s_in)
            stack.s_out.connect(q_in)
    else:
        stacks = [GRSNStack(stages=art.stages, window=depth + 1, batch=n, name="team")]
        envio.obs_out.connect(stacks[0].s_in)
        stacks[0].s_out.connect(envio.q_in)
    return envio, stacks, depth + 1


def run_team_lava(art: TeamArtifact, seeds: list[int], epsilon: float, layout: str,
                  progress: bool = True) -> EpisodeLog:
    """The episodes inside one Lava runtime (Loihi2SimCfg, fixed-point models)."""
    envio, stacks, window = build_graph(art, seeds, epsilon, layout)
    n = art.team.n_agents
    with LavaRuntime(envio) as rt:
        steps, wall = run_envio_episodes(rt, envio, len(seeds), window * art.env_spec.max_cycles, progress)
        lengths = envio.lengths.get().astype(np.int64)
        actions, greedy = envio.actions.get(), envio.greedy.get()
        ops = np.sum([s.ops.get() for s in stacks], axis=0).astype(np.int64)
        spikes = [int(s.spikes.get()[0]) for s in stacks]
        return EpisodeLog(seeds=list(seeds), returns=envio.returns.get().astype(float), lengths=lengths,
                          actions=[actions[i, :l].astype(np.int64) for i, l in enumerate(lengths)],
                          greedy=[greedy[i, :l].astype(np.int64) for i, l in enumerate(lengths)],
                          spikes=[sum(spikes)], synops=[int(ops[0] + ops[1])], steps=steps, wall_s=wall, agents=n,
                          extra={"ops": {"mac": int(ops[0]), "ac": int(ops[1]), "neuron": int(ops[2])},
                                 # one process holds every agent in the shared layout: no split
                                 "spikes_per_agent": spikes if layout == "per-agent" else None,
                                 "compile_s": rt.compile_s})


def replay_team(spec: TeamSpec, shape: TeamShape, seed: int, actions: np.ndarray,
                expected_return: float) -> tuple[list[dict], np.ndarray]:
    """(observations per step, rewards (T, n_agents)) of an episode regenerated from its seed and actions."""
    env = spec.make()
    try:
        obs, _ = env.reset(seed=seed)
        seen, rewards = [], []
        for step in actions:
            seen.append(obs)
            obs, r, _, _, _ = env.step({name: int(a) for name, a in zip(shape.agents, step)})
            rewards.append([r[name] for name in shape.agents])
    finally:
        env.close()
    rewards = np.asarray(rewards, float)
    if not np.isclose(rewards.sum(), expected_return):
        raise LavaloopError(f"replay of seed {seed} gave team return {rewards.sum()}, the run {expected_return}: "
                            "the environment is not deterministic under its seed")
    return seen, rewards


def fidelity(art: TeamArtifact, log: EpisodeLog) -> dict:
    """Per agent step: does the float agent's greedy action (over its own actions) equal the
    deployed agent's, both fed the run's observations and previous actions? Per agent, per
    team step (all agents agree), per episode; plus the carried state's error and the GRSN
    spike mismatch."""
    shape, spec = art.team, art.env_spec
    fs = art.manifest["quantization"]["frac_bits"]["state"]
    net = float_policy(art)
    head = f"head{len(net.cfg.head)}"
    hits, per_episode, h_err, spike_diff = [], [], [], []
    for seed, acts, greedy, ret in zip(log.seeds, log.actions, log.greedy, log.returns):
        obs, rewards = replay_team(spec, shape, seed, acts, ret)
        prev_a = np.concatenate([np.full((1, shape.n_agents), -1), acts[:-1]])
        prev_r = np.concatenate([np.zeros((1, shape.n_agents)), rewards[:-1]])
        fixed, state = FixedPointGRSN(art, shape.n_agents), net.zero_state(shape.n_agents)
        ep_hits = []
        for t in range(len(acts)):
            u = team_inputs(shape, obs[t], prev_a[t], prev_r[t])
            tr, state = float_step(net, u, state)
            fixed.step(u)
            ep_hits.append([int(np.argmax(tr[head][i, :k])) == greedy[t, i] for i, k in enumerate(shape.n_actions)])
            h_err.append(float(np.abs(fixed.state["h"] / 2 ** fs - tr["h"]).mean()))
            spike_diff.append(float((fixed.last_spikes != tr["spikes"]).mean()))
        hits += ep_hits
        per_episode.append(float(np.mean(ep_hits)))
    hits = np.asarray(hits, bool)
    return {"agreement": float(hits.mean()), "agreement_per_episode": per_episode,
            "agreement_per_agent": dict(zip(shape.agents, map(float, hits.mean(axis=0)))),
            "team_agreement": float(hits.all(axis=1).mean()),
            "state_error_mean": float(np.mean(h_err)), "state_error_max": float(np.max(h_err)),
            "spike_mismatch": float(np.mean(spike_diff))}


@torch.no_grad()
def team_returns(net: RecurrentNet, spec: TeamSpec, shape: TeamShape, seeds: list[int], epsilon: float) -> np.ndarray:
    """Team returns of float agents (any cell) on seeded episodes, epsilon-greedy as on the chip."""
    cfg, n = net.cfg, shape.n_agents
    state = list(net.zero_state(len(seeds) * n))       # one row per (episode, agent)

    def values(active, u):
        rows = torch.as_tensor((active[:, None] * n + np.arange(n)).ravel())
        x = torch.split(torch.as_tensor(u, dtype=torch.float32)[None], [cfg.obs_dim, cfg.n_actions, 1], dim=-1)
        out, new, _ = net(*x, tuple(s[rows] for s in state))
        for s, s_new in zip(state, new):
            s[rows] = s_new
        return out[0].numpy()

    return play_team(spec, shape, seeds, values, epsilon, progress=False).returns


def random_team_returns(spec: TeamSpec, shape: TeamShape, seeds: list[int]) -> np.ndarray:
    """Team returns of uniformly random agents on seeded episodes."""
    return play_team(spec, shape, seeds, lambda active, u: np.zeros((len(u), shape.max_actions)), 1.0,
                     progress=False).returns


class TeamDeployment(Deployment):
    """GRSN teams: `layout` picks one Lava process per agent or one shared process."""

    accepts = ("layout",)

    def check(self) -> None:
        m = self.art.manifest
        team_shape_for(self.art.team, m["source"]["meta"].get("env", m["env"]["id"]), self.art.env_id)

    @property
    def layout(self) -> str:
        return self.settings.layout or LAYOUTS[0]

    def run_lava(self, progress: bool) -> EpisodeLog:
        return run_team_lava(self.art, self.seeds, self.epsilon, self.layout, progress)

    def run_emulator(self, progress: bool) -> EpisodeLog:
        return run_team_emulator(self.art, self.seeds, self.epsilon, progress)

    def fidelity(self, log: EpisodeLog) -> Fidelity:
        fid = fidelity(self.art, log)
        return Fidelity(fid.pop("agreement"), fid.pop("agreement_per_episode"), fid)

    def source_returns(self) -> np.ndarray:
        return team_returns(float_policy(self.art), self.art.env_spec, self.art.team, self.seeds, self.epsilon)

    def random_returns(self) -> np.ndarray:
        return random_team_returns(self.art.env_spec, self.art.team, self.seeds)

    def ops(self, log: EpisodeLog) -> dict[str, int]:
        return dict(log.extra["ops"])

    def config(self) -> dict:
        team = self.art.team
        return {"agents": list(team.agents), "hidden": self.art.manifest["policy"]["hidden"],
                "layout": self.layout if self.settings.backend == "lava" else None}

    @staticmethod
    def summary_lines(result) -> list[str]:
        d = result.details
        per_agent = ", ".join(f"{a} {v:.4f}" for a, v in d["agreement_per_agent"].items())
        return [f"agents: {per_agent}; all agents agree on {d['team_agreement']:.4f} of the team steps "
                "(decisions above count agent steps)",
                f"carried state: mean |h - h_float| {d['state_error_mean']:.4f} (max {d['state_error_max']:.4f}) "
                f"threshold units; spike mismatch {d['spike_mismatch']:.4f}"]
