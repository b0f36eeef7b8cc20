"""Run episodes of an artifact on a backend (Lava or the emulator) and measure fidelity."""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from conversion.artifact import READOUTS, Artifact
from conversion.convert import check_env_fits
from conversion.envs import EnvSpec, episode_limit, make_env
from conversion.errors import ArtifactError, LavaloopError
from conversion.network import SourceNetwork
from deploy.build import build_graph
from deploy.emulator import run_emulator
from deploy.episodes import EpisodeLog
from processes.envio.process import decode_error

BACKENDS = ("lava", "emulator")
HANG_TIMEOUT_S = 120.0   # the least time a run chunk gets before the runtime counts as hung


class LavaRuntimeError(LavaloopError):
    """The Lava runtime failed; the message carries the cause from the child process."""


@dataclass
class RunSettings:
    seeds: list[int]
    timesteps: int
    readout: str
    epsilon: float
    backend: str = "lava"
    fuse: bool = True          # Lava: the whole network in one process (False: one per layer)

    @classmethod
    def for_artifact(cls, art: Artifact, episodes: int, seed: int = 0, timesteps: int | None = None,
                     readout: str | None = None, epsilon: float | None = None,
                     backend: str = "lava", fuse: bool = True) -> "RunSettings":
        s = cls(seeds=list(range(seed, seed + episodes)),
                timesteps=timesteps or art.timesteps, readout=readout or art.manifest["readout"],
                epsilon=art.manifest["epsilon"] if epsilon is None else epsilon, backend=backend, fuse=fuse)
        if episodes < 1 or s.timesteps < 1:
            raise LavaloopError("episodes and timesteps must be >= 1")
        if s.readout not in READOUTS:
            raise LavaloopError(f"unknown readout {s.readout!r} (choose from {', '.join(READOUTS)})")
        if backend not in BACKENDS:
            raise LavaloopError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
        return s


def check_deployable(art: Artifact) -> None:
    """The artifact's environment exists and matches the network's input and output shapes."""
    spec = EnvSpec.from_dict(art.manifest["env"])
    env = make_env(spec)
    try:
        shape, _ = check_env_fits(SourceNetwork(art.source, "artifact", ""), env, spec.id)
    finally:
        env.close()
    if list(shape) != list(art.manifest["obs_shape"]):
        raise ArtifactError(f"artifact observation shape {tuple(art.manifest['obs_shape'])} does not "
                            f"match {spec.id}'s {tuple(shape)}")


def child_error(exc: BaseException) -> str:
    """The most informative line of a Lava runtime failure."""
    text = str(exc).strip()
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    errors = [l for l in lines if "Error" in l or "Exception" in l]
    return (errors[-1] if errors else lines[-1] if lines else type(exc).__name__)[:300]


def run_lava(art: Artifact, settings: RunSettings, progress: bool = True) -> EpisodeLog:
    """Run the episodes inside one Lava runtime (Loihi2SimCfg, fixed-point models)."""
    spec = EnvSpec.from_dict(art.manifest["env"])
    g = build_graph(art, settings.seeds, settings.timesteps, settings.readout, settings.epsilon,
                    episode_limit(spec), settings.fuse)
    cfg = lava_config()
    with lava_runtime(g.envio):
        steps, wall, compile_s = run_episodes(g.envio, cfg, len(settings.seeds), g.window * 25, progress)
        lengths = g.envio.lengths.get().astype(np.int64)
        spikes, synops = idle_corrected_counters(g, cfg, idle_windows=steps // g.window - int(lengths.sum()))
        actions, greedy = recorded_actions(g.envio, lengths)
        return EpisodeLog(seeds=settings.seeds, returns=g.envio.returns.get().astype(float), lengths=lengths,
                          actions=actions, greedy=greedy, spikes=spikes, synops=synops, steps=steps, wall_s=wall,
                          extra={"compile_s": compile_s})


def lava_config():
    from lava.magma.core.run_configs import Loihi2SimCfg

    return Loihi2SimCfg(select_tag="fixed_pt", loglevel=logging.WARNING)


@contextlib.contextmanager
def lava_runtime(envio):
    """Failures inside the runtime become one LavaRuntimeError; the runtime is always stopped
    and no child process is left."""
    try:
        yield
    except (LavaloopError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise LavaRuntimeError(f"Lava runtime failed: {child_error(exc)}") from exc
    finally:
        stop_runtime(envio)


def run_episodes(envio, cfg, episodes: int, chunk: int, progress: bool) -> tuple[int, float, float]:
    """Create EnvIO's runtime and run it in chunks until its episodes are done.

    Returns (Lava steps, wall seconds, compile seconds). Every chunk runs under the
    watchdog (`guarded_run`); an error caught by EnvIO is raised here.
    """
    bar = tqdm(total=episodes, desc="episodes (lava)", unit="ep", disable=not progress, leave=False)
    try:
        t_compile = time.time()
        envio.create_runtime(run_cfg=cfg)
        t0 = time.time()
        steps = done = 0
        slowest = wall_so_far = 0.0
        while done < episodes:
            guarded_run(envio, chunk, cfg, timeout=max(HANG_TIMEOUT_S, 20 * slowest))
            slowest = max(slowest, time.time() - t0 - wall_so_far)
            wall_so_far = time.time() - t0
            steps += chunk
            error = decode_error(envio.error.get())
            if error:
                raise LavaRuntimeError(f"environment failed inside the Lava runtime: {error}")
            now = int(envio.episodes_done.get()[0])
            bar.update(now - done)
            done = now
        return steps, time.time() - t0, round(t0 - t_compile, 3)
    finally:
        bar.close()


def recorded_actions(envio, lengths: np.ndarray, continuous: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Taken and greedy actions per episode, from EnvIO's logs (indices, or rows of continuous actions)."""
    dtype = np.float64 if continuous else np.int64
    actions, greedy = envio.actions.get(), envio.greedy.get()
    return ([actions[i, :l].astype(dtype) for i, l in enumerate(lengths)],
            [greedy[i, :l].astype(dtype) for i, l in enumerate(lengths)])


class RuntimeHung(LavaRuntimeError):
    """The runtime did not finish a run in time; its processes were terminated."""


def guarded_run(proc, num_steps: int, cfg, timeout: float) -> None:
    """proc.run(RunSteps(num_steps)) that cannot hang or leave processes behind.

    Lava waits forever when a ProcessModel dies (the others block on their ports), and
    Ctrl-C leaves its children running. The run goes in a worker thread; on a timeout or
    an interrupt every child process is terminated.
    """
    from lava.magma.core.run_conditions import RunSteps

    failure: list[BaseException] = []

    def target():
        try:
            proc.run(condition=RunSteps(num_steps=num_steps), run_cfg=cfg)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            failure.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    try:
        worker.join(timeout)
    except KeyboardInterrupt:
        terminate_children()
        raise
    if worker.is_alive():
        terminate_children()
        raise RuntimeHung(f"Lava runtime did not complete {num_steps} steps in {timeout:.0f} s "
                          "(a process model probably failed); its processes were terminated")
    if failure:
        raise failure[0]


def terminate_children(grace_s: float = 2.0) -> None:
    """Terminate (then kill) every child process of this process, and mark no runtime alive."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    deadline = time.monotonic() + grace_s
    while any(c.is_alive() for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    for child in children:
        if child.is_alive():
            child.kill()
    multiprocessing.active_children()   # reap


def idle_corrected_counters(g, cfg, idle_windows: int) -> tuple[list[int], list[int]]:
    """Spike and synop totals of the decision windows only.

    The last chunk runs past the last decision; those idle windows (zero input, fresh
    state) are all alike, so one more window measures what each of them added.
    """
    from lava.magma.core.run_conditions import RunSteps

    def read():
        return (np.concatenate([s.spikes.get() for s in g.stacks]).astype(np.int64),
                np.concatenate([s.synops.get() for s in g.stacks]).astype(np.int64))

    spikes, synops = read()
    g.envio.run(condition=RunSteps(num_steps=g.window), run_cfg=cfg)
    spikes2, synops2 = read()
    return ((spikes - idle_windows * (spikes2 - spikes)).tolist(),
            (synops - idle_windows * (synops2 - synops)).tolist())


def stop_runtime(proc) -> None:
    """Stop the runtime of `proc` if it is alive; otherwise make sure no child is left."""
    runtime = getattr(proc, "runtime", None)
    if runtime is not None and getattr(runtime, "_is_started", False) and multiprocessing.active_children():
        stopper = threading.Thread(target=proc.stop, daemon=True)
        stopper.start()
        stopper.join(30)
    terminate_children()


def run(art: Artifact, settings: RunSettings, progress: bool = True) -> EpisodeLog:
    """Run on the chosen backend after checking the artifact fits its environment."""
    check_deployable(art)
    if settings.backend == "emulator":
        return run_emulator(art, settings.seeds, settings.timesteps, settings.readout,
                            settings.epsilon, progress)
    return run_lava(art, settings, progress)
