"""What a backend returns after running episodes, the EnvIO episode loop on Lava, and replay.

Every kind's Lava runner closes the loop through EnvIO (processes.envio) and runs it with
`run_envio_episodes`; every fidelity check regenerates the visited observations with
`replay` (seed + actions, checked by the return).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from lavaloop import runtime
from lavaloop.envs import EnvSpec, episode_limit, make_env
from lavaloop.errors import LavaloopError
from lavaloop.processes.dynamics import encode_input
from lavaloop.rollout import epsilon_greedy, run_episode
from lavaloop.runtime import LavaRuntime, LavaRuntimeError


@dataclass
class EpisodeLog:
    """Per-episode outcome of a backend run plus activity counters (totals over the run)."""

    seeds: list[int]
    returns: np.ndarray
    lengths: np.ndarray
    actions: list[np.ndarray]         # taken actions per episode (indices, or rows of continuous actions)
    greedy: list[np.ndarray]          # the network's greedy action per decision
    spikes: list[int]                 # per layer (or per spiking population)
    synops: list[int]                 # per layer
    steps: int                        # backend time steps executed
    wall_s: float
    agents: int = 1                   # agents deciding at every env step (a team)
    extra: dict = field(default_factory=dict)

    @classmethod
    def batched(cls, played: Played, seeds: list[int], spikes, synops, steps_per_decision: int,
                extra: dict | None = None) -> EpisodeLog:
        """The log of a `play_batched` run; `extra` gains the number of batched windows."""
        return cls(seeds=list(seeds), returns=played.returns, lengths=played.lengths, actions=played.actions,
                   greedy=played.greedy, spikes=list(spikes), synops=list(synops),
                   steps=int(played.lengths.sum()) * steps_per_decision, wall_s=played.wall_s,
                   extra={"batched_windows": played.rounds, **(extra or {})})

    @property
    def decisions(self) -> int:
        """Decisions taken: env steps times deciding agents."""
        return int(self.lengths.sum()) * self.agents


@dataclass
class Played:
    """Per-episode outcome of `play_batched`."""

    returns: np.ndarray
    lengths: np.ndarray
    actions: list[np.ndarray]
    greedy: list[np.ndarray]
    rounds: int
    wall_s: float


def play_batched(spec: EnvSpec, seeds: list[int], values: Callable, decide: Callable, start_action,
                 progress: bool = True) -> Played:
    """One episode per seed, stepped together: every emulator's episode loop.

    Parameters
    ----------
    spec: the environment (one instance per episode); episodes end when the env ends them
        or at `episode_limit(spec)` steps.
    seeds: episode seeds (env reset; each episode's random stream for `decide`).
    values: values(active, obs, prev_actions, prev_rewards) -> one row of decision values per
        active episode (`active`: their indices, in order; the other arrays hold those
        episodes' raveled observations, previous taken actions and previous rewards).
    decide: decide(rng, row) -> (greedy, taken, env action) of one episode.
    start_action: the "previous action" at an episode's start.
    progress: show a progress bar.
    """
    n, limit = len(seeds), episode_limit(spec)
    rngs = [np.random.default_rng(s) for s in seeds]
    prev_a, prev_r = [start_action] * n, np.zeros(n)
    returns, lengths = np.zeros(n), np.zeros(n, np.int64)
    actions, greedy = [[] for _ in seeds], [[] for _ in seeds]
    active, rounds, t0 = list(range(n)), 0, time.time()
    envs: list = []
    bar = tqdm(total=n, desc="episodes (emulator)", unit="ep", disable=not progress, leave=False)
    try:
        for _ in seeds:
            envs.append(make_env(spec))
        obs = [np.ravel(env.reset(seed=s)[0]) for env, s in zip(envs, seeds)]
        while active:
            q = values(np.asarray(active), np.stack([obs[e] for e in active]),
                       np.stack([np.asarray(prev_a[e]) for e in active]), prev_r[active])
            rounds += 1
            still = []
            for row, e in enumerate(active):
                g, a, env_a = decide(rngs[e], q[row])
                greedy[e].append(g)
                actions[e].append(a)
                o, r, term, trunc, _ = envs[e].step(env_a)
                obs[e], prev_a[e], prev_r[e] = np.ravel(o), a, r
                returns[e] += float(r)
                lengths[e] += 1
                if term or trunc or lengths[e] >= limit:
                    bar.update(1)
                else:
                    still.append(e)
            active = still
    finally:
        bar.close()
        for env in envs:
            env.close()
    return Played(returns, lengths, [np.asarray(a) for a in actions], [np.asarray(g) for g in greedy], rounds,
                  time.time() - t0)


def play_feedforward(art, seeds: list[int], values: Callable, in_bits: int, epsilon: float,
                     progress: bool) -> Played:
    """One episode per seed of a feed-forward DQN artifact on an emulator, all batched
    (`play_batched`): each observation encoded at the artifact's input scale in `in_bits`
    bits, epsilon-greedy over values(active, payload) (one row per active episode)."""
    amap, scale = art.manifest["action_map"], 1 << int(art.manifest["input_scale_bits"])

    def decide(rng, row):
        g, a = epsilon_greedy(rng, row, epsilon)
        return g, a, amap[a]

    with threadpool_limits(limits=1, user_api="blas"):   # small matrices: threads only contend
        return play_batched(art.env_spec, seeds,
                            lambda active, obs, prev_a, prev_r: values(active, encode_input(obs, scale, in_bits)),
                            decide, -1, progress)


def run_chunk(rt: LavaRuntime, envio, chunk: int, timeout: float = runtime.HANG_TIMEOUT_S) -> None:
    """Run a started runtime for `chunk` steps under the watchdog; an error EnvIO caught is raised here."""
    from lavaloop.processes.envio.process import decode_error

    rt.run(chunk, timeout=timeout)
    error = decode_error(envio.error.get())
    if error:
        raise LavaRuntimeError(f"environment failed inside the Lava runtime: {error}")


def run_envio_episodes(rt: LavaRuntime, envio, episodes: int, chunk: int, progress: bool) -> tuple[int, float]:
    """Run a started runtime in chunks of `chunk` steps (`run_chunk`) until EnvIO has played
    `episodes`. Returns (Lava steps, wall seconds).
    """
    bar = tqdm(total=episodes, desc="episodes (lava)", unit="ep", disable=not progress, leave=False)
    try:
        t0 = time.time()
        steps = done = 0
        slowest = wall_so_far = 0.0
        while done < episodes:
            run_chunk(rt, envio, chunk, timeout=max(runtime.HANG_TIMEOUT_S, 20 * slowest))
            slowest = max(slowest, time.time() - t0 - wall_so_far)
            wall_so_far = time.time() - t0
            steps += chunk
            now = int(envio.episodes_done.get()[0])
            bar.update(now - done)
            done = now
        return steps, time.time() - t0
    finally:
        bar.close()


def recorded_actions(envio, lengths: np.ndarray, continuous: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Taken and greedy actions per episode, from EnvIO's logs (indices, or rows of continuous actions)."""
    dtype = np.float64 if continuous else np.int64
    actions, greedy = envio.actions.get(), envio.greedy.get()
    return ([actions[i, :l].astype(dtype) for i, l in enumerate(lengths)],
            [greedy[i, :l].astype(dtype) for i, l in enumerate(lengths)])


def replay(spec: EnvSpec, seed: int, actions, expected_return: float,
           before_step=None) -> tuple[np.ndarray, np.ndarray]:
    """(observations, rewards) of an episode regenerated from its seed and env actions.

    Parameters
    ----------
    spec: the environment. seed: the episode's seed.
    actions: the env actions taken (indices, or vectors for a continuous action space).
    expected_return: the run's return; a different replayed return raises LavaloopError.
    before_step: optional before_step(env, t), called before step t to probe the env; it
        must leave the env as it was.
    """
    env = make_env(spec)
    obs, rewards, it = [], [], iter(actions)

    def act(o):
        if before_step is not None:
            before_step(env, len(obs))
        obs.append(np.asarray(o, np.float32).ravel())
        a = next(it)
        return a if np.ndim(a) else int(a)

    try:
        run_episode(env, seed, act, lambda o, a, r, term, trunc: rewards.append(r), max_steps=len(actions))
    finally:
        env.close()
    if not np.isclose(sum(rewards), expected_return):
        raise LavaloopError(f"replay of seed {seed} gave return {sum(rewards)}, the run {expected_return}: "
                            "the environment is not deterministic under its seed")
    return np.asarray(obs), np.asarray(rewards)


def idle_corrected_counters(rt, stacks: list, window: int, idle_windows: int) -> tuple[list[int], list[int]]:
    """Spike and synop totals of the decision windows only.

    The last chunk runs past the last decision; those idle windows (zero input, fresh
    state) are all alike, so one more window measures what each of them added.
    """
    def read():
        return (np.concatenate([s.spikes.get() for s in stacks]).astype(np.int64),
                np.concatenate([s.synops.get() for s in stacks]).astype(np.int64))

    spikes, synops = read()
    rt.run(window)
    spikes2, synops2 = read()
    return ((spikes - idle_windows * (spikes2 - spikes)).tolist(),
            (synops - idle_windows * (synops2 - synops)).tolist())
