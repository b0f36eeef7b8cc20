"""The `lavaloop` command line: a thin layer over the Python API (lavaloop.api)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# One BLAS thread per process: Lava runs one process per layer, and on a small machine
# their thread pools would fight over the cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import lavaloop  # noqa: E402
from lavaloop.atomic import check_writable, write_json  # noqa: E402
from lavaloop.envs import parse_env_param  # noqa: E402
from lavaloop.errors import LavaloopError  # noqa: E402
from lavaloop.options import LAYOUTS, NORMALIZATIONS, READOUT_FITS  # noqa: E402
from lavaloop.runtime import signals_as_interrupts  # noqa: E402

GIVEN = argparse.SUPPRESS   # options left out are not passed on: the kind's defaults apply


def given(args, *names: str) -> dict:
    """The named options the user gave, as keyword arguments."""
    return {n: getattr(args, n) for n in names if hasattr(args, n)}


def timesteps_arg(text: str) -> int | str:
    """--timesteps: an integer or "auto" (checked by the options)."""
    try:
        return int(text)
    except ValueError:
        return text


def env_param(text: str) -> tuple[str, float]:
    """--env-param NAME=VALUE (lavaloop.envs.parse_env_param) as an argparse type."""
    try:
        return parse_env_param(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def env_params(args) -> dict:
    """The --env-param options as keyword arguments ({} if none)."""
    pairs = getattr(args, "env_param", None)
    return {"env_params": dict(pairs)} if pairs else {}


def describe(art) -> list[str]:
    from lavaloop.artifact import FORMAT_VERSION
    from lavaloop.kinds import get_kind

    m = art.manifest
    src = m["source"]
    changed = m["env"].get("physics") or {}
    physics = f" ({', '.join(f'{k}={v}' for k, v in changed.items())})" if changed else ""
    return [f"lavaloop artifact v{FORMAT_VERSION} (lavaloop {m['lavaloop_version']}): {get_kind(art.kind).description}",
            f"  env        {m['env']['id']}{physics}  observation {tuple(m['obs_shape'])}, {m['n_actions']} actions",
            f"  source     {src['file']} ({src.get('format', '?')}), sha256 {src['sha256'][:16]}...",
            f"  profile    {m['profile']['name']}: {m['profile']['description']}",
            *("  " + line for line in art.describe())]


def cmd_convert(args) -> None:
    check_writable(args.output)
    opts = given(args, "coding", "delta_threshold", "message_shift", "equalize", "centre_readout", "weight_split_bits",
                 "percentile", "normalization", "timesteps", "timesteps_target", "readout", "profile", "calib_steps",
                 "calib_seed", "calib_episodes", "epsilon", "v_init", "sticky", "max_episode_steps", "distill",
                 "distill_steps", "distill_model", "distill_objective", "fan_in", "spike_rate", "replicas",
                 "distill_mismatch", "distill_readout", "distill_dagger_rounds", "distill_dagger_steps", "dither")
    opts.update(env_params(args))
    art = lavaloop.convert(args.checkpoint, args.env, **opts)
    art.save(args.output)
    print(f"wrote {args.output} ({art.manifest['conversion_seconds']:.1f} s)")
    print("\n".join(describe(art)))


def cmd_info(args) -> None:
    art = lavaloop.load_artifact(args.artifact)
    print(json.dumps(art.manifest, indent=2) if args.json else f"{args.artifact}: " + "\n".join(describe(art)))


def cmd_run(args) -> None:
    if args.json:
        check_writable(args.json)
    settings = given(args, "epsilon", "timesteps", "readout", "env", "sticky_actions", "per_layer_processes",
                     "mismatch_seed", "mismatch_sigma", "calibrate_readout", "readout_fit", "layout")
    settings.update(env_params(args))
    result = lavaloop.run(args.artifact, episodes=args.episodes, backend=args.backend, seed=args.seed,
                          progress=not args.no_progress, **settings)
    print(result.summary())
    if args.json:
        write_json(args.json, result.to_dict())
        print(f"results: {args.json}")


def cmd_adapt(args) -> None:
    if args.output:
        check_writable(args.output)
    config = given(args, "solver", "ridge", "fit_iterations", "seed", "epsilon", "lr", "gamma", "batch", "replay",
                   "updates_per_decision", "target_every", "temperature", "ce_weight", "timesteps", "headroom_bits",
                   "keep")
    record, adapted = lavaloop.adapt(args.artifact, args.env, args.episodes, args.rule, args.backend, out=args.out,
                                     sticky_actions=args.sticky_actions, progress=not args.no_progress,
                                     **env_params(args), **config)
    curve = record["curve"]
    first, last = curve[:10], curve[-10:]

    def mean(rows, key):
        return sum(r[key] for r in rows) / len(rows)

    print(f"adapted {args.artifact} on {record['artifact_env']['id']} ({args.rule}, {record['backend']}): "
          f"{len(curve)} episodes in {record['wall_s']:.0f} s")
    print(f"  first {len(first)} episodes: return {mean(first, 'return'):.1f}, agreement with the source "
          f"{mean(first, 'agreement'):.3f}; last {len(last)}: return {mean(last, 'return'):.1f}, "
          f"agreement {mean(last, 'agreement'):.3f}")
    if record["kept"]["readout"] == "best":
        print(f"  kept the readout that played episode {record['kept']['episode']} "
              f"(10-episode mean return {record['kept']['window_mean']:.1f})")
    print(f"  run record: {record['out']}/results.json")
    if args.output:
        adapted.save(args.output)
        print(f"wrote {args.output} (readout adapted; `lavaloop run {args.output}` evaluates it)")


def cmd_export(args) -> None:
    from lavaloop.deploy.export import export

    check_writable(args.output)
    info = export(lavaloop.load_artifact(args.artifact), args.output, args.format)
    print(f"wrote {args.output} ({args.format})")
    if args.format == "netx":
        print(f"  build with lava.lib.dl.netx.hdf5.Network(net_config=..., spike_exp={info['spike_exp']}, "
              f"input_message_bits={info['input_message_bits']}); feed it the delta-encoded payload; "
              f"add the output bias {info['output_bias']} to its values")


def cmd_dream(args) -> None:
    config = given(args, "runs", "games", "profile", "mismatch_sigma", "mismatch_seed", "seed", "protocol",
                   "coding_level", "dreams", "dream_steps", "dream_start")
    if args.no_dream:
        config["dream"] = False
    rules = {"model_per_action": True} if args.model_per_action else {}
    rules.update(given(args, "entropy", "dream_baseline", "model_taps"))
    if rules:
        config["rules"] = rules
    rec = lavaloop.dream(args.env, args.out, args.backend, checkpoint_every=args.checkpoint_every,
                         progress=not args.no_progress, **config)
    c = rec["curve"]
    cfg = rec["config"]
    print(f"{cfg['runs']} runs x {cfg['games']} games on {rec['backend']}, protocol {cfg['protocol']} "
          f"({rec['profile']['name']}, "
          f"mismatch sigma {rec['mismatch_sigma']}, {'with' if cfg['dream'] else 'without'} dreaming): "
          f"{rec['wall_s']:.0f} s")
    if c:
        print(f"  mean return over the last 50 games: start {c['start_mean']:+.2f}, "
              f"final {c['final_mean']:+.2f} +- {c['final_sd']:.2f}; reaches -0.5 at game "
              f"{c['first_game_mean_ge_-0.5']}, 0 at game {c['first_game_mean_ge_0']}")
    print(f"results: {rec['out']}/results.json")


def cmd_sweep(args) -> None:
    rec = lavaloop.sweep(args.spec, out=args.out, address=args.address, workers=args.workers,
                         progress=not args.no_progress)
    inv, axes = rec["invocation"], list(rec["axes"])
    rows = [[str(r["params"].get(a, "")) for a in axes]
            + [f"{v:.4g}" if isinstance(v, float) else str(v) for v in r["metrics"].values()] for r in rec["cells"]]
    header = axes + rec["record"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)] if rows else []
    for r in [header, *rows]:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))
    rate = f", {inv['cells_per_hour']:.0f} cells/hour on {inv['ray_cpus']} Ray CPUs" if inv["cells_per_hour"] else ""
    print(f"{inv['cells']} cells: {inv['cells_before']} kept from before, {inv['cells_run']} run in "
          f"{inv['wall_s']:.0f} s{rate}")
    where = Path(rec["out"])
    print(f"results: {where / 'results.json'}, {where / 'report.html'}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lavaloop", description="Run trained RL policies as spiking "
                                "networks on Lava, closed-loop, under a chip's constraints.")
    p.add_argument("--version", action="version", version=f"lavaloop {lavaloop.__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="checkpoint -> artifact (.h5)", argument_default=GIVEN,
                       description="Options not given take the kind's defaults (lavaloop.ConvertOptions "
                                   "for DQNs, lavaloop.GRSNConvertOptions for GRSN policies).")
    c.add_argument("checkpoint", help="SB3 DQN .zip (MlpPolicy or CnnPolicy), a PyTorch/CleanRL "
                   "state dict (.pt) of an MLP or the Nature DQN, or a GRSN policy (lavaloop.trainers.recurrent)")
    c.add_argument("--env", required=True, help="gymnasium environment id, e.g. CartPole-v1, or a "
                   "cooperative MPE task for a QMIX team, e.g. mpe2:simple_spread_v3")
    c.add_argument("-o", "--output", required=True, help="artifact path (.h5)")
    c.add_argument("--profile", help="chip profile name or JSON file (default loihi2; dynapse1, dynapse2: "
                   "map a DQN onto a mixed-signal chip)")
    c.add_argument("--coding", help="DQN: rate (spike counts over T steps, default) or sigma-delta "
                   "(graded spikes carrying activations and their changes; one Lava step per layer)")
    c.add_argument("--delta-threshold", type=float, help="DQN, sigma-delta: send a change once it reaches this "
                   "many normalized units (default 0: every change)")
    c.add_argument("--message-shift", type=int, help="DQN, sigma-delta: one message shift for every hidden layer "
                   "(6: what lava-dl netx builds, for `export --format netx`; default: per layer)")
    c.add_argument("--weight-split-bits", type=int, metavar="K",
                   help="DQN, sigma-delta: K in 0..7; K > 0 makes every connection two 8-bit synapses, the low "
                        "one carrying up to K more weight bits, as many per layer as its 24-bit states allow "
                        "(twice the synapses; default 0)")
    c.add_argument("--no-equalize", dest="equalize", action="store_const", const=False,
                   help="DQN, sigma-delta: plain max-normalization, without equalizing the weight ranges of "
                   "consecutive layers")
    c.add_argument("--no-centre-readout", dest="centre_readout", action="store_const", const=False,
                   help="DQN, sigma-delta: keep the Q-value readout; by default the readout less its mean over "
                        "actions (same decisions) is tried too and kept where it agrees on 0.005 more calibration "
                        "decisions")
    c.add_argument("--percentile", type=float, help="DQN: normalization percentile in (0, 100] (default 99.9)")
    c.add_argument("--normalization", choices=NORMALIZATIONS,
                   help="DQN: one lambda per layer (default, the paper's), per convolution channel, or per "
                        "convolution channel and dense hidden neuron (neuron; best with --distill)")
    c.add_argument("--timesteps", type=timesteps_arg, help="DQN: SNN steps per decision T >= 1, or auto: the "
                   "smallest power of two reaching --timesteps-target agreement on held-out episodes (default 32)")
    c.add_argument("--timesteps-target", type=float, help="DQN, --timesteps auto: agreement to reach (default 0.99)")
    c.add_argument("--readout", choices=["robust", "spike_count"], help="DQN: readout (default robust)")
    c.add_argument("--calib-steps", type=int, help="DQN: calibration env steps >= 1 (default 5000)")
    c.add_argument("--calib-seed", type=int, help="calibration seed >= 0 (default 0)")
    c.add_argument("--calib-episodes", type=int, help="GRSN: calibration episodes >= 1 (default 20)")
    c.add_argument("--epsilon", type=float, help="DQN: evaluation epsilon in [0, 1] recorded for `run` "
                   "(default 0.05 for ALE games as in the paper, else 0)")
    c.add_argument("--v-init", choices=["half", "zero"],
                   help="DQN: membrane potential at each decision's start (zero = the paper's reset; default half)")
    c.add_argument("--sticky-actions", dest="sticky", type=float, metavar="P",
                   help="DQN on ALE: sticky-action probability in [0, 1] (default 0: the paper's NoFrameskip games)")
    c.add_argument("--max-episode-steps", type=int,
                   help="DQN: episode cap in agent steps >= 1 (default: the env's; ALE games 18000 as in the paper)")
    c.add_argument("--env-param", type=env_param, action="append", metavar="NAME=VALUE",
                   help="DQN: convert for a changed environment, e.g. length=1.0 for CartPole's pole (repeatable)")
    c.add_argument("--distill", action="store_true",
                   help="DQN: fine-tune the converted network through the chip's arithmetic at T so that it "
                        "decides as the source (reports held-out agreement before and after)")
    c.add_argument("--distill-steps", type=int, help="DQN: distillation optimizer steps >= 1 (default 3000)")
    c.add_argument("--distill-model", choices=["spikes", "staircase"],
                   help="DQN: train through simulated spike trains (default) or rounded rates (cheaper)")
    c.add_argument("--distill-objective", choices=["q", "advantage", "both"],
                   help="DQN, with --distill: fit the source's Q-values, its advantages, or both keeping the "
                        "better (default: both for rate coding, advantage for sigma-delta)")
    c.add_argument("--dither", type=int, metavar="K",
                   help="DQN, rate coding: K copies of every hidden neuron started at potentials spread over one "
                        "threshold: T steps resolve rates as K T steps would, for K times the neurons (default 1)")
    c.add_argument("--fan-in", choices=["split", "prune"],
                   help="DQN on a mixed-signal profile: neurons with more inputs than the chip's fan-in are split "
                        "into partial sums and a relay (default) or pruned to their largest weights")
    c.add_argument("--spike-rate", type=float, metavar="R",
                   help="DQN on a mixed-signal profile: spikes per step of a hidden activation 1, in (0, 1] "
                        "(default 0.3; the refractory period bounds it)")
    c.add_argument("--replicas", type=int, metavar="N",
                   help="DQN on a mixed-signal profile: N copies of the chip network on their own cores, one host "
                        "readout (default 1); run --calibrate-readout then combines their mismatched counts")
    c.add_argument("--distill-mismatch", type=float, metavar="SIGMA",
                   help="DQN on a mixed-signal profile, with --distill: device mismatch sampled while training "
                        "through the chip (default: the profile's; 0: the nominal chip only)")
    c.add_argument("--distill-readout", choices=["shared", "per-chip"],
                   help="DQN on a mixed-signal profile, with --distill: train one host readout with the chip "
                        "(default), or refit it on every sampled chip instance, for chips run with "
                        "--calibrate-readout")
    c.add_argument("--distill-dagger-rounds", type=int, metavar="N",
                   help="DQN, with --distill: rounds >= 0 in which the network being trained plays and its "
                        "observations, labelled by the source, join the training data (default 2)")
    c.add_argument("--distill-dagger-steps", type=int, metavar="STEPS",
                   help="DQN, with --distill: env steps per DAgger round >= 1 (default 2000)")
    c.set_defaults(func=cmd_convert)

    i = sub.add_parser("info", help="describe an artifact")
    i.add_argument("artifact")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")
    i.set_defaults(func=cmd_info)

    r = sub.add_parser("run", help="run closed-loop episodes and compare with the source")
    r.add_argument("artifact")
    r.add_argument("--episodes", type=int, default=20, help="episodes >= 1 (default 20)")
    r.add_argument("--seed", type=int, default=0, help="first seed >= 0; episode k uses seed + k")
    r.add_argument("--backend", default="lava", choices=["lava", "emulator"])
    r.add_argument("--epsilon", type=float, default=GIVEN, help="override the artifact's evaluation epsilon, in [0, 1]")
    r.add_argument("--timesteps", type=int, default=GIVEN,
                   help="rate-coded: override the artifact's T (>= 1); mixed-signal: with --calibrate-readout")
    r.add_argument("--readout", choices=["robust", "spike_count"], default=GIVEN,
                   help="rate-coded: override the artifact's readout")
    r.add_argument("--env", default=GIVEN, help="rate-coded: deploy on this environment id instead of the "
                   "artifact's (same observation and action shapes; ALE: same game)")
    r.add_argument("--sticky-actions", type=float, metavar="P", default=GIVEN,
                   help="rate-coded on ALE: override the sticky-action probability, in [0, 1]")
    r.add_argument("--env-param", type=env_param, action="append", metavar="NAME=VALUE", default=GIVEN,
                   help="DQN kinds: change a numeric attribute of the environment, e.g. length=1.0 for "
                        "CartPole's pole (repeatable)")
    r.add_argument("--per-layer-processes", action="store_true", default=GIVEN,
                   help="rate-coded on Lava: one process per layer (default: the whole network in one process)")
    r.add_argument("--mismatch-seed", type=int, default=GIVEN,
                   help="mixed-signal: run on chip instance SEED >= 0 (default: the nominal chip, no mismatch)")
    r.add_argument("--mismatch-sigma", type=float, default=GIVEN,
                   help="mixed-signal: device mismatch of that instance, >= 0 (default: the profile's)")
    r.add_argument("--calibrate-readout", action="store_true", default=GIVEN,
                   help="mixed-signal: fit the host readout to this chip instance first (on the artifact's "
                        "calibration observations, labelled by its source)")
    r.add_argument("--readout-fit", choices=READOUT_FITS, default=GIVEN,
                   help="with --calibrate-readout: a fixed, nearly unpenalized ridge (default) or its strength "
                        "chosen by cross-validation (cv: for many copies; docs/mixed_signal.md)")
    r.add_argument("--layout", choices=LAYOUTS, default=GIVEN,
                   help="GRSN team on Lava: one process per agent (default) or one shared process")
    r.add_argument("--json", help="write the results record (RunResult) here")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_run)

    a = sub.add_parser("adapt", help="train a deployed network's readout on the host, in the loop "
                       "(resumable)", argument_default=GIVEN,
                       description="The hidden layers stay as converted; after every episode the host trains "
                                   "the output layer on what the last hidden layer sent it (spike counts, or "
                                   "sigma-delta activations) and writes the quantized weights into the running "
                                   "network. Options not given take lavaloop.AdaptConfig's defaults.")
    a.add_argument("artifact", help="a converted DQN: rate-coded (robust readout) or sigma-delta, with a dense "
                   "output layer")
    a.add_argument("--env", default=None, help="adapt on this environment id instead of the artifact's")
    a.add_argument("--env-param", type=env_param, action="append", metavar="NAME=VALUE",
                   help="change a numeric attribute of the environment, e.g. length=1.0 (repeatable)")
    a.add_argument("--sticky-actions", type=float, metavar="P", default=None,
                   help="ALE: sticky-action probability in [0, 1]")
    a.add_argument("--episodes", type=int, default=100, help="adaptation episodes >= 1 (default 100)")
    a.add_argument("--rule", default="td", help="td (TD(0), replay, target copy; default), reinforce "
                   "(the dreaming agent's rule) or distill (match the source's Q-values; no reward)")
    a.add_argument("--backend", default="emulator", choices=["emulator", "lava"])
    a.add_argument("--solver", help="td, distill: lstsq (ridge regression on the replay; default) or adam")
    a.add_argument("--ridge", type=float,
                   help="lstsq: L2 penalty per sample toward the deployed readout, relative (default 1e-2)")
    a.add_argument("--fit-iterations", type=int, help="td with lstsq: fitted-Q rounds per episode (default 2)")
    a.add_argument("--seed", type=int, help="first seed >= 0; episode k uses seed + k (default 0)")
    a.add_argument("--epsilon", type=float, help="exploration while adapting, in [0, 1] (default 0.1)")
    a.add_argument("--lr", type=float, help="Adam step size (default 1e-3)")
    a.add_argument("--gamma", type=float, help="discount of td and reinforce (default 0.99)")
    a.add_argument("--batch", type=int, help="td, distill: minibatch size (default 64)")
    a.add_argument("--replay", type=int, help="td, distill: replay capacity (default 10000)")
    a.add_argument("--updates-per-decision", type=float, help="td, distill: minibatch steps per decision (default 1)")
    a.add_argument("--target-every", type=int, help="td: steps between target copies (default 200)")
    a.add_argument("--temperature", type=float, help="reinforce, distill: softmax temperature (default 0.1)")
    a.add_argument("--ce-weight", type=float, help="distill: cross-entropy weight (default 0.1)")
    a.add_argument("--timesteps", type=int, help="T of the deployed network (default: the artifact's)")
    a.add_argument("--headroom-bits", type=int, help="room for the readout's weights to grow this many bits "
                   "before they clip, 0..8, at that much coarser resolution (default 0)")
    a.add_argument("--keep", help="readout the adapted artifact gets: last (default) or best (the one playing "
                   "at the best 10-episode mean return of the curve)")
    a.add_argument("--out", default=None, help="run directory (resumed if it holds the same run); default "
                   "runs/adapt_<env>_<rule>_<backend>")
    a.add_argument("-o", "--output", default=None, help="write the adapted artifact here (.h5)")
    a.add_argument("--no-progress", action="store_true", default=False)
    a.set_defaults(func=cmd_adapt)

    e = sub.add_parser("export", help="artifact -> another tool's format (nir: rate-coded IF; "
                       "netx: sigma-delta converted with --message-shift 6)")
    e.add_argument("artifact")
    e.add_argument("--format", required=True, help="nir or netx")
    e.add_argument("-o", "--output", required=True, help="output file")
    e.set_defaults(func=cmd_export)

    d = sub.add_parser("dream", help="on-chip agent with host-trained readouts, learning from real "
                       "games and dreams (resumable)", argument_default=GIVEN)
    d.add_argument("env", help="pong (Atari Pong from RAM)")
    d.add_argument("--runs", type=int, help="independent runs >= 1 (default 10)")
    d.add_argument("--games", type=int, help="games per run >= 1 (default 2000)")
    d.add_argument("--no-dream", action="store_true", default=False, help="learn from real games only")
    d.add_argument("--protocol", help="ours (default) or reference (the authors' released code: "
                   "docs/dreaming.md)")
    d.add_argument("--profile", help="mixed-signal chip profile name or JSON file (default dynapse1)")
    d.add_argument("--mismatch-sigma", type=float, help="override the profile's device mismatch (>= 0)")
    d.add_argument("--mismatch-seed", type=int, help="the chip instance (>= 0, default 0)")
    d.add_argument("--seed", type=int, help="run r uses seed + r (>= 0, default 0)")
    d.add_argument("--coding-level", type=float, help="set the populations' weights so that this share of "
                   "neurons spikes per window, e.g. 0.1 (calibrated on two games; default: the fixed weights)")
    d.add_argument("--dreams", type=int, help="dreams after each real game >= 1 (default 1)")
    d.add_argument("--dream-steps", type=int, help="steps per dream >= 1 (default 50)")
    d.add_argument("--dream-start", choices=["reset", "visited"], help="a dream starts from a real reset "
                   "(default) or from a state the last real game visited (docs/dreaming.md)")
    d.add_argument("--model-per-action", action="store_true", default=False, help="the world model's "
                   "readouts: one per action, selected by the transition's action (docs/dreaming.md)")
    d.add_argument("--model-taps", type=int, help="the world model reads its features of the last K model "
                   "windows side by side, >= 1 (default 1; two taps, for velocities, measured no better: "
                   "docs/dreaming.md)")
    d.add_argument("--entropy", type=float, help="entropy bonus of the policy gradient >= 0 (default 0: "
                   "plain REINFORCE; docs/dreaming.md, 'Runs that stop scoring')")
    d.add_argument("--dream-baseline", type=float, help="dreamed rewards less their running mean, which moves "
                   "this share of the way to each dream's mean, in [0, 1] (default 0: none, as the authors; "
                   "docs/dreaming.md)")
    d.add_argument("--backend", default="emulator", choices=["emulator", "lava"])
    d.add_argument("--out", default=None, help="run directory (resumed if it exists); default "
                   "runs/pong_<condition>_<backend>")
    d.add_argument("--checkpoint-every", type=int, default=50, help="games between checkpoints >= 1 (emulator)")
    d.add_argument("--no-progress", action="store_true", default=False)
    d.set_defaults(func=cmd_dream)

    w = sub.add_parser("sweep", help="a grid of conversions and runs from a TOML spec, as Ray tasks (resumable)")
    w.add_argument("spec", help="the spec (TOML; see docs/sweep.md)")
    w.add_argument("--out", default=None, help="the sweep's folder (default: the spec's `out`)")
    w.add_argument("--address", default=None, help="join the Ray cluster at HOST:PORT (default: start Ray here)")
    w.add_argument("--workers", type=int, default=None, help="CPUs of the Ray started here (default: all)")
    w.add_argument("--no-progress", action="store_true")
    w.set_defaults(func=cmd_sweep)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2: bad input, 128 + signal: interrupted)."""
    args = parser().parse_args(argv)
    try:
        with signals_as_interrupts():
            args.func(args)
    except LavaloopError as exc:
        print(f"lavaloop: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", 2)
        print(f"lavaloop: interrupted ({'SIGINT' if signum == 2 else exc})", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:           # the reader went away (`lavaloop info X | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
