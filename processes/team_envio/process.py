"""TeamEnvIO: a cooperative multi-agent environment (PettingZoo parallel API) inside the Lava runtime."""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

from collections.abc import Callable, Sequence

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

from lavaloop.options import LAYOUTS
from lavaloop.processes.envio.process import ERROR_LEN

MAX_AGENTS = 8   # the process model declares this many per-agent ports


class TeamEnvIO(AbstractProcess):
    """Closes the loop between a team of recurrent policies and a parallel env.

    Every team step takes a window of `1 + latency` Lava steps: agent i's payload
    inputs_fn(...)[i] (its own observation, previous action and previous reward), followed by
    EnvIO's control entry (2 at an episode's first decision, 1 otherwise, 0 when idle), goes
    out in the window's first step; the agents' values come back at its last step. Each
    agent's action is epsilon-greedy over its own actions (the first `n_actions[i]` values),
    drawn in agent order from the episode's random stream, and the env steps with all of them.

    Layouts (Lava 0.10 compiles no port concatenation, so the process has ports for both):
    "per-agent", one network process per agent, connected to `obs_out_<i>` and `q_in_<i>`;
    "shared", one network process holding the agents as a batch, connected to `obs_out` and
    `q_in` (one row per agent). A ProcessModel needs every port it declares to exist, so
    there are always MAX_AGENTS per-agent pairs; those not connected stay idle.

    Episodes run with the given seeds; team returns (the sum of the agents' rewards), lengths
    and per-agent actions are left in Vars; an env exception is left in `error` as in EnvIO.

    Parameters
    ----------
    env_fn: builds the parallel env (called inside the runtime).
    agents: the agents' names, in port order. n_actions: each agent's action count.
    n_inputs: payload entries per agent before the control entry.
    inputs_fn: inputs_fn(obs dict, previous actions, previous rewards) -> (n_agents, n_inputs)
        floats (previous actions -1 at an episode's start).
    input_scale_bits, input_bits: payload round(x * 2**input_scale_bits), saturated.
    latency: Lava steps from the payload to the values (the network's stages).
    seeds, epsilon, max_steps: episodes, exploration, length of the action logs.
    layout: "per-agent" or "shared".
    """

    def __init__(self, *, env_fn: Callable, agents: Sequence[str], n_actions: Sequence[int], n_inputs: int,
                 inputs_fn: Callable, input_scale_bits: int, input_bits: int, latency: int, seeds: Sequence[int],
                 epsilon: float, max_steps: int, layout: str, name: str = "team_envio"):
        n = len(agents)
        if not 0 < n <= MAX_AGENTS:
            raise ValueError(f"TeamEnvIO takes 1 to {MAX_AGENTS} agents, got {n}")
        super().__init__(env_fn=env_fn, agents=list(agents), n_actions=list(n_actions), n_inputs=n_inputs,
                         inputs_fn=inputs_fn,
                         input_scale_bits=input_scale_bits, input_bits=input_bits, latency=latency,
                         seeds=list(seeds), epsilon=epsilon, max_steps=max_steps, layout=layout, name=name)
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}")
        width = max(n_actions)
        self.obs_out = OutPort(shape=(n, n_inputs + 1))
        self.q_in = InPort(shape=(n, width))
        for i in range(MAX_AGENTS):
            setattr(self, f"obs_out_{i}", OutPort(shape=(n_inputs + 1,)))
            setattr(self, f"q_in_{i}", InPort(shape=(width,)))
        n_ep = len(seeds)
        self.returns = Var(shape=(n_ep,), init=0.0)
        self.lengths = Var(shape=(n_ep,), init=0)
        self.actions = Var(shape=(n_ep, max_steps, n), init=-1)
        self.greedy = Var(shape=(n_ep, max_steps, n), init=-1)
        self.episodes_done = Var(shape=(1,), init=0)
        self.error = Var(shape=(ERROR_LEN,), init=0)

    def agent_ports(self, i: int) -> tuple[OutPort, InPort]:
        """Agent i's (payload, values) ports in the "per-agent" layout."""
        return getattr(self, f"obs_out_{i}"), getattr(self, f"q_in_{i}")
