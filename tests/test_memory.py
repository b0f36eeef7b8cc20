"""A long run in one Lava runtime does not grow: 1,000 episodes, resident memory at start and end (slow)."""
import multiprocessing

import numpy as np
import pytest

from conftest import with_manifest

GROWTH_BOUND_MB = 50.0   # host + Lava children, between the 100th and the 1,000th episode


def resident_mb(pids) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (FileNotFoundError, StopIteration):
            pass
    return total / 1024


@pytest.mark.slow
def test_a_thousand_episodes_in_one_runtime_do_not_grow(cartpole_artifact, record_property):
    import os

    from lavaloop.deploy.build import build_graph
    from lavaloop.runtime import LavaRuntime

    _, art = cartpole_artifact
    art = with_manifest(art, env={**art.manifest["env"], "max_episode_steps": 20})
    episodes, timesteps = 1000, 4
    g = build_graph(art, list(range(episodes)), timesteps, "robust", 0.0, 20)
    samples = {}
    with LavaRuntime(g.envio) as rt:
        pids = [os.getpid(), *(p.pid for p in rt.own_processes())]
        done = 0
        while done < episodes:
            rt.run(g.window * 200)
            done = int(g.envio.episodes_done.get()[0])
            if done >= 100 and "start" not in samples:
                samples["start"] = resident_mb(pids)
        samples["end"] = resident_mb(pids)
        lengths = g.envio.lengths.get()
    growth = samples["end"] - samples["start"]
    record_property("resident_mb", samples)
    print(f"resident memory (host + Lava processes): {samples['start']:.1f} MB after 100 episodes, "
          f"{samples['end']:.1f} MB after {episodes} (growth {growth:+.1f} MB)")
    assert np.all(lengths > 0)
    assert growth < GROWTH_BOUND_MB
    assert not multiprocessing.active_children()
