"""The deployed network playing one adaptation episode at a time, its readout rewritable
between episodes: on Lava (one runtime for the whole run) or on the bit-exact emulator."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lavaloop.conversion.artifact_if import IFArtifact
from lavaloop.deploy.emulator import FixedPointNetwork
from lavaloop.deploy.episodes import play_batched, run_envio_episodes
from lavaloop.envs import episode_limit
from lavaloop.processes.dynamics import encode_input
from lavaloop.rollout import epsilon_greedy


@dataclass
class Played:
    """One episode as the chip played it: the readout's input counts per decision, the taken
    and greedy action indices, the return."""

    features: np.ndarray
    actions: np.ndarray
    greedy: np.ndarray
    ret: float


def with_readout(art: IFArtifact, weight: np.ndarray, weight_exp: int, bias: np.ndarray) -> IFArtifact:
    """`art` with its output layer's weight mantissa, exponent and bias replaced."""
    q = art.layers[-1]
    return replace(art, layers=[*art.layers[:-1], replace(q, weight=weight.astype(q.weight.dtype),
                                                          weight_exp=int(weight_exp), bias=bias.astype(np.int64))])


class EmulatorChip:
    """The emulator (deploy.emulator) playing the episodes of `seeds` in order."""

    def __init__(self, art: IFArtifact, seeds: list[int], timesteps: int, epsilon: float):
        self.art, self.seeds, self.epsilon = art, list(seeds), epsilon
        self.net = FixedPointNetwork(art, timesteps, "robust")
        self.next = 0

    def play(self) -> Played:
        art, amap, features = self.art, self.art.manifest["action_map"], []
        scale, bits = 1 << int(art.manifest["input_scale_bits"]), art.profile.input_bits

        def values(active, obs, prev_actions, prev_rewards):
            v = self.net.decide(encode_input(obs, scale, bits))
            features.append(self.net.features[0])
            return v

        def decide(rng, row):
            g, a = epsilon_greedy(rng, row, self.epsilon)
            return g, a, amap[a]

        seed = self.seeds[self.next]
        self.next += 1
        p = play_batched(art.env_spec, [seed], values, decide, -1, progress=False)
        return Played(np.asarray(features), p.actions[0], p.greedy[0], float(p.returns[0]))

    def set_readout(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.net.set_readout(weight, bias)

    def close(self, interrupted: bool = False) -> None:
        pass


class LavaChip:
    """One Lava runtime for all episodes of `seeds`: EnvIO holds each episode until the host
    has read the last one and written the new readout (IFStack `plastic`)."""

    def __init__(self, art: IFArtifact, seeds: list[int], timesteps: int, epsilon: float):
        from lavaloop.deploy.build import build_graph
        from lavaloop.runtime import LavaRuntime

        self.graph = build_graph(art, seeds, timesteps, "robust", epsilon, episode_limit(art.env_spec),
                                 plastic=True)
        self.rt = LavaRuntime(self.graph.envio)
        self.next, self.started = 0, False

    def play(self) -> Played:
        g, k = self.graph, self.next
        if not self.started:
            self.rt.__enter__()
            self.started = True
        elif k > 0:
            g.envio.episodes_allowed.set(np.array([k + 1]))
        # the chunk runs past the episode's end into idle windows; nothing is decided there
        run_envio_episodes(self.rt, g.envio, k + 1, g.window * 25, progress=False)
        self.next += 1
        length = int(g.envio.lengths.get()[k])
        return Played(g.envio.features.get()[:length].astype(np.int64),
                      g.envio.actions.get()[k, :length].astype(np.int64),
                      g.envio.greedy.get()[k, :length].astype(np.int64), float(g.envio.returns.get()[k]))

    def set_readout(self, weight: np.ndarray, bias: np.ndarray) -> None:
        if not self.started:
            raise RuntimeError("LavaChip: build it with the readout to start from")
        stack = self.graph.stacks[-1]
        stack.w_out.set(weight.astype(np.int64))
        stack.b_out.set(bias.astype(np.int64))

    def close(self, interrupted: bool = False) -> None:
        if self.started:
            exc = KeyboardInterrupt() if interrupted else None
            self.rt.__exit__(type(exc) if exc else None, exc, None)


CHIPS = {"emulator": EmulatorChip, "lava": LavaChip}
