"""The Python API in ten lines: convert the bundled CartPole DQN, run it on Lava, save the record.

    python examples/cartpole.py [--episodes 5] [--backend lava|emulator]
"""
import argparse
import json
from pathlib import Path

import lavaloop

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "cartpole_dqn.pt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--backend", choices=("lava", "emulator"), default="lava")
    args = ap.parse_args()

    art = lavaloop.convert(CHECKPOINT, env="CartPole-v1", timesteps=32)
    art.save("build/cartpole.h5")
    result = lavaloop.run("build/cartpole.h5", episodes=args.episodes, backend=args.backend)
    print(result.summary())
    Path("build/cartpole_run.json").write_text(json.dumps(result.to_dict(), indent=2))


if __name__ == "__main__":
    main()
