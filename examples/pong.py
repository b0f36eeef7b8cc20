"""The Python API on Atari: convert the bundled Pong DQN and play it as a spiking network.

    python examples/pong.py [--timesteps 128] [--episodes 2] [--backend emulator|lava]

Converts `checkpoints/pong_dqn.pt` with channel-wise normalization, plays full games on
the fast emulator (bit-exact with Lava; `--backend lava` runs the same network inside
the Lava runtime, ~7x slower), then compares with the source DQN on the same seeds:
conversion rate (same argmax on the observations the SNN visited) and return.
"""
import argparse
from pathlib import Path

from lavaloop.conversion.convert import ConvertOptions, convert
from lavaloop.deploy.episodes import decision_agreement, source_returns
from lavaloop.deploy.runner import RunSettings, run

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "pong_dqn.pt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timesteps", type=int, default=128)
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--backend", choices=("emulator", "lava"), default="emulator")
    args = ap.parse_args()

    opts = ConvertOptions(normalization="channel", percentile=99.99, timesteps=args.timesteps)
    art = convert(CHECKPOINT, "ALE/Pong-v5", opts)
    print(f"converted in {art.manifest['conversion_seconds']:.0f} s; "
          f"T -> infinity ceiling {art.manifest['rate_limit_agreement']:.3f}")

    settings = RunSettings.for_artifact(art, episodes=args.episodes, backend=args.backend)
    log = run(art, settings)
    agreement = decision_agreement(art, log)
    dqn = source_returns(art, settings.seeds, settings.epsilon)
    print(f"SNN returns {log.returns.tolist()} vs DQN {dqn.tolist()} (seeds {settings.seeds}, "
          f"epsilon {settings.epsilon})")
    print(f"conversion rate {agreement.rate:.3f}, same outcome {agreement.outcome_rate:.3f}, "
          f"{sum(log.spikes) / log.decisions:,.0f} spikes per decision")


if __name__ == "__main__":
    main()
