"""Atomic writes leave the destination as it was, and no temporary file, however they end."""
import os
import signal

import pytest

from lavaloop import atomic
from lavaloop.atomic import atomic_path, write_json


def test_a_failed_write_leaves_no_trace(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == '{\n  "a": 1\n}' and os.listdir(tmp_path) == ["out.json"]


def test_an_interrupt_while_the_temporary_file_is_made_is_cleaned_up(tmp_path, monkeypatch):
    """The window between creating the temporary file and entering the block (where a SIGTERM
    in `lavaloop dream --checkpoint-every 1` once left a .tmp behind)."""
    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "chmod", interrupted)
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "out.json"):
        pass
    assert os.listdir(tmp_path) == []


def test_a_signal_during_the_setup_waits_for_it(tmp_path, monkeypatch):
    """SIGTERM sent while the temporary file is made is handled once it has a name to clean up."""
    class Stop(Exception):
        pass

    def stop(signum, frame):
        raise Stop

    old = signal.signal(signal.SIGTERM, stop)
    chmod = os.chmod

    def chmod_then_signal(path, mode):
        chmod(path, mode)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(atomic.os, "chmod", chmod_then_signal)
    try:
        with pytest.raises(Stop), atomic_path(tmp_path / "out.json"):
            pytest.fail("the block ran although SIGTERM arrived before it")
    finally:
        signal.signal(signal.SIGTERM, old)
    assert os.listdir(tmp_path) == []


def test_a_signal_during_a_checkpoint_write_waits_for_the_checkpoint(tmp_path, monkeypatch):
    """SIGTERM inside `np.savez` (where `lavaloop dream` once printed a ZipFile traceback on
    exit) is handled once the new checkpoint is complete and in place, also with another thread
    running (a process-directed signal goes to a thread that does not block it)."""
    import threading
    import time

    import numpy as np

    from lavaloop import rundir
    from lavaloop.rundir import RunDir

    class Stop(Exception):
        pass

    def stop(signum, frame):
        raise Stop

    savez = np.savez

    def savez_then_signal(f, **arrays):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)          # time for whichever thread takes the signal to take it
        savez(f, **arrays)

    run = RunDir(tmp_path / "run", {"a": 1})
    run.open()
    run.save({"x": np.arange(3)}, {"game": 1})
    monkeypatch.setattr(rundir.np, "savez", savez_then_signal)
    old = signal.signal(signal.SIGTERM, stop)
    done = threading.Event()
    other = threading.Thread(target=done.wait)
    other.start()
    try:
        with pytest.raises(Stop):
            run.save({"x": np.arange(5)}, {"game": 2})
    finally:
        signal.signal(signal.SIGTERM, old)
        done.set()
        other.join()
    monkeypatch.undo()
    assert run.open()["meta"] == {"game": 2} and sorted(os.listdir(tmp_path / "run")) == ["checkpoint.npz",
                                                                                          "config.json"]
