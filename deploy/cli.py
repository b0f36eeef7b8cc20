"""The `lavaloop` command line: convert, info, run, dream."""
from __future__ import annotations

import argparse
import json
import os
import sys

# One BLAS thread per process: Lava runs one process per layer, and on a small machine
# their thread pools would fight over the cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from conversion.errors import LavaloopError


def cmd_convert(args) -> None:
    from conversion.convert import ConvertOptions, convert
    from conversion.grsn import is_policy_checkpoint

    if is_policy_checkpoint(args.checkpoint):
        return convert_grsn(args)
    opts = ConvertOptions(percentile=args.percentile, normalization=args.normalization,
                          timesteps=args.timesteps, readout=args.readout,
                          profile=args.profile, calib_steps=args.calib_steps, calib_seed=args.calib_seed,
                          epsilon=args.epsilon, v_init=args.v_init, sticky=args.sticky_actions,
                          max_episode_steps=args.max_episode_steps)
    art = convert(args.checkpoint, args.env, opts)
    art.save(args.output)
    m = art.manifest
    print(f"wrote {args.output}: {len(art.layers)} layers, profile {m['profile']['name']}, "
          f"T={m['timesteps']}, readout={m['readout']}, {opts.normalization}-wise percentile "
          f"{m['normalization']['percentile']} ({m['conversion_seconds']:.1f} s)")
    for r in m["quantization"]:
        print(f"  {r['layer']:<24} vth={r['vth_min']}..{r['vth_max']} exp={r['weight_exp']:<3d} "
              f"weight error {100 * r['weight_rel_rms_error']:.2f}% (rel. RMS), "
              f"bias change {100 * r['bias_rel_rms_error']:.2f}% (incl. bias correction)")
    print(f"  T -> infinity limit picks the source's action on {100 * m['rate_limit_agreement']:.1f}% "
          "of calibration observations (the conversion rate's ceiling)")


def convert_grsn(args) -> None:
    from conversion.grsn import convert_policy

    art = convert_policy(args.checkpoint, args.env, args.profile, args.calib_episodes, args.calib_seed)
    art.save(args.output)
    m = art.manifest
    fb = m["quantization"]["frac_bits"]
    print(f"wrote {args.output}: GRSN policy, {len(art.stages)} stages, profile {m['profile']['name']} "
          f"({m['conversion_seconds']:.1f} s)")
    print(f"  scales 2^-k: input {fb['input']}, embeddings {fb['embed']}, GRSN state {fb['state']} "
          f"(threshold {1 << fb['state']}), values {fb['q']}")
    for name, err in m["quantization"]["weight_rel_rms_error"].items():
        print(f"  {name:<10} weight error {100 * err:.2f}% (rel. RMS)")


def cmd_info(args) -> None:
    from conversion.artifact import FORMAT_VERSION, read_artifact

    art = read_artifact(args.artifact)
    m = art.manifest
    if args.json:
        print(json.dumps(m, indent=2))
        return
    if art.network == "grsn":
        print(f"{args.artifact}: lavaloop artifact v{FORMAT_VERSION}, GRSN policy ({m['policy']['hidden']} neurons)")
        actions = (f"{m['n_actions']} continuous action dims (readout tanh(mean))" if m["continuous"]
                   else f"{m['n_actions']} actions")
        print(f"  env        {m['env']['id']}  observation {tuple(m['obs_shape'])}, {actions}")
        print(f"  source     {m['source']['file']}, sha256 {m['source']['sha256'][:16]}...")
        print(f"  profile    {m['profile']['name']}: {m['profile']['description']}")
        for st in art.stages:
            w = st["weight"] if st["kind"] == "dense" else st["w_f"]
            print(f"  stage      {st['name']:<8} {st['kind']:<6} {w.shape[1]:>4} -> {w.shape[0]}")
        return
    src = m["source"]
    print(f"{args.artifact}: lavaloop artifact v{FORMAT_VERSION} (lavaloop {m['lavaloop_version']})")
    print(f"  env        {m['env']['id']}  observation {tuple(m['obs_shape'])}, {m['n_actions']} actions")
    print(f"  source     {src['file']} ({src['format']}), sha256 {src['sha256'][:16]}...")
    print(f"  profile    {m['profile']['name']}: {m['profile']['description']}")
    print(f"  coding     T={m['timesteps']} steps per decision, readout={m['readout']}, "
          f"input payload obs*2^{m['input_scale_bits']}, epsilon {m['epsilon']}")
    n = m["normalization"]
    scales = ", ".join(f"{min(s):.3g}..{max(s):.3g}" if isinstance(s, list) else f"{s:.3g}" for s in n["scales"])
    print(f"  normalize  {n.get('mode', 'layer')}-wise, percentile {n['percentile']} over {n['calib_steps']} "
          f"calibration steps; scales {scales}")
    if "rate_limit_agreement" in m:   # older artifacts lack it
        print(f"  ceiling    the T -> infinity limit agrees with the source on "
              f"{100 * m['rate_limit_agreement']:.1f}% of calibration observations")
    for q, r in zip(art.layers, m["quantization"]):
        kind = f"conv {q.weight.shape[2]}x{q.weight.shape[3]}/{q.stride}" if q.is_conv else "dense"
        print(f"  layer      {r['layer']:<24} {kind:<11} {q.in_size:>6} -> {q.out_size:<6} IF "
              f"vth={q.vth.min()}..{q.vth.max()} exp={q.weight_exp} weight error {100 * r['weight_rel_rms_error']:.2f}%")


def cmd_run(args) -> None:
    from conversion.artifact import read_artifact
    from deploy.episodes import decision_agreement, source_returns
    from deploy.results import build_record, summary_table, write_json
    from deploy.runner import RunSettings, run

    art = read_artifact(args.artifact)
    if art.network == "grsn":
        return run_grsn_cli(art, args)
    if args.env or args.sticky_actions is not None:
        art = art.with_env(args.env, args.sticky_actions)
    settings = RunSettings.for_artifact(art, args.episodes, args.seed, args.timesteps, args.readout,
                                        args.epsilon, args.backend, fuse=not args.per_layer_processes)
    log = run(art, settings, progress=not args.no_progress)
    rec = build_record(art, args.artifact, settings, log, decision_agreement(art, log),
                       source_returns(art, settings.seeds, settings.epsilon))
    print(summary_table(rec))
    if args.json:
        write_json(args.json, rec)
        print(f"results: {args.json}")


def run_grsn_cli(art, args) -> None:
    from deploy.grsn import check_grsn_deployable, grsn_table, run_grsn
    from deploy.results import write_json

    if args.env or args.sticky_actions is not None or args.timesteps or args.readout or args.per_layer_processes:
        raise LavaloopError("a GRSN artifact runs on its own env, one step per env step: "
                            "--env, --sticky-actions, --timesteps, --readout and --per-layer-processes do not apply")
    check_grsn_deployable(art)
    rec = run_grsn(art, list(range(args.seed, args.seed + args.episodes)), args.epsilon or 0.0, args.backend,
                   progress=not args.no_progress)
    print(grsn_table(rec))
    if args.json:
        write_json(args.json, rec)
        print(f"results: {args.json}")


def cmd_dream(args) -> None:
    from deploy.dreaming.agent import DreamConfig
    from deploy.dreaming.protocol import run

    if args.env != "pong":
        raise LavaloopError(f"unknown dreaming environment {args.env!r} (known: pong)")
    cfg = DreamConfig(runs=args.runs, games=args.games, dream=not args.no_dream, profile=args.profile,
                      mismatch_sigma=args.mismatch_sigma, mismatch_seed=args.mismatch_seed, seed=args.seed)
    out = args.out or f"runs/pong_{'dream' if cfg.dream else 'nodream'}_{args.backend}"
    rec = run(cfg, out, args.backend, args.checkpoint_every, progress=not args.no_progress)
    c = rec["curve"]
    print(f"{cfg.runs} runs x {cfg.games} games on {rec['backend']} ({rec['profile']['name']}, "
          f"mismatch sigma {rec['mismatch_sigma']}, {'with' if cfg.dream else 'without'} dreaming): "
          f"{rec['wall_s']:.0f} s")
    if c:
        print(f"  mean return over the last 50 games: start {c['start_mean']:+.2f}, "
              f"final {c['final_mean']:+.2f} +- {c['final_sd']:.2f}; reaches -0.5 at game "
              f"{c['first_game_mean_ge_-0.5']}, 0 at game {c['first_game_mean_ge_0']}")
    print(f"results: {out}/results.json")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lavaloop", description="Run trained RL policies as spiking "
                                "networks on Lava, closed-loop, under a chip's constraints.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="checkpoint -> artifact (.h5)")
    c.add_argument("checkpoint", help="SB3 DQN .zip (MlpPolicy or CnnPolicy), a PyTorch/CleanRL "
                   "state dict (.pt) of an MLP or the Nature DQN, or a GRSN policy "
                   "(conversion.models.train_recurrent)")
    c.add_argument("--env", required=True, help="gymnasium environment id, e.g. CartPole-v1")
    c.add_argument("-o", "--output", required=True, help="artifact path (.h5)")
    c.add_argument("--percentile", type=float, default=99.9, help="normalization percentile (100 = max-norm)")
    c.add_argument("--normalization", default="layer", choices=["layer", "channel"],
                   help="one lambda per layer (the paper's) or per convolution channel")
    c.add_argument("--timesteps", type=int, default=32, help="SNN steps per decision (T)")
    c.add_argument("--readout", default="robust", choices=["robust", "spike_count"])
    c.add_argument("--profile", default="loihi2", help="chip profile name or JSON file")
    c.add_argument("--calib-steps", type=int, default=5000, help="calibration env steps")
    c.add_argument("--calib-seed", type=int, default=0)
    c.add_argument("--calib-episodes", type=int, default=20, help="GRSN policies: calibration episodes")
    c.add_argument("--epsilon", type=float, help="evaluation epsilon recorded for `run` "
                   "(default 0.05 for ALE games as in the paper, else 0)")
    c.add_argument("--v-init", default="half", choices=["half", "zero"],
                   help="membrane potential at each decision's start (zero = the paper's reset)")
    c.add_argument("--sticky-actions", type=float, metavar="P",
                   help="ALE sticky-action probability (default 0: the paper's NoFrameskip games)")
    c.add_argument("--max-episode-steps", type=int,
                   help="episode cap in agent steps (default: the env's; ALE games 18000 as in the paper)")
    c.set_defaults(func=cmd_convert)

    i = sub.add_parser("info", help="describe an artifact")
    i.add_argument("artifact")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")
    i.set_defaults(func=cmd_info)

    r = sub.add_parser("run", help="run closed-loop episodes")
    r.add_argument("artifact")
    r.add_argument("--episodes", type=int, default=20)
    r.add_argument("--seed", type=int, default=0, help="first seed; episode k uses seed + k")
    r.add_argument("--timesteps", type=int, help="override the artifact's T")
    r.add_argument("--readout", choices=["robust", "spike_count"], help="override the artifact's readout")
    r.add_argument("--epsilon", type=float, help="override the artifact's evaluation epsilon")
    r.add_argument("--backend", default="lava", choices=["lava", "emulator"])
    r.add_argument("--env", help="deploy on this environment id instead of the artifact's "
                   "(same observation and action shapes; ALE: same game)")
    r.add_argument("--sticky-actions", type=float, metavar="P", help="ALE: override the sticky-action probability")
    r.add_argument("--per-layer-processes", action="store_true",
                   help="Lava: one process per layer (default: the whole network in one process)")
    r.add_argument("--json", help="write the results record here")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("dream", help="on-chip agent with host-trained readouts, learning from real "
                       "games and dreams (resumable)")
    d.add_argument("env", help="pong (Atari Pong from RAM)")
    d.add_argument("--runs", type=int, default=10)
    d.add_argument("--games", type=int, default=2000)
    d.add_argument("--no-dream", action="store_true", help="learn from real games only")
    d.add_argument("--profile", default="dynapse1", help="mixed-signal chip profile name or JSON file")
    d.add_argument("--mismatch-sigma", type=float, help="override the profile's device mismatch")
    d.add_argument("--mismatch-seed", type=int, default=0, help="the chip instance")
    d.add_argument("--seed", type=int, default=0, help="run r uses seed + r")
    d.add_argument("--backend", default="emulator", choices=["emulator", "lava"])
    d.add_argument("--out", help="run directory (resumed if it exists); default runs/pong_<condition>_<backend>")
    d.add_argument("--checkpoint-every", type=int, default=50, help="games between checkpoints (emulator)")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_dream)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except LavaloopError as exc:
        print(f"lavaloop: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lavaloop: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
