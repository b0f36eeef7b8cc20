"""The Python API on Atari: convert the bundled Pong DQN and play it as a spiking network.

    python examples/pong.py [--timesteps 128] [--episodes 2] [--backend emulator|lava]

Converts `checkpoints/pong_dqn.pt` with channel-wise normalization, plays full games on
the fast emulator (bit-exact with Lava; `--backend lava` runs the same network inside
the Lava runtime, ~7x slower), and prints the run's summary: returns beside the source
DQN's and a random policy's on the same seeds, the conversion rate (same argmax on the
observations the SNN visited), spikes and the energy estimate.
"""
import argparse
from pathlib import Path

import lavaloop

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "pong_dqn.pt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timesteps", type=int, default=128)
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--backend", choices=("emulator", "lava"), default="emulator")
    args = ap.parse_args()

    art = lavaloop.convert(CHECKPOINT, "ALE/Pong-v5", normalization="channel", percentile=99.99,
                           timesteps=args.timesteps)
    print(f"converted in {art.manifest['conversion_seconds']:.0f} s; "
          f"T -> infinity ceiling {art.manifest['rate_limit_agreement']:.3f}")
    result = lavaloop.run(art, episodes=args.episodes, backend=args.backend)
    print(result.summary())


if __name__ == "__main__":
    main()
