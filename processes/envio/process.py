"""EnvIO: a gymnasium environment living inside the Lava runtime."""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

from collections.abc import Callable, Sequence

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class EnvIO(AbstractProcess):
    """Closes the loop between a rate-coded network and an environment.

    Every decision takes a window of `timesteps + latency` Lava steps: the encoded
    observation is sent on `obs_out` for the first `timesteps` steps, the readout arrives
    on `q_in` at the window's last step, and the action decoded from it steps the
    environment. Episodes run with the given seeds (env reset and epsilon draws); their
    returns, lengths and actions are left in Vars. An exception raised by the environment
    does not escape into the runtime (Lava would hang waiting for the other processes):
    its message is left in the `error` Var as ASCII codes and EnvIO goes idle.

    With `inputs_fn` (recurrent policies), the payload is inputs_fn(obs, previous action,
    previous reward) (previous action -1, or None for continuous actions, at an episode's
    start) followed by a control entry: 2 for an episode's first decision, 1 for any other
    decision, 0 when idle. `control` adds that entry to a plain observation payload too
    (networks whose state lives across decisions and restarts with each episode).

    Actions are epsilon-greedy over the readout values (`action_map` gives the env's
    action), or, with `continuous_frac_bits`, a continuous action in [-1, 1] per readout:
    tanh of the fixed-point value (processes.dynamics.continuous_action); the action logs
    then hold one row of `n_actions` values per step.

    For a host that trains the network's readout between episodes (lavaloop.deploy.adapt),
    `n_features` > 0 keeps the features arriving on `f_in` with each decision in `features`,
    a ring of `feature_rows` rows (decision d in row d mod feature_rows; a host reads it after
    every run of at most that many decisions: Lava sends a Var element by element, so a
    whole episode's log would cost seconds to read), and `gated` holds each episode until
    the host allows it: episode k starts once `episodes_allowed` > k (initially 1);
    meanwhile EnvIO sends zeros and decides nothing.

    Parameters
    ----------
    env_fn: builds the environment (called inside the runtime).
    inputs_fn: optional, see above.
    input_scale_bits, input_bits: payload round(obs * 2**input_scale_bits), saturated.
    max_steps: length of the per-episode action logs.
    n_features, feature_rows, gated: see above.
    """

    def __init__(self, *, env_fn: Callable, obs_size: int, n_actions: int, action_map: Sequence[int],
                 input_scale_bits: int, input_bits: int, timesteps: int, latency: int,
                 seeds: Sequence[int], epsilon: float, max_steps: int, inputs_fn: Callable | None = None,
                 continuous_frac_bits: int | None = None, control: bool = False, n_features: int = 0,
                 feature_rows: int = 1, gated: bool = False, name: str = "envio"):
        control = control or inputs_fn is not None
        super().__init__(env_fn=env_fn, inputs_fn=inputs_fn, control=control, action_map=list(action_map),
                         input_scale_bits=input_scale_bits,
                         input_bits=input_bits, timesteps=timesteps, latency=latency,
                         seeds=list(seeds), epsilon=epsilon, max_steps=max_steps,
                         continuous_frac_bits=continuous_frac_bits, n_features=n_features, name=name)
        n_ep = len(seeds)
        log_shape = (n_ep, max_steps) if continuous_frac_bits is None else (n_ep, max_steps, n_actions)
        self.obs_out = OutPort(shape=(obs_size + int(control),))   # payload (+ control)
        self.q_in = InPort(shape=(n_actions,))
        self.returns = Var(shape=(n_ep,), init=0.0)
        self.lengths = Var(shape=(n_ep,), init=0)
        self.actions = Var(shape=log_shape, init=-1)
        self.greedy = Var(shape=log_shape, init=-1)
        self.episodes_done = Var(shape=(1,), init=0)
        self.decisions = Var(shape=(1,), init=0)
        self.error = Var(shape=(ERROR_LEN,), init=0)
        self.f_in = InPort(shape=(max(n_features, 1),))
        self.features = Var(shape=(feature_rows, max(n_features, 1)), init=0)
        self.episodes_allowed = Var(shape=(1,), init=1 if gated else n_ep)


ERROR_LEN = 300
CONTROL_IDLE, CONTROL_DECIDE, CONTROL_FIRST = 0, 1, 2   # the payload's last entry with `inputs_fn`


def encode_error(exc: Exception, length: int = ERROR_LEN) -> list[int]:
    """An exception as ASCII codes for an `error` Var (see decode_error)."""
    return list(f"{type(exc).__name__}: {exc}".encode("ascii", "replace")[:length])


def decode_error(codes: np.ndarray) -> str:
    """The message stored in EnvIO's `error` Var ('' if none)."""
    return bytes(int(c) for c in codes if c).decode("ascii", "replace")
