"""ProcessModel of EnvIO (fixed-point: integer observation payload and readout)."""
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

from lavaloop.processes.dynamics import continuous_action, encode_input
from lavaloop.processes.envio.process import CONTROL_DECIDE, CONTROL_FIRST, EnvIO, encode_error
from lavaloop.rollout import epsilon_greedy


class EnvGuard:
    """What a ProcessModel that owns an environment shares (EnvIO, TeamEnvIO): the env is built
    inside the runtime, and an exception from it must not reach the runtime (the other
    processes would wait forever): it is left in the `error` Var and the model goes idle.
    The model provides `seeds`, `payload` (already allocated), `error` and `start_episode`."""

    def open_env(self) -> None:
        self.env = self.proc_params["env_fn"]()
        self.start_episode()

    def fail(self, exc: Exception) -> None:
        """Record the error for the host and go idle."""
        msg = encode_error(exc, len(self.error))
        self.error[: len(msg)] = msg
        self.episode = len(self.seeds)
        self.payload = np.zeros_like(self.payload)

    def guarded(self, fn, *args) -> None:
        """Run env work, turning an exception into `fail`."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001
            self.fail(exc)


@implements(proc=EnvIO, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyEnvIOModel(EnvGuard, PyLoihiProcessModel):
    obs_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    q_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    returns: np.ndarray = LavaPyType(np.ndarray, float)
    lengths: np.ndarray = LavaPyType(np.ndarray, np.int32)
    actions: np.ndarray = LavaPyType(np.ndarray, float)      # indices, or continuous actions
    greedy: np.ndarray = LavaPyType(np.ndarray, float)
    episodes_done: np.ndarray = LavaPyType(np.ndarray, np.int32)
    decisions: np.ndarray = LavaPyType(np.ndarray, np.int32)
    error: np.ndarray = LavaPyType(np.ndarray, np.int32)
    f_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    features: np.ndarray = LavaPyType(np.ndarray, np.int64)
    episodes_allowed: np.ndarray = LavaPyType(np.ndarray, np.int32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self.timesteps, self.window = p["timesteps"], p["timesteps"] + p["latency"]
        self.seeds, self.epsilon, self.max_steps = p["seeds"], p["epsilon"], p["max_steps"]
        self.action_map, self.frac_bits = p["action_map"], p["continuous_frac_bits"]
        self.n_features = p["n_features"]
        self.env = None
        self.episode = -1          # index of the running episode; len(seeds) when finished
        self.waiting = False       # the episode waits for the host (episodes_allowed)
        self.payload = None

    def encode(self, obs) -> np.ndarray:
        p = self.proc_params
        raw = np.ravel(obs) if p["inputs_fn"] is None else p["inputs_fn"](obs, self.prev_action, self.prev_reward)
        x = encode_input(raw, 1 << p["input_scale_bits"], p["input_bits"])
        return np.append(x, CONTROL_FIRST if self.t == 0 else CONTROL_DECIDE) if p["control"] else x

    def start_episode(self) -> None:
        self.episode += 1
        if self.episode >= len(self.seeds):
            self.payload = np.zeros_like(self.payload)
            self.env.close()
            return
        self.waiting = self.episode >= self.episodes_allowed[0]
        if self.waiting:
            self.payload = np.zeros_like(self.payload)
        else:
            self.begin_episode()

    def begin_episode(self) -> None:
        self.waiting = False
        self.t, self.prev_action, self.prev_reward = 0, -1 if self.frac_bits is None else None, 0.0
        seed = self.seeds[self.episode]
        self.rng = np.random.default_rng(seed)
        obs, _ = self.env.reset(seed=seed)
        self.payload = self.encode(obs)

    def decide(self, q: np.ndarray, features: np.ndarray | None) -> None:
        if self.frac_bits is None:
            greedy, taken = epsilon_greedy(self.rng, q, self.epsilon)
            env_action = self.action_map[taken]
        else:
            greedy, taken = continuous_action(self.rng, q, self.frac_bits, self.epsilon)
            env_action = taken
        ep, t = self.episode, self.t
        self.greedy[ep, t], self.actions[ep, t] = greedy, taken
        if features is not None:
            self.features[self.decisions[0] % len(self.features)] = features
        obs, reward, term, trunc, _ = self.env.step(env_action)
        self.returns[ep] += float(reward)
        self.t, self.prev_action, self.prev_reward = self.t + 1, taken, float(reward)
        self.lengths[ep] = self.t
        self.decisions[0] += 1
        if term or trunc or self.t >= self.max_steps:
            self.episodes_done[0] += 1
            self.start_episode()
        else:
            self.payload = self.encode(obs)


    def run_spk(self):
        if self.payload is None:
            self.payload = np.zeros(self.obs_out.shape, np.int64)
            self.guarded(self.open_env)
        phase = (self.time_step - 1) % self.window
        if self.waiting and phase == 0 and self.episode < self.episodes_allowed[0]:
            self.guarded(self.begin_episode)
        running = self.episode < len(self.seeds) and not self.waiting
        self.obs_out.send(self.payload if running and phase < self.timesteps else np.zeros_like(self.payload))
        q = self.q_in.recv()
        features = self.f_in.recv().astype(np.int64) if self.n_features else None
        if phase == self.window - 1 and running:
            self.guarded(self.decide, q, features)
