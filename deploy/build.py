"""Build the Lava process graph of an artifact: EnvIO -> IF layers -> readout -> EnvIO."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

from conversion.artifact import Artifact
from conversion.envs import EnvSpec, make_env
from processes.envio.process import EnvIO
from processes.if_layers.process import IFLayer, ReadoutLayer


@dataclass
class Graph:
    envio: EnvIO
    layers: list            # IFLayer ..., ReadoutLayer
    window: int             # Lava steps per decision


def layer_exponents(art: Artifact) -> list[int]:
    """Synaptic shift of each layer; the first also undoes the input payload scale."""
    exps = [q.weight_exp for q in art.layers]
    exps[0] -= int(art.manifest["input_scale_bits"])
    return exps


def build_graph(art: Artifact, seeds: Sequence[int], timesteps: int, readout: str,
                epsilon: float, max_steps: int) -> Graph:
    """Processes for running `len(seeds)` episodes of `art` with the given settings."""
    prof = art.profile
    depth = len(art.layers)
    window = timesteps + depth
    spec = EnvSpec.from_dict(art.manifest["env"])
    envio = EnvIO(env_fn=functools.partial(make_env, spec), obs_size=art.layers[0].weight.shape[1],
                  n_actions=art.manifest["n_actions"], action_map=art.manifest["action_map"],
                  input_scale_bits=art.manifest["input_scale_bits"], input_bits=prof.input_bits,
                  timesteps=timesteps, latency=depth, seeds=seeds, epsilon=epsilon,
                  max_steps=max_steps)
    layers, src = [], envio.obs_out
    for i, (q, exp) in enumerate(zip(art.layers, layer_exponents(art))):
        common = dict(weight=q.weight, weight_exp=exp, bias=q.bias, vth=q.vth, v_init=q.v_init,
                      state_bits=prof.state_bits, offset=i, timesteps=timesteps, window=window,
                      name=f"layer{i}")
        layer = ReadoutLayer(readout=readout, **common) if i == depth - 1 else IFLayer(**common)
        src.connect(layer.s_in)
        src = layer.q_out if i == depth - 1 else layer.s_out
        layers.append(layer)
    src.connect(envio.q_in)
    return Graph(envio, layers, window)
