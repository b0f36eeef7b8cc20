"""The deployed network playing one adaptation episode at a time, its readout rewritable
between episodes: on Lava (one runtime for the whole run) or on the bit-exact emulator,
for the rate-coded and the sigma-delta kinds."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lavaloop.deploy.emulator import FixedPointNetwork
from lavaloop.deploy.episodes import play_feedforward, run_chunk
from lavaloop.deploy.sigma_delta import SigmaDeltaNetwork
from lavaloop.envs import episode_limit


@dataclass
class ChipEpisode:
    """One episode as the chip played it: the readout's input counts per decision, the taken
    and greedy action indices, the return."""

    features: np.ndarray
    actions: np.ndarray
    greedy: np.ndarray
    ret: float


def with_readout(art, weight: np.ndarray, bias: np.ndarray, chip: dict):
    """`art` with its output layer's weight mantissa and bias replaced, and its configuration
    set to `chip` (Readout.chip: the rate-coded exponent or the sigma-delta state scale)."""
    q = art.layers[-1]
    return replace(art, layers=[*art.layers[:-1], replace(q, weight=weight.astype(q.weight.dtype),
                                                          bias=bias.astype(np.int64), **chip)])


class EmulatorChip:
    """The emulator (deploy.emulator or deploy.sigma_delta) playing the episodes of `seeds` in order.

    Parameters
    ----------
    art: the artifact, its readout as the run starts. seeds: one episode each, in order.
    timesteps: T (rate-coded). epsilon: the decisions' exploration.
    """

    def __init__(self, art, seeds: list[int], timesteps: int | None, epsilon: float):
        self.art, self.seeds, self.epsilon = art, list(seeds), epsilon
        self.sd = art.kind == "sigma-delta"
        self.net = SigmaDeltaNetwork(art, 1) if self.sd else FixedPointNetwork(art, timesteps, "robust")
        self.next = 0

    def decide(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values, features) of one encoded observation (a batch of one)."""
        if self.sd:
            v = self.net.decide(np.zeros(1, np.int64), x)
            return v, self.net.features[0].copy()
        v = self.net.decide(x)
        return v, self.net.features[0]

    def play(self) -> ChipEpisode:
        features = []
        if self.sd:
            self.net.restart(np.zeros(1, np.int64))

        def values(active, payload):
            v, f = self.decide(payload)
            features.append(f)
            return v

        seed = self.seeds[self.next]
        self.next += 1
        p = play_feedforward(self.art, [seed], values, self.art.profile.input_bits, self.epsilon, progress=False)
        return ChipEpisode(np.asarray(features), p.actions[0], p.greedy[0], float(p.returns[0]))

    def set_readout(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.net.set_readout(weight, bias)

    def close(self, interrupted: bool = False) -> None:
        pass


CHUNK_DECISIONS = 25    # Lava runs of this many decision windows; EnvIO's feature ring holds as many


class LavaChip:
    """One Lava runtime for all episodes of `seeds`: EnvIO holds each episode until the host
    has read the last one and written the new readout (IFStack / SigmaDeltaStack `plastic`).
    The runtime runs in chunks of CHUNK_DECISIONS windows; after each the host reads the
    features of the decisions made in it from EnvIO's ring. Parameters as EmulatorChip's."""

    def __init__(self, art, seeds: list[int], timesteps: int | None, epsilon: float):
        from lavaloop.runtime import LavaRuntime

        limit = episode_limit(art.env_spec)
        if art.kind == "sigma-delta":
            from lavaloop.deploy.sigma_delta import build_graph as build_sd

            self.envio, self.readout = build_sd(art, seeds, epsilon, limit, plastic=True,
                                                feature_rows=CHUNK_DECISIONS)
            self.window = art.window
        else:
            from lavaloop.deploy.build import build_graph

            g = build_graph(art, seeds, timesteps, "robust", epsilon, limit, plastic=True,
                            feature_rows=CHUNK_DECISIONS)
            self.envio, self.readout, self.window = g.envio, g.stacks[-1], g.window
        self.rt = LavaRuntime(self.envio)
        self.next, self.started, self.decided = 0, False, 0

    def play(self) -> ChipEpisode:
        envio, k = self.envio, self.next
        if not self.started:
            self.rt.__enter__()
            self.started = True
        elif k > 0:
            envio.episodes_allowed.set(np.array([k + 1]))
        features = []
        while True:       # the last chunk runs past the episode's end into idle windows: nothing is decided there
            run_chunk(self.rt, envio, self.window * CHUNK_DECISIONS)
            decided = int(envio.decisions.get()[0])
            if decided > self.decided:
                ring = envio.features.get().astype(np.int64)
                features += [ring[d % CHUNK_DECISIONS] for d in range(self.decided, decided)]
                self.decided = decided
            if int(envio.episodes_done.get()[0]) > k:
                break
        self.next += 1
        length = int(envio.lengths.get()[k])
        return ChipEpisode(np.asarray(features), envio.actions.get()[k, :length].astype(np.int64),
                           envio.greedy.get()[k, :length].astype(np.int64), float(envio.returns.get()[k]))

    def set_readout(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Write the readout the next episode uses (after `play`: the runtime is paused)."""
        self.readout.w_out.set(weight.astype(np.int64))
        self.readout.b_out.set(bias.astype(np.int64))

    def close(self, interrupted: bool = False) -> None:
        """Stop the runtime; after an interrupt, terminate it (a message may be half-read)."""
        if self.started and interrupted:
            self.rt.kill()
        elif self.started:
            self.rt.stop()


CHIPS = {"emulator": EmulatorChip, "lava": LavaChip}
