"""Atomic file writes: a file appears at its path completely written, or not at all."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from lavaloop.errors import LavaloopError

_UMASK = os.umask(0o022)   # read once, at import: setting it later would race with other threads
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`, moved onto `path` if the block completes.

    Parameters
    ----------
    path: the destination; its folder is created if missing. On an exception (or
        Ctrl-C) the temporary file is removed and `path` is left as it was.
    """
    check_writable(path)
    path = Path(path)
    tmp = None
    try:
        with interrupts_deferred():   # a SIGTERM between creating the file and naming it would leave it
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            os.chmod(tmp, 0o666 & ~_UMASK)   # as a plain open() would create it (mkstemp makes it 0600)
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with interrupts_deferred():
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)


_INTERRUPTS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP that arrive within the block are delivered when it ends
    (for short blocks only, such as writing a checkpoint whole). The handlers are swapped for
    ones that take note, since a process-directed signal goes to any thread that does not
    block it, and Python runs its handler in the main thread whatever that thread's mask; off
    the main thread, where handlers cannot be set, nothing is deferred."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = {signum: signal.signal(signum, lambda signum, frame: caught.append(signum)) for signum in _INTERRUPTS}
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


def check_writable(path: str | Path) -> None:
    """Fail now, in one line (LavaloopError), if a file could not be written at `path` later:
    its folder is created if missing and must be writable, and `path` must not be a folder."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LavaloopError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if path.is_dir():
        raise LavaloopError(f"cannot write {path}: it is a folder")
    if not os.access(path.parent, os.W_OK):
        raise LavaloopError(f"cannot write {path}: its folder is not writable")


def write_json(path: str | Path, obj) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2))


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """Write a matplotlib figure as a PNG atomically (`atomic_path`) and close it.

    Parameters
    ----------
    fig: the figure. path: the destination. dpi: its resolution.
    """
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
