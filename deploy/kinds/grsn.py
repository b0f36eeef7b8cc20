"""Deploy a GRSN artifact: the Lava graph, the fast emulator, and fidelity against the float policy.

Both backends run the artifact's stages with processes.dynamics.run_stage, one env step
per decision window, the GRSN state carried across env steps and zeroed at each
episode's start; the emulator batches the episodes. `fidelity` replays every episode
(seed and actions) through the float policy and the fixed-point network side by side.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from lavaloop.conversion.artifact_grsn import GRSNArtifact
from lavaloop.conversion.grsn import check_task, float_step, policy_inputs
from lavaloop.conversion.models.grsn import PolicyConfig, RecurrentNet
from lavaloop.deploy.episodes import EpisodeLog, play_batched, recorded_actions, replay, run_envio_episodes
from lavaloop.deploy.kinds.base import Deployment, Fidelity
from lavaloop.envs import EnvSpec, episode_limit, make_env
from lavaloop.processes.dynamics import continuous_action, encode_input, prepare_stage, run_stage, stage_ops
from lavaloop.rollout import epsilon_greedy, evaluate
from lavaloop.runtime import LavaRuntime


def float_policy(art: GRSNArtifact) -> RecurrentNet:
    """The float source policy stored in the artifact."""
    cfg = dict(art.manifest["policy"])
    cfg["head"] = tuple(cfg["head"])
    net = RecurrentNet(PolicyConfig(**cfg))
    net.load_state_dict({k: torch.as_tensor(v) for k, v in art.source.items()})
    return net.eval()


def single_inputs(obs, prev_action, prev_reward: float, n_actions: int, continuous: bool) -> np.ndarray:
    """policy_inputs for one env (EnvIO's inputs_fn); prev_action -1 (discrete) or None
    (continuous) at an episode's start."""
    if continuous and prev_action is None:
        prev_action = np.zeros(n_actions)
    return policy_inputs(np.ravel(obs)[None], [prev_action], [prev_reward], n_actions, continuous)[0]


def decision(manifest: dict, rng: np.random.Generator, values: np.ndarray, epsilon: float, frac_bits: int):
    """(greedy, taken, env action) from one step's values (`frac_bits` fraction bits):
    epsilon-greedy over action values, or a continuous policy's tanh(mean) in [-1, 1]."""
    if manifest["continuous"]:
        greedy, taken = continuous_action(rng, values, frac_bits, epsilon)
        return greedy, taken, taken
    greedy, taken = epsilon_greedy(rng, values, epsilon)
    return greedy, taken, manifest["action_map"][taken]


def start_actions(manifest: dict, n: int) -> np.ndarray:
    """The 'previous action' of n episodes' first steps: -1 (no action) or zero vectors."""
    if manifest["continuous"]:
        return np.zeros((n, int(manifest["n_actions"])))
    return np.full(n, -1)


class FixedPointGRSN:
    """The artifact's stages on a batch of envs, one env step per call, state carried."""

    def __init__(self, art: GRSNArtifact, batch: int):
        self.stages = [prepare_stage(st) for st in art.stages]
        hidden = len(self.stages[1]["b_f"])
        self.state = {"h": np.zeros((batch, hidden), np.int64), "v": np.zeros((batch, hidden), np.int64)}
        self.scale, self.bits = 1 << int(art.manifest["input_scale_bits"]), art.profile.input_bits
        self.spikes = 0
        self.last_spikes = np.zeros((batch, hidden), np.int64)
        self.ops = {"mac": 0, "ac": 0, "neuron": 0}

    def step(self, u: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Values (R, n_actions) for float inputs u (R, n_u) of the batch rows `rows` (default
        all); only those rows' states advance, and their ops and spikes are counted."""
        rows = np.arange(len(self.state["h"])) if rows is None else rows
        x = encode_input(u, self.scale, self.bits)
        state = {k: v[rows] for k, v in self.state.items()}
        for st in self.stages:
            ops = stage_ops(st, x)
            for k in self.ops:
                self.ops[k] += int(np.sum(ops[k]))
            x = run_stage(st, x, state)
            if st["kind"] == "grsn":
                self.last_spikes = (x[:, : len(st["b_f"])] != 0).astype(np.int64)
                self.spikes += int(self.last_spikes.sum())
        for k, v in state.items():
            self.state[k][rows] = v
        return x


def run_grsn_emulator(art: GRSNArtifact, seeds: list[int], epsilon: float, progress: bool = True) -> EpisodeLog:
    """One episode per seed, all batched."""
    m = art.manifest
    n_act, cont = int(m["n_actions"]), m["continuous"]
    f_out = m["quantization"]["frac_bits"]["q"]
    net = FixedPointGRSN(art, len(seeds))
    played = play_batched(art.env_spec, seeds,
                          lambda active, obs, pa, pr: net.step(policy_inputs(obs, pa, pr, n_act, cont), active),
                          lambda rng, values: decision(m, rng, values, epsilon, f_out),
                          start_actions(m, 1)[0], progress)
    return EpisodeLog(seeds=list(seeds), returns=played.returns, lengths=played.lengths, actions=played.actions,
                      greedy=played.greedy, spikes=[net.spikes], synops=[net.ops["mac"] + net.ops["ac"]],
                      steps=int(played.lengths.sum()) * (len(art.stages) + 1), wall_s=played.wall_s,
                      extra={"ops": dict(net.ops)})


def build_graph(art: GRSNArtifact, seeds: list[int], epsilon: float, max_steps: int):
    """(EnvIO, GRSNStack, window): EnvIO -> GRSNStack -> EnvIO, one decision window per env step."""
    from lavaloop.processes.envio.process import EnvIO
    from lavaloop.processes.grsn.process import GRSNStack

    m = art.manifest
    spec = EnvSpec.from_dict(m["env"])
    n_act, cont = int(m["n_actions"]), m["continuous"]
    depth = len(art.stages)
    envio = EnvIO(env_fn=functools.partial(make_env, spec), obs_size=art.stages[0]["weight"].shape[1],
                  n_actions=n_act, action_map=m["action_map"],
                  input_scale_bits=int(m["input_scale_bits"]), input_bits=art.profile.input_bits,
                  timesteps=1, latency=depth, seeds=seeds, epsilon=epsilon, max_steps=max_steps,
                  inputs_fn=functools.partial(single_inputs, n_actions=n_act, continuous=cont),
                  continuous_frac_bits=m["quantization"]["frac_bits"]["q"] if cont else None)
    stack = GRSNStack(stages=art.stages, window=depth + 1)
    envio.obs_out.connect(stack.s_in)
    stack.s_out.connect(envio.q_in)
    return envio, stack, depth + 1


def run_grsn_lava(art: GRSNArtifact, seeds: list[int], epsilon: float, progress: bool = True) -> EpisodeLog:
    """The episodes inside one Lava runtime (Loihi2SimCfg, fixed-point models)."""
    envio, stack, window = build_graph(art, seeds, epsilon, episode_limit(art.env_spec))
    with LavaRuntime(envio) as rt:
        steps, wall = run_envio_episodes(rt, envio, len(seeds), window * 200, progress)
        lengths = envio.lengths.get().astype(np.int64)
        actions, greedy = recorded_actions(envio, lengths, art.manifest["continuous"])
        mac, ac, neuron = (int(x) for x in stack.ops.get())
        return EpisodeLog(seeds=list(seeds), returns=envio.returns.get().astype(float), lengths=lengths,
                          actions=actions, greedy=greedy, spikes=[int(stack.spikes.get()[0])], synops=[mac + ac],
                          steps=steps, wall_s=wall,
                          extra={"ops": {"mac": mac, "ac": ac, "neuron": neuron}, "compile_s": rt.compile_s})


CONTINUOUS_TOLERANCE = 0.02   # |a_fixed - a_float| counted as agreement: 1% of the [-1, 1] range


def fidelity(art: GRSNArtifact, log: EpisodeLog) -> dict:
    """Replay every episode through the float policy and the fixed-point network side by side.

    Both see the same inputs (the run's observations and actions). Reports the agreement
    of the float policy's greedy action with the run's (continuous actions: within
    CONTINUOUS_TOLERANCE, and the mean and largest |difference|), and per env step the mean
    |h_fixed - h_float| (in threshold units) and the fraction of GRSN neurons whose spike
    differs.
    """
    m = art.manifest
    spec = EnvSpec.from_dict(m["env"])
    n_act, cont = int(m["n_actions"]), m["continuous"]
    fs = m["quantization"]["frac_bits"]["state"]
    net = float_policy(art)
    head = f"head{len(net.cfg.head)}"
    agree, a_err, h_err, spike_diff, per_episode = [], [], [], [], []
    for seed, acts, greedy, ret in zip(log.seeds, log.actions, log.greedy, log.returns):
        obs, rewards = replay(spec, seed, list(acts) if cont else [m["action_map"][a] for a in acts], ret)
        prev_a = np.concatenate([start_actions(m, 1), acts[:-1]])
        prev_r = np.concatenate([[0.0], rewards[:-1]])
        u = policy_inputs(obs, prev_a, prev_r, n_act, cont)
        fixed = FixedPointGRSN(art, 1)
        state = net.zero_state(1)
        hits = []
        for t in range(len(acts)):
            tr, state = float_step(net, u[t: t + 1], state)
            fixed.step(u[t: t + 1])
            if cont:
                err = float(np.abs(np.tanh(tr[head][0]) - greedy[t]).max())
                a_err.append(err)
                hits.append(err <= CONTINUOUS_TOLERANCE)
            else:
                hits.append(int(np.argmax(tr[head][0])) == int(greedy[t]))
            h_err.append(float(np.abs(fixed.state["h"][0] / 2 ** fs - tr["h"][0]).mean()))
            spike_diff.append(float((fixed.last_spikes[0] != tr["spikes"][0]).mean()))
        per_episode.append(float(np.mean(hits)))
        agree += hits
    out = {"agreement": float(np.mean(agree)), "agreement_per_episode": per_episode,
           "state_error_mean": float(np.mean(h_err)), "state_error_max": float(np.max(h_err)),
           "spike_mismatch": float(np.mean(spike_diff))}
    if cont:
        out.update(action_error_mean=float(np.mean(a_err)), action_error_max=float(np.max(a_err)))
    return out


def float_returns(art: GRSNArtifact, seeds: list[int], epsilon: float) -> np.ndarray:
    """Returns of the float policy on the same seeds and epsilon draws."""
    m = art.manifest
    n_act, cont = int(m["n_actions"]), m["continuous"]
    net = float_policy(art)
    head = f"head{len(net.cfg.head)}"

    def policy(seed):
        rng, mem = np.random.default_rng(seed), {"state": net.zero_state(1), "a": start_actions(m, 1)[0], "r": 0.0}

        def act(obs):
            u = policy_inputs(np.ravel(obs)[None], [mem["a"]], [mem["r"]], n_act, cont)
            tr, mem["state"] = float_step(net, u, mem["state"])
            _, mem["a"], env_a = decision(m, rng, tr[head][0], epsilon, 0)
            return env_a

        def observe(obs, action, reward, terminated, truncated):
            mem["r"] = reward

        return act, observe

    return evaluate(functools.partial(make_env, art.env_spec), seeds, policy, max_steps=episode_limit(art.env_spec))


class GRSNDeployment(Deployment):
    """GRSN policies: one SNN step per env step, state carried; no kind-specific settings."""

    def check(self) -> None:
        check_task(float_policy(self.art).cfg, self.art.manifest["source"]["meta"], self.art.env_spec)

    def run_lava(self, progress: bool) -> EpisodeLog:
        return run_grsn_lava(self.art, self.seeds, self.epsilon, progress)

    def run_emulator(self, progress: bool) -> EpisodeLog:
        return run_grsn_emulator(self.art, self.seeds, self.epsilon, progress)

    def fidelity(self, log: EpisodeLog) -> Fidelity:
        fid = fidelity(self.art, log)
        return Fidelity(fid.pop("agreement"), fid.pop("agreement_per_episode"), fid)

    def source_returns(self) -> np.ndarray:
        return float_returns(self.art, self.seeds, self.epsilon)

    def ops(self, log: EpisodeLog) -> dict[str, int]:
        return dict(log.extra["ops"])

    def config(self) -> dict:
        return {"continuous": self.art.manifest["continuous"], "hidden": self.art.manifest["policy"]["hidden"]}

    @staticmethod
    def summary_lines(result) -> list[str]:
        d = result.details
        lines = [f"carried state: mean |h - h_float| {d['state_error_mean']:.4f} (max {d['state_error_max']:.4f}) "
                 f"threshold units; spike mismatch {d['spike_mismatch']:.4f}"]
        if "action_error_mean" in d:
            lines.append(f"continuous actions: agreement counts |a - a_float| <= {CONTINUOUS_TOLERANCE}; "
                         f"mean {d['action_error_mean']:.4f}, max {d['action_error_max']:.4f}")
        return lines
