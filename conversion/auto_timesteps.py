"""`--timesteps auto`: the smallest T at which the converted network decides as its source.

The network is run as deployed (the bit-exact emulator's decision window) on held-out
episodes of the source, one decision per observation, for T = 1, 2, 4, ... up to
`max_timesteps`; the first T whose agreement with the source's greedy action reaches the
target is chosen. The target is 0.99, or the network's own ceiling (its T -> infinity limit,
`quantize.rate_limit`, on the same observations) minus 0.005 where that is lower: no T can
pass the ceiling.
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from lavaloop.conversion.models.qnet import FeedForwardQ
from lavaloop.conversion.quantize import rate_limit

DEFAULT_TARGET = 0.99
CEILING_MARGIN = 0.005


def window_agreement(art, source: FeedForwardQ, obs: np.ndarray, timesteps: int, chunk: int = 256) -> float:
    """Fraction of observations on which the deployed network at T picks the source's action."""
    from lavaloop.deploy.emulator import FixedPointNetwork
    from lavaloop.processes.dynamics import encode_input

    net = FixedPointNetwork(art, timesteps, art.manifest["readout"])
    scale, bits = 1 << int(art.manifest["input_scale_bits"]), art.profile.input_bits
    same = 0
    for i in range(0, len(obs), chunk):
        x = obs[i:i + chunk]
        values = net.decide(encode_input(x.reshape(len(x), -1), scale, bits))
        same += int((values.argmax(1) == source.q_values(x).argmax(1)).sum())
    return same / max(len(obs), 1)


def choose_timesteps(art, source: FeedForwardQ, obs: np.ndarray, target: float = DEFAULT_TARGET,
                     max_timesteps: int = 512) -> dict:
    """Measure agreement at T = 1, 2, 4, ... and pick the first T that reaches the target.

    Parameters
    ----------
    art: the converted IFArtifact (its T is ignored). source: the float source network.
    obs: held-out observations. target: agreement wanted. max_timesteps: the largest T tried.

    Returns {"target", "ceiling", "curve": {T: agreement}, "chosen": T}; when no T reaches
    the target, the T with the best agreement.
    """
    ceiling = float(np.mean(rate_limit(art.layers, obs.reshape(len(obs), -1)).argmax(1)
                            == source.q_values(obs).argmax(1)))
    goal = min(target, ceiling - CEILING_MARGIN)
    curve: dict[int, float] = {}
    t = 1
    with tqdm(desc="choosing T", unit="T", leave=False, disable=None) as bar:
        while t <= max_timesteps:
            curve[t] = window_agreement(art, source, obs, t)
            bar.update(1)
            if curve[t] >= goal:
                break
            t *= 2
    reached = [t for t, a in curve.items() if a >= goal]
    chosen = reached[0] if reached else max(curve, key=curve.get)
    return {"target": target, "ceiling": ceiling, "goal": goal, "curve": {str(k): v for k, v in curve.items()},
            "chosen": chosen, "observations": len(obs)}
