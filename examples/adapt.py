"""Calibrate a chip's readout in the loop: a converted CartPole DQN whose readout was stored at
3 of its 8 bits loses decisions; `distill` retrains it on the host from what the chip's last
hidden layer sends, between episodes, and writes it back into the running network.

    python examples/adapt.py [--episodes 5] [--backend emulator|lava]
"""
import argparse
import dataclasses
from pathlib import Path

import numpy as np

import lavaloop

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "cartpole_dqn.pt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--backend", choices=("lava", "emulator"), default="emulator")
    args = ap.parse_args()

    art = lavaloop.convert(CHECKPOINT, env="CartPole-v1")
    q = art.layers[-1]                                    # a coarse chip: readout rounded to 3 bits
    coarse = dataclasses.replace(art, layers=[*art.layers[:-1], dataclasses.replace(
        q, weight=(np.rint(q.weight / 32.0) * 32).astype(q.weight.dtype))])
    before = lavaloop.run(coarse, episodes=10, seed=100, backend="emulator", progress=False)
    record, adapted = lavaloop.adapt(coarse, episodes=args.episodes, rule="distill", backend=args.backend,
                                     out="build/adapt_example", epsilon=0.0)
    after = lavaloop.run(adapted, episodes=10, seed=100, backend="emulator", progress=False)
    print(f"agreement with the source: {before.agreement:.3f} -> {after.agreement:.3f} "
          f"after {args.episodes} episodes; return {before.mean_return:.1f} -> {after.mean_return:.1f}")
    adapted.save("build/cartpole_calibrated.h5")


if __name__ == "__main__":
    main()
