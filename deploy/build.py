"""Build the Lava process graph of an artifact: EnvIO -> IF stack(s) -> EnvIO."""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from lavaloop.conversion.artifact_if import IFArtifact
from lavaloop.envs import EnvSpec, make_env
from lavaloop.processes.envio.process import EnvIO
from lavaloop.processes.if_layers.process import IFStack


@dataclass
class Graph:
    envio: EnvIO
    stacks: list[IFStack]   # the network's layers, in order
    window: int             # Lava steps per decision


def build_graph(art: IFArtifact, seeds: Sequence[int], timesteps: int, readout: str,
                epsilon: float, max_steps: int, fuse: bool = True, plastic: bool = False,
                feature_rows: int = 1) -> Graph:
    """Processes for running `len(seeds)` episodes of `art`: one IFStack for the whole network
    (`fuse`), or one per layer. `plastic`: the output layer is a readout the host trains
    between episodes (IFStack `plastic`; EnvIO keeps its features in a ring of
    `feature_rows` decisions and holds each episode)."""
    prof = art.profile
    params = art.layer_params()
    depth = len(params)
    window = timesteps + depth
    spec = EnvSpec.from_dict(art.manifest["env"])
    envio = EnvIO(env_fn=functools.partial(make_env, spec), obs_size=art.layers[0].in_size,
                  n_actions=art.manifest["n_actions"], action_map=art.manifest["action_map"],
                  input_scale_bits=art.manifest["input_scale_bits"], input_bits=prof.input_bits,
                  timesteps=timesteps, latency=depth, seeds=seeds, epsilon=epsilon,
                  max_steps=max_steps, n_features=art.layers[-1].in_size if plastic else 0,
                  feature_rows=feature_rows, gated=plastic)
    groups = [range(depth)] if fuse else [range(i, i + 1) for i in range(depth)]
    stacks, src = [], envio.obs_out
    for g in groups:
        last = g[-1] == depth - 1
        stack = IFStack(layers=[params[i] for i in g], state_bits=prof.state_bits, offset=g[0],
                        timesteps=timesteps, window=window, readout=readout if last else None,
                        plastic=plastic and last, name=params[g[0]]["name"] if len(g) == 1 else "network")
        src.connect(stack.s_in)
        src = stack.s_out
        stacks.append(stack)
    src.connect(envio.q_in)
    if plastic:
        stacks[-1].f_out.connect(envio.f_in)
    return Graph(envio, stacks, window)
