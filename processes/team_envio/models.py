"""ProcessModel of TeamEnvIO (fixed-point: integer payloads and values)."""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavaloop.processes.dynamics import encode_input
from lavaloop.processes.envio.models import EnvGuard
from lavaloop.processes.envio.process import CONTROL_DECIDE, CONTROL_FIRST
from lavaloop.processes.team_envio.process import MAX_AGENTS, TeamEnvIO
from lavaloop.rollout import epsilon_greedy


@implements(proc=TeamEnvIO, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyTeamEnvIOModel(EnvGuard, PyLoihiProcessModel):
    obs_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)     # "shared" layout
    q_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    returns: np.ndarray = LavaPyType(np.ndarray, float)
    lengths: np.ndarray = LavaPyType(np.ndarray, np.int32)
    actions: np.ndarray = LavaPyType(np.ndarray, np.int32)
    greedy: np.ndarray = LavaPyType(np.ndarray, np.int32)
    episodes_done: np.ndarray = LavaPyType(np.ndarray, np.int32)
    error: np.ndarray = LavaPyType(np.ndarray, np.int32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self.agents, self.n_actions, self.seeds = p["agents"], p["n_actions"], p["seeds"]
        self.window = 1 + p["latency"]
        self.env = None
        self.episode = -1
        self.payload = None

    def exchange(self, payload: np.ndarray) -> np.ndarray:
        """Send every agent's payload row, receive every agent's values (one row each)."""
        if self.proc_params["layout"] == "shared":
            self.obs_out.send(payload)
            return self.q_in.recv()
        for i in range(len(self.agents)):
            getattr(self, f"obs_out_{i}").send(payload[i])
        return np.stack([getattr(self, f"q_in_{i}").recv() for i in range(len(self.agents))])

    def encode(self, obs: dict) -> np.ndarray:
        p = self.proc_params
        x = encode_input(p["inputs_fn"](obs, self.prev_actions, self.prev_rewards), 1 << p["input_scale_bits"],
                         p["input_bits"])
        control = np.full((len(x), 1), CONTROL_FIRST if self.t == 0 else CONTROL_DECIDE)
        return np.concatenate([x, control], axis=1)

    def start_episode(self) -> None:
        self.episode += 1
        if self.episode >= len(self.seeds):
            self.payload = np.zeros_like(self.payload)
            self.env.close()
            return
        seed = self.seeds[self.episode]
        self.t, self.rng = 0, np.random.default_rng(seed)
        self.prev_actions, self.prev_rewards = np.full(len(self.agents), -1), np.zeros(len(self.agents))
        obs, _ = self.env.reset(seed=seed)
        self.payload = self.encode(obs)

    def decide(self, q: np.ndarray) -> None:
        ep, t = self.episode, self.t
        picks = [epsilon_greedy(self.rng, q[i, :n], self.proc_params["epsilon"]) for i, n in enumerate(self.n_actions)]
        self.greedy[ep, t] = [g for g, _ in picks]
        self.actions[ep, t] = [a for _, a in picks]
        obs, rewards, term, trunc, _ = self.env.step({name: a for name, (_, a) in zip(self.agents, picks)})
        r = np.array([rewards[name] for name in self.agents], float)
        self.returns[ep] += float(r.sum())
        self.t, self.prev_actions, self.prev_rewards = t + 1, np.array([a for _, a in picks]), r
        self.lengths[ep] = self.t
        ended = any(term.values()) or any(trunc.values()) or not self.env.agents
        if ended or self.t >= self.proc_params["max_steps"]:
            self.episodes_done[0] += 1
            self.start_episode()
        else:
            self.payload = self.encode(obs)

    def run_spk(self):
        if self.payload is None:
            self.payload = np.zeros((len(self.agents), self.proc_params["n_inputs"] + 1), np.int64)
            self.guarded(self.open_env)
        phase = (self.time_step - 1) % self.window
        running = self.episode < len(self.seeds)
        q = self.exchange(self.payload if running and phase == 0 else np.zeros_like(self.payload))
        if phase == self.window - 1 and running:
            self.guarded(self.decide, q.astype(np.int64))


for _i in range(MAX_AGENTS):   # "per-agent" layout (see TeamEnvIO)
    setattr(PyTeamEnvIOModel, f"obs_out_{_i}", LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24))
    setattr(PyTeamEnvIOModel, f"q_in_{_i}", LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24))
del _i
