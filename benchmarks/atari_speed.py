"""Nature-DQN SNN speed: our fixed-point Lava models vs Lava's stock Conv/Dense/LIF, and the emulator.

    python -m benchmarks.atari_speed [--steps 200] [--stock-steps 30] [--out results]

Side by side, in one run, on the quantized Pong network (checkpoints/pong_dqn.pt):

* Lava per-time-step wall time of the network alone (RingBuffer source of recorded
  observation payloads -> network -> sink, all layers active every step):
  - ours, the whole network in one IFStack process;
  - ours, one IFStack process per layer;
  - stock: lava.proc Conv x3 + Dense x2, each followed by a fixed-point LIF (IF-like:
    du = 4095, dv = 0), the way a user would build it from Lava's process library.
* Closed loop (EnvIO + network, `lavaloop run`): Lava steps/s vs the emulator's, on the
  same Pong episodes (emulator: 1 and 8 episodes batched).

Timings exclude compilation (Lava's and the numba kernels') and the first steps (a
warm-up run). Writes
results/atari_speed.json and .png.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lavaloop import RunSettings, convert  # noqa: E402
from lavaloop.atomic import write_json  # noqa: E402
from lavaloop.conversion.artifact_if import IFArtifact as Artifact  # noqa: E402
from lavaloop.deploy.results import versions  # noqa: E402
from lavaloop.deploy.run import run  # noqa: E402
from lavaloop.envs import EnvSpec, make_env  # noqa: E402
from lavaloop.processes.dynamics import encode_input  # noqa: E402
from lavaloop.runtime import LavaRuntime, lava_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "pong_dqn.pt"


def recorded_payloads(art: Artifact, n: int) -> np.ndarray:
    """(n_in, n) input payloads of n consecutive Pong observations under random play."""
    env = make_env(EnvSpec.from_dict(art.manifest["env"]))
    obs, _ = env.reset(seed=0)
    rng, out = np.random.default_rng(0), []
    for _ in range(n):
        out.append(encode_input(np.ravel(obs), 1 << art.manifest["input_scale_bits"], art.profile.input_bits))
        obs, *_ = env.step(int(rng.integers(env.action_space.n)))
    env.close()
    return np.stack(out, axis=1)


def ours(art: Artifact, fuse: bool) -> list:
    from lavaloop.processes.if_layers.process import IFStack

    params, bits = art.layer_params(), art.profile.state_bits
    big = 1 << 30                                   # every layer active at every step
    groups = [params] if fuse else [[p] for p in params]
    procs, offset = [], 0
    for g in groups:
        procs.append(IFStack(layers=g, state_bits=bits, offset=offset, timesteps=big, window=big + 8,
                             readout="robust" if g[-1] is params[-1] else None))
        offset += len(g)
    return procs


def stock(art: Artifact) -> list:
    """Lava's own process library: Conv / Dense synapses and fixed-point LIF neurons."""
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIF

    procs = []
    for i, (q, p) in enumerate(zip(art.layers, art.layer_params())):
        if q.is_conv:
            c, h, w = q.in_shape
            syn = Conv(weight=q.weight.transpose(0, 3, 2, 1).astype(np.int32), weight_exp=p["weight_exp"],
                       input_shape=(w, h, c), stride=q.stride, num_message_bits=16 if i == 0 else 0)
            shape = syn.output_shape
        else:
            syn = Dense(weights=q.weight.astype(np.int32), weight_exp=p["weight_exp"],
                        num_message_bits=16 if i == 0 else 0)
            shape = (q.weight.shape[0],)
        vth = int(q.vth.max())
        neurons = LIF(shape=shape, du=4095, dv=0, vth=max(1, vth >> 6), bias_mant=0)
        procs += [syn, neurons]
    return procs


def connect(source, procs: list, sink_shape) -> tuple:
    from lava.proc.io.sink import RingBuffer as Sink

    port = source.s_out
    for p in procs:
        inport = p.s_in if hasattr(p, "s_in") else p.a_in
        if inport.shape != port.shape:
            port = port.flatten() if len(inport.shape) == 1 else port.reshape(inport.shape)
        port.connect(inport)
        port = p.s_out if hasattr(p, "s_out") else p.a_out
    sink = Sink(shape=sink_shape, buffer=1)
    port.connect(sink.a_in)
    return sink


def time_network(source_data: np.ndarray, procs: list, steps: int, warmup: int = 12) -> float:
    """Seconds per Lava time step of source -> procs -> sink, after a warm-up in which every
    layer has run (and compiled its kernels)."""
    from lava.proc.io.source import RingBuffer as Source

    src = Source(data=source_data)
    last = procs[-1]
    connect(src, procs, (last.s_out if hasattr(last, "s_out") else last.a_out).shape)
    with LavaRuntime(src, lava_config()) as rt:
        rt.run(warmup)
        t0 = time.perf_counter()
        rt.run(steps)
        return (time.perf_counter() - t0) / steps


def closed_loop(art: Artifact, backend: str, episodes: int, timesteps: int) -> dict:
    settings = RunSettings(episodes=episodes, timesteps=timesteps, readout="robust", epsilon=0.05, backend=backend)
    log = run(art, settings, progress=False).log
    return {"backend": backend, "episodes": episodes, "timesteps": timesteps, "decisions": log.decisions,
            "steps": log.steps, "wall_s": round(log.wall_s, 2), "steps_per_s": log.steps / log.wall_s}


def plot(rec: dict, path: Path) -> None:
    net = rec["network_ms_per_step"]
    loop = rec["closed_loop"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = list(net)
    axes[0].bar(names, [net[n] for n in names], color=["tab:green", "tab:olive", "tab:red"][:len(names)])
    axes[0].set_yscale("log")
    axes[0].set_ylabel("ms per Lava time step (log)")
    axes[0].set_title("Nature-DQN SNN inside Lava (network only)")
    for i, n in enumerate(names):
        axes[0].text(i, net[n], f"{net[n]:.2f}", ha="center", va="bottom")
    labels = [f"{c['backend']}\n{c['episodes']} ep" for c in loop]
    axes[1].bar(labels, [c["steps_per_s"] for c in loop], color="tab:blue")
    axes[1].set_ylabel("Lava-equivalent time steps per second")
    axes[1].set_title("closed loop on Pong (EnvIO + network)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="timed Lava steps for our models")
    p.add_argument("--stock-steps", type=int, default=30, help="timed Lava steps for the stock models")
    p.add_argument("--timesteps", type=int, default=32, help="T for the closed-loop runs")
    p.add_argument("--episode-steps", type=int, default=100, help="agent steps per closed-loop episode")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    args = p.parse_args()
    t0 = time.time()
    art = convert(CHECKPOINT, "ALE/Pong-v5", calib_steps=1000, max_episode_steps=args.episode_steps)
    conversion_s = art.manifest["conversion_seconds"]
    data = recorded_payloads(art, 16)
    n_out = art.manifest["n_actions"]
    net = {}
    for name, procs, steps in [("ours: 1 process", ours(art, True), args.steps),
                               ("ours: 5 processes", ours(art, False), args.steps),
                               ("stock Lava Conv/Dense/LIF", stock(art), args.stock_steps)]:
        net[name] = 1e3 * time_network(data, procs, steps)
        print(f"{name}: {net[name]:.2f} ms per time step")
    closed_loop(art, "emulator", 1, 2)               # warm-up: compiles the kernels in this process
    loop = [closed_loop(art, "lava", 1, args.timesteps), closed_loop(art, "emulator", 1, args.timesteps),
            closed_loop(art, "emulator", 8, args.timesteps)]
    for c in loop:
        print(f"closed loop {c['backend']} x{c['episodes']}: {c['steps_per_s']:.0f} steps/s")
    stock_ms, ours_ms = net["stock Lava Conv/Dense/LIF"], net["ours: 1 process"]
    rec = {"checkpoint": CHECKPOINT.name, "n_actions": n_out, "network_ms_per_step": net,
           "speedup_vs_stock": {k: stock_ms / v for k, v in net.items()},
           "closed_loop": loop,
           "emulator_vs_lava": {f"emulator x{c['episodes']}": c["steps_per_s"] / loop[0]["steps_per_s"]
                                for c in loop[1:]},
           "emulator_vs_stock_lava": {f"emulator x{c['episodes']}": c["steps_per_s"] * stock_ms / 1e3
                                      for c in loop[1:]},
           "conversion_seconds_1000_calib_steps": conversion_s,
           "goal_ms_per_step": 3.0, "meets_goal": ours_ms <= 3.0,
           "machine": f"{os.cpu_count()} cores", "wall_s": round(time.time() - t0, 1), "versions": versions()}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "atari_speed.json", rec)
    plot(rec, args.out / "atari_speed.png")
    print(f"ours (1 process) {ours_ms:.2f} ms/step vs stock {stock_ms:.1f} ms/step: "
          f"{stock_ms / ours_ms:.0f}x; results in {args.out}/atari_speed.json")


if __name__ == "__main__":
    main()
