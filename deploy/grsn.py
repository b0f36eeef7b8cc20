"""Deploy a GRSN artifact: the Lava graph, the fast emulator, and fidelity against the float policy.

Both backends run the artifact's stages with processes.dynamics.run_stage, one env step
per decision window, the GRSN state carried across env steps and zeroed at each
episode's start; the emulator batches the episodes. `fidelity` replays every episode
(seed and actions) through the float policy and the fixed-point network side by side.
"""
from __future__ import annotations

import functools
import time

import numpy as np
import torch
from tqdm import tqdm

from conversion.artifact import GRSNArtifact
from conversion.envs import EnvSpec, episode_limit, make_env
from conversion.grsn import check_task, float_step, policy_inputs
from conversion.models.grsn import PolicyConfig, RecurrentNet
from deploy.episodes import EpisodeLog, replay
from processes.dynamics import (continuous_action, encode_input, epsilon_greedy, prepare_stage, run_stage,
                                stage_ops)
from processes.envio.process import EnvIO
from processes.grsn.process import GRSNStack


def float_policy(art: GRSNArtifact) -> RecurrentNet:
    """The float source policy stored in the artifact."""
    cfg = dict(art.manifest["policy"])
    cfg["head"] = tuple(cfg["head"])
    net = RecurrentNet(PolicyConfig(**cfg))
    net.load_state_dict({k: torch.as_tensor(v) for k, v in art.source.items()})
    return net.eval()


def check_grsn_deployable(art: GRSNArtifact) -> None:
    """The artifact's env exists and observes what the policy was trained on."""
    check_task(float_policy(art).cfg, art.manifest["source"]["meta"], EnvSpec.from_dict(art.manifest["env"]))


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

    def step(self, u: np.ndarray, count: np.ndarray | None = None) -> np.ndarray:
        """Values (B, n_actions) for float inputs u (B, n_u); ops and spikes of rows `count` (bool) are counted."""
        x = encode_input(u, self.scale, self.bits)
        count = np.ones(len(x), bool) if count is None else count
        for st in self.stages:
            ops = stage_ops(st, x[count])
            for k in self.ops:
                self.ops[k] += int(np.sum(ops[k]))
            x = run_stage(st, x, self.state)
            if st["kind"] == "grsn":
                self.last_spikes = (x[:, : len(st["b_f"])] != 0).astype(np.int64)
                self.spikes += int(self.last_spikes[count].sum())
        return x


def run_grsn_emulator(art: GRSNArtifact, seeds: list[int], epsilon: float, progress: bool = True) -> EpisodeLog:
    """One episode per seed, all batched."""
    m = art.manifest
    spec = EnvSpec.from_dict(m["env"])
    n_act, limit, cont = int(m["n_actions"]), episode_limit(spec), m["continuous"]
    f_out = m["quantization"]["frac_bits"]["q"]
    n = len(seeds)
    net = FixedPointGRSN(art, n)
    envs = [make_env(spec) for _ in seeds]
    rngs = [np.random.default_rng(s) for s in seeds]
    obs = np.stack([np.ravel(env.reset(seed=s)[0]) for env, s in zip(envs, seeds)]).astype(np.float64)
    prev_a, prev_r = start_actions(m, n), np.zeros(n)
    returns, lengths = np.zeros(n), np.zeros(n, np.int64)
    actions, greedy = [[] for _ in seeds], [[] for _ in seeds]
    active = np.ones(n, bool)
    t0 = time.time()
    bar = tqdm(total=n, desc="episodes (emulator)", unit="ep", disable=not progress, leave=False)
    while active.any():
        q = net.step(policy_inputs(obs, prev_a, prev_r, n_act, cont), active)
        for e in np.flatnonzero(active):
            g, a, env_a = decision(m, rngs[e], q[e], epsilon, f_out)
            greedy[e].append(g)
            actions[e].append(a)
            o, r, term, trunc, _ = envs[e].step(env_a)
            obs[e], prev_a[e], prev_r[e] = np.ravel(o), a, r
            returns[e] += float(r)
            lengths[e] += 1
            if term or trunc or lengths[e] >= limit:
                active[e] = False
                bar.update(1)
    bar.close()
    for env in envs:
        env.close()
    return EpisodeLog(seeds=list(seeds), returns=returns, lengths=lengths,
                      actions=[np.asarray(a) for a in actions], greedy=[np.asarray(g) for g in greedy],
                      spikes=[net.spikes], synops=[net.ops["mac"] + net.ops["ac"]],
                      steps=int(lengths.sum()) * (len(art.stages) + 1), wall_s=time.time() - t0,
                      extra={"ops": dict(net.ops)})


def build_graph(art: GRSNArtifact, seeds: list[int], epsilon: float, max_steps: int) -> tuple[EnvIO, GRSNStack, int]:
    """EnvIO -> GRSNStack -> EnvIO; one decision window per env step."""
    m = art.manifest
    spec = EnvSpec.from_dict(m["env"])
    n_act, cont = int(m["n_actions"]), m["continuous"]
    depth = len(art.stages)
    envio = EnvIO(env_fn=functools.partial(make_env, spec), obs_size=art.stages[0]["weight"].shape[1] + 1,
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
    from deploy.runner import lava_config, lava_runtime, recorded_actions, run_episodes

    spec = EnvSpec.from_dict(art.manifest["env"])
    envio, stack, window = build_graph(art, seeds, epsilon, episode_limit(spec))
    with lava_runtime(envio):
        steps, wall, compile_s = run_episodes(envio, lava_config(), len(seeds), window * 200, progress)
        lengths = envio.lengths.get().astype(np.int64)
        actions, greedy = recorded_actions(envio, lengths, art.manifest["continuous"])
        mac, ac, neuron = (int(x) for x in stack.ops.get())
        return EpisodeLog(seeds=list(seeds), returns=envio.returns.get().astype(float), lengths=lengths,
                          actions=actions, greedy=greedy, spikes=[int(stack.spikes.get()[0])], synops=[mac + ac],
                          steps=steps, wall_s=wall,
                          extra={"ops": {"mac": mac, "ac": ac, "neuron": neuron}, "compile_s": compile_s})


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
    spec = EnvSpec.from_dict(m["env"])
    n_act, cont = int(m["n_actions"]), m["continuous"]
    net, env, out = float_policy(art), make_env(spec), []
    head = f"head{len(net.cfg.head)}"
    for seed in seeds:
        rng = np.random.default_rng(seed)
        obs, _ = env.reset(seed=seed)
        state, a, r, done, ret = net.zero_state(1), start_actions(m, 1)[0], 0.0, False, 0.0
        while not done:
            tr, state = float_step(net, policy_inputs(np.ravel(obs)[None], [a], [r], n_act, cont), state)
            _, a, env_a = decision(m, rng, tr[head][0], epsilon, 0)
            obs, r, term, trunc, _ = env.step(env_a)
            ret += float(r)
            done = term or trunc
        out.append(ret)
    env.close()
    return np.asarray(out)


def run_grsn(art: GRSNArtifact, seeds: list[int], epsilon: float = 0.0, backend: str = "lava",
             progress: bool = True) -> dict:
    """Episodes on a backend, their fidelity to the float policy and their energy: a results record."""
    from deploy.energy import energy_report
    from deploy.results import versions

    log = (run_grsn_lava if backend == "lava" else run_grsn_emulator)(art, seeds, epsilon, progress)
    fid = fidelity(art, log)
    src = float_returns(art, seeds, epsilon)
    steps = max(log.decisions, 1)
    return {
        "network": "grsn", "env": art.manifest["env"]["id"], "backend": backend,
        "profile": art.manifest["profile"]["name"], "epsilon": epsilon, "seeds": list(seeds),
        "episodes": [{"seed": s, "return": float(r), "length": int(l), "agreement": a, "source_return": float(sr)}
                     for s, r, l, a, sr in zip(log.seeds, log.returns, log.lengths,
                                               fid["agreement_per_episode"], src)],
        "mean_return": float(np.mean(log.returns)), "std_return": float(np.std(log.returns)),
        "source_mean_return": float(np.mean(src)),
        "return_ratio": float(np.mean(log.returns) / np.mean(src)) if np.mean(src) > 0 else None,
        "action_agreement": fid["agreement"],
        **{k: fid[k] for k in ("action_error_mean", "action_error_max") if k in fid},
        "state_error_mean": fid["state_error_mean"],
        "state_error_max": fid["state_error_max"], "spike_mismatch": fid["spike_mismatch"],
        "decisions": log.decisions, "grsn_spikes_per_step": log.spikes[0] / steps,
        "energy": energy_report(log.extra["ops"], steps),
        "backend_steps": log.steps, "steps_per_s": log.steps / log.wall_s if log.wall_s > 0 else None,
        "wall_s": log.wall_s, **{k: v for k, v in log.extra.items() if k != "ops"},
        "source_sha256": art.manifest["source"]["sha256"], "versions": versions(),
    }


def grsn_table(rec: dict) -> str:
    lines = [f"{rec['env']} on {rec['backend']} ({rec['profile']}, GRSN policy, epsilon={rec['epsilon']})",
             f"{'seed':>6} {'chip return':>12} {'float return':>13} {'length':>7} {'agreement':>10}"]
    for e in rec["episodes"]:
        lines.append(f"{e['seed']:>6} {e['return']:>12.1f} {e['source_return']:>13.1f} {e['length']:>7d} "
                     f"{e['agreement']:>10.4f}")
    ratio = rec["return_ratio"]
    en = rec["energy"]
    lines += [
        f"mean return: fixed point {rec['mean_return']:.1f} +- {rec['std_return']:.1f}, float "
        f"{rec['source_mean_return']:.1f}" + (f" (ratio {ratio:.3f})" if ratio is not None else ""),
        f"action agreement with the float GRSN: {rec['action_agreement']:.4f} over {rec['decisions']} steps"
        + (f" (|a - a_float| <= {CONTINUOUS_TOLERANCE}; mean {rec['action_error_mean']:.4f}, "
           f"max {rec['action_error_max']:.4f})" if "action_error_mean" in rec else ""),
        f"carried state: mean |h - h_float| {rec['state_error_mean']:.4f} (max {rec['state_error_max']:.4f}) "
        f"threshold units; spike mismatch {rec['spike_mismatch']:.4f}",
        f"per step: {rec['grsn_spikes_per_step']:.1f} GRSN spikes, {en['ops_per_step']['mac']:.0f} MAC, "
        f"{en['ops_per_step']['ac']:.0f} AC; energy {en['energy_per_step_nj']['cmos45']:.1f} nJ (45 nm), "
        f"{en['energy_per_step_nj']['loihi']:.1f} nJ (Loihi figures)",
        f"{rec['backend']}: {rec['backend_steps']} steps in {rec['wall_s']:.1f} s ({rec['steps_per_s']:.0f} steps/s)",
    ]
    return "\n".join(lines)
