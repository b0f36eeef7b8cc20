"""The fast emulator: the artifact's fixed-point network, vectorized over episodes, no Lava.

It calls the same processes.dynamics functions as the Lava ProcessModels and runs each
decision as the Lava pipeline does (every layer integrates `timesteps` steps of the
layer below, neurons reset per decision), so it is bit-exact with the Lava backend; a
test checks it on recorded runs.
"""
from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from lavaloop.conversion.artifact_if import IFArtifact
from lavaloop.deploy.episodes import EpisodeLog
from lavaloop.envs import EnvSpec, episode_limit, make_env
from lavaloop.processes.dynamics import Synapse, encode_input, if_steps, readout
from lavaloop.rollout import epsilon_greedy


class FixedPointNetwork:
    """Batched fixed-point forward pass of one decision window.

    Layers are computed one after the other over a chunk of time steps: a layer's synaptic
    currents depend only on the spikes of the layer below, so those of `chunk` steps are
    one matrix product (the input layer's, held for the whole window, just one), and only
    the IF update runs step by step. Chunks of ~64 rows (steps x batch) keep the products
    in cache. Same arithmetic, same order per neuron: bit-exact with the step-by-step
    Lava pipeline.
    """

    def __init__(self, art: IFArtifact, timesteps: int, readout_mode: str, chunk: int | None = None):
        self.layers = art.layer_params()
        self.synapses = [Synapse.from_params(l) for l in self.layers]
        self.bits = art.profile.state_bits
        self.timesteps, self.mode, self.chunk = timesteps, readout_mode, chunk
        self.spikes = np.zeros(len(self.layers), np.int64)
        self.synops = np.zeros(len(self.layers), np.int64)

    def decide(self, x: np.ndarray) -> np.ndarray:
        """Readout values for a batch of encoded observations x (B, n_in)."""
        v = [np.repeat(l["v_init"][None], len(x), axis=0).astype(np.int64) for l in self.layers]
        count = np.zeros_like(v[-1])
        held = self.synapses[0].current(x) + self.layers[0]["bias"]   # the observation is held:
        self.synops[0] += self.timesteps * self.synapses[0].synops(x)  # one current for every step
        chunk = self.chunk or max(4, 64 // len(x))
        for start in range(0, self.timesteps, chunk):
            steps = min(chunk, self.timesteps - start)
            inp = None
            for i, (l, syn) in enumerate(zip(self.layers, self.synapses)):
                if i == 0:
                    out = if_steps(v[0], held, l["vth"], self.bits, steps=steps)
                else:
                    flat = inp.reshape(-1, inp.shape[-1])
                    current = (syn.current(flat) + l["bias"]).reshape(steps, *v[i].shape)
                    out = if_steps(v[i], current, l["vth"], self.bits)
                    self.synops[i] += syn.synops(flat)
                self.spikes[i] += np.count_nonzero(out)
                inp = out
            count += inp.sum(axis=0, dtype=np.int64)
        return readout(count, v[-1], self.layers[-1]["vth"], self.mode)


def run_emulator(art: IFArtifact, seeds: list[int], timesteps: int, readout_mode: str,
                 epsilon: float, progress: bool = True) -> EpisodeLog:
    """Run one episode per seed, all episodes batched together."""
    with threadpool_limits(limits=1, user_api="blas"):  # small matrices: threads only contend
        return _run_batched(art, seeds, timesteps, readout_mode, epsilon, progress)


def _run_batched(art, seeds, timesteps, readout_mode, epsilon, progress) -> EpisodeLog:
    spec = EnvSpec.from_dict(art.manifest["env"])
    amap = art.manifest["action_map"]
    limit = episode_limit(spec)
    net = FixedPointNetwork(art, timesteps, readout_mode)
    scale, in_bits = 1 << int(art.manifest["input_scale_bits"]), art.profile.input_bits
    n = len(seeds)
    envs = [make_env(spec) for _ in seeds]
    rngs = [np.random.default_rng(s) for s in seeds]
    obs = [np.ravel(env.reset(seed=s)[0]) for env, s in zip(envs, seeds)]
    returns, lengths = np.zeros(n), np.zeros(n, np.int64)
    actions, greedy = [[] for _ in seeds], [[] for _ in seeds]
    active = list(range(n))
    t0, windows = time.time(), 0
    bar = tqdm(total=n, desc="episodes (emulator)", unit="ep", disable=not progress, leave=False)
    while active:
        q = net.decide(encode_input(np.stack([obs[e] for e in active]), scale, in_bits))
        windows += 1
        still = []
        for row, e in enumerate(active):
            g, a = epsilon_greedy(rngs[e], q[row], epsilon)
            greedy[e].append(g)
            actions[e].append(a)
            o, r, term, trunc, _ = envs[e].step(amap[a])
            obs[e] = np.ravel(o)
            returns[e] += float(r)
            lengths[e] += 1
            if term or trunc or lengths[e] >= limit:
                bar.update(1)
            else:
                still.append(e)
        active = still
    bar.close()
    for env in envs:
        env.close()
    return EpisodeLog(seeds=list(seeds), returns=returns, lengths=lengths,
                      actions=[np.asarray(a) for a in actions], greedy=[np.asarray(g) for g in greedy],
                      spikes=net.spikes.tolist(), synops=net.synops.tolist(),
                      steps=int(lengths.sum()) * (timesteps + len(art.layers)),
                      wall_s=time.time() - t0, extra={"batched_windows": windows})
