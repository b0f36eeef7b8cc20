"""The Lava runtime's lifecycle, shared by every runner.

`LavaRuntime` starts a process graph's runtime, runs it in chunks under a watchdog, stops
it, and cleans up exactly the processes it started (never a user's own worker pool).
Lava waits forever when a ProcessModel dies (the others block on their ports), and an
interrupted host leaves its children running; here a hung chunk, Ctrl-C, SIGTERM or SIGHUP
(see `signals_as_interrupts`) all end in the same cleanup.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time

from lavaloop.errors import LavaloopError

HANG_TIMEOUT_S = 120.0   # the least time a run chunk gets before the runtime counts as hung


class LavaRuntimeError(LavaloopError):
    """The Lava runtime failed; the message carries the cause from the child process."""


class RuntimeHung(LavaRuntimeError):
    """The runtime did not finish a run in time; its processes were terminated."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so every Ctrl-C cleanup path runs."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def signals_as_interrupts(signums=(signal.SIGTERM, signal.SIGHUP)):
    """Within the block, SIGTERM/SIGHUP raise `Terminated` in this process.

    Processes forked inside the block (Lava's) inherit the handler; there it restores the
    default action and re-raises the signal, so they still die as they would have.
    """
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated(signum)

    old = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def lava_config(exception_proc_model_map: dict | None = None):
    """Loihi2SimCfg selecting the fixed-point ProcessModels."""
    import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

    # isort: split
    from lava.magma.core.run_configs import Loihi2SimCfg

    return Loihi2SimCfg(select_tag="fixed_pt", loglevel=logging.WARNING,
                        exception_proc_model_map=exception_proc_model_map or {})


def child_error(exc: BaseException) -> str:
    """The most informative line of a Lava runtime failure."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    return (errors[-1] if errors else lines[-1] if lines else type(exc).__name__)[:300]


class LavaRuntime:
    """The runtime of the process graph around `proc`, used as a context manager.

    Parameters
    ----------
    proc: any process of the graph (runs and Var reads go through it).
    cfg: the run configuration (default `lava_config()`).

    Entering starts the runtime; leaving stops it and terminates whatever it started that
    is still alive. Failures inside become one `LavaRuntimeError`; `LavaloopError`s and
    interrupts pass through unchanged.
    """

    def __init__(self, proc, cfg=None):
        self.proc, self.cfg = proc, cfg or lava_config()
        self.children: set = set()
        self.compile_s = 0.0

    def __enter__(self) -> LavaRuntime:
        try:
            self.start()
        except BaseException as exc:
            self.kill()             # whatever it started before failing or being interrupted
            if isinstance(exc, Exception) and not isinstance(exc, LavaloopError):
                raise LavaRuntimeError(f"could not start the Lava runtime: {child_error(exc)}") from exc
            raise
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if isinstance(exc, KeyboardInterrupt):
            self.kill()             # an interrupted host may have left a message half-read: no handshake
        else:
            self.stop()
        if exc is not None and not isinstance(exc, (LavaloopError, KeyboardInterrupt)) and isinstance(exc, Exception):
            raise LavaRuntimeError(f"Lava runtime failed: {child_error(exc)}") from exc

    def start(self) -> None:
        """Compile the graph and start its processes (remembered as this runtime's)."""
        before = set(multiprocessing.active_children())
        t0 = time.time()
        try:
            self.proc.create_runtime(run_cfg=self.cfg)
        finally:
            self.children = set(multiprocessing.active_children()) - before
            self.compile_s = round(time.time() - t0, 3)

    def run(self, num_steps: int, timeout: float = HANG_TIMEOUT_S) -> None:
        """proc.run(RunSteps(num_steps)) that cannot hang or leave processes behind.

        The run goes in a worker thread; on a timeout or an interrupt this runtime's
        processes are terminated.
        """
        from lava.magma.core.run_conditions import RunSteps

        failure: list[BaseException] = []

        def target():
            try:
                self.proc.run(condition=RunSteps(num_steps=num_steps), run_cfg=self.cfg)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                failure.append(exc)

        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        try:
            worker.join(timeout)
        except BaseException:
            self.kill()
            raise
        if worker.is_alive():
            self.kill()
            raise RuntimeHung(f"Lava runtime did not complete {num_steps} steps in {timeout:.0f} s "
                              "(a process model probably failed); its processes were terminated")
        if failure:
            raise failure[0]

    def run_async(self, num_steps: int) -> None:
        """Start a non-blocking run of `num_steps` (the host feeds it, e.g. through external pipes)."""
        from lava.magma.core.run_conditions import RunSteps

        self.proc.run(condition=RunSteps(num_steps=num_steps, blocking=False), run_cfg=self.cfg)

    def _infrastructure(self):
        return getattr(getattr(self.proc, "runtime", None), "_messaging_infrastructure", None)

    def own_processes(self) -> list:
        """This runtime's processes that are still alive."""
        actors = set(getattr(self._infrastructure(), "actors", None) or [])
        return [p for p in self.children | actors if _alive(p)]

    def kill(self, grace_s: float = 2.0) -> None:
        """Terminate (then kill) this runtime's processes; other children are not touched.
        Then unlink the shared-memory segments of Lava's channels, which an interrupted
        runtime leaves behind (Python's resource tracker would remove them at exit, warning
        of leaked objects). They stay mapped: a port array of a thread that is still blocked
        in Lava may point into them, and unmapping would turn a late access into a segfault;
        the mapping goes with the process."""
        procs = self.own_processes()
        for p in procs:
            p.terminate()
        deadline = time.monotonic() + grace_s
        while any(_alive(p) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in procs:
            if _alive(p):
                p.kill()
        for p in procs:
            if _alive(p):   # Lava's SystemProcess.join takes no timeout: the base class's does
                multiprocessing.Process.join(p, 1.0)
        smm = getattr(self._infrastructure(), "_smm", None)     # emptied by a regular stop
        for segment in getattr(smm, "_shared_memory_handles", None) or []:
            with contextlib.suppress(OSError):
                segment.unlink()
        if smm is not None:
            smm._shared_memory_handles = []
        runtime = getattr(self.proc, "runtime", None)
        if runtime is not None:   # its processes are gone: Process.__del__'s stop() must not wait for them
            runtime._is_started = runtime._is_running = False

    def stop(self) -> None:
        """Stop the runtime if it runs (at most 30 s), then terminate what is left of it."""
        def stop_quietly():
            try:
                self.proc.stop()
            except Exception:  # noqa: BLE001 - whatever is left is terminated below
                pass

        runtime = getattr(self.proc, "runtime", None)
        if runtime is not None and getattr(runtime, "_is_started", False) and self.own_processes():
            stopper = threading.Thread(target=stop_quietly, daemon=True)
            stopper.start()
            stopper.join(30)
        self.kill()


def _alive(p) -> bool:
    """Whether a multiprocessing process runs (Lava closes the objects of joined ones)."""
    try:
        return p.is_alive()
    except ValueError:   # "process object is closed"
        return False
