"""The public functions: convert, load_artifact, run, adapt, dream, sweep."""
from __future__ import annotations

from pathlib import Path

from lavaloop.options import RunSettings, from_kwargs


def convert(checkpoint: str | Path, env: str, **options):
    """Convert a trained policy checkpoint into a fixed-point spiking network artifact.

    The checkpoint's kind is recognised (lavaloop.kinds): a GRSN policy checkpoint becomes a
    GRSN artifact; a QMIX team of GRSN agents (lavaloop.trainers.qmix) a GRSN team artifact;
    a DQN (SB3 .zip, CleanRL or plain PyTorch state dict, MLP or Nature DQN) a rate-coded IF
    network (or sigma-delta, or mapped onto a mixed-signal profile).

    Parameters
    ----------
    checkpoint: path of the checkpoint (read without unpickling arbitrary objects).
    env: gymnasium environment id (ALE games as "ALE/Pong-v5"; POMDP tasks as "CartPole-V"),
        or for a team a cooperative multi-agent task ("mpe2:simple_spread_v3").
    **options: the kind's conversion options: `ConvertOptions` fields for a DQN (percentile,
        timesteps, readout, profile, calib_steps, ...), `GRSNConvertOptions` fields for a
        GRSN policy or team (profile, calib_episodes, calib_seed).

    Returns
    -------
    Artifact: the converted network, not yet saved (`artifact.save(path)`).

    Raises
    ------
    LavaloopError: unreadable checkpoint, unknown env, shapes that do not fit, bad option.
    """
    from lavaloop.kinds import kind_for_checkpoint, resolve

    kind = kind_for_checkpoint(checkpoint)
    return resolve(kind.converter)(checkpoint, env, **options)


def load_artifact(path: str | Path):
    """Read an artifact written by `convert` (any kind), verifying its digest.

    Parameters
    ----------
    path: the .h5 file.

    Returns
    -------
    Artifact: the subclass of its kind (IFArtifact, GRSNArtifact, ...).

    Raises
    ------
    ArtifactError: missing, foreign, modified or inconsistent file.
    """
    from lavaloop.artifact import read_artifact

    return read_artifact(path)


def run(artifact, episodes: int = 20, backend: str = "lava", *, seed: int = 0, progress: bool = True,
        **settings):
    """Run closed-loop episodes of an artifact and measure them against its source.

    Parameters
    ----------
    artifact: an Artifact, or the path of one.
    episodes: number of episodes; episode k uses seed `seed + k`.
    backend: "lava" (Lava's CPU simulator, fixed-point models) or "emulator" (bit-exact, vectorized).
    seed: the first seed.
    progress: show a progress bar.
    **settings: further `RunSettings` fields (epsilon, timesteps, readout, env, ...).

    Returns
    -------
    RunResult: returns (with the source's and a random policy's on the same seeds), decision
    agreement, spikes, synaptic operations, energy, timing; `.summary()` prints a table,
    `.to_dict()` gives the JSON record.
    """
    from lavaloop.artifact import Artifact
    from lavaloop.deploy.run import run as run_deployment

    path = None
    if not isinstance(artifact, Artifact):
        path, artifact = str(artifact), load_artifact(artifact)
    opts = from_kwargs(RunSettings, {"episodes": episodes, "backend": backend, "seed": seed, **settings}, "run")
    return run_deployment(artifact, opts, progress=progress, artifact_path=path)


def adapt(artifact, env: str | None = None, episodes: int = 100, rule: str = "td", backend: str = "emulator", *,
          out: str | Path | None = None, env_params: dict | None = None, sticky_actions: float | None = None,
          progress: bool = True, **config):
    """Train a deployed network's readout on the host while the network runs, episode by episode.

    The hidden layers stay as converted; after every episode the host trains the output
    layer on what the chip's last hidden layer sent it (spike counts, or graded
    activations for sigma-delta) and writes the
    quantized weights into the running network (lavaloop.deploy.adapt). Resumable: a run
    directory with the same configuration continues where it stopped.

    Parameters
    ----------
    artifact: a converted DQN: a rate-coded ("if", "robust" readout) or "sigma-delta" Artifact, or
        the path of one, with a dense output layer above a hidden layer.
    env: adapt on this environment id instead of the artifact's (same shapes).
    episodes: adaptation episodes; episode k uses seed `seed + k`.
    rule: "td" (TD(0) with replay and a target copy), "reinforce" (the dreaming agent's rule)
        or "distill" (match the source's Q-values on the same observations; no reward needed).
    backend: "emulator" or "lava" (one Lava runtime for the whole run; bit-exact with the emulator).
    out: run directory (default runs/adapt_<env>_<rule>_<backend>).
    env_params: numeric env attributes to change (a drifted task), e.g. {"length": 1.0}.
    sticky_actions: ALE sticky-action probability.
    progress: show a progress bar.
    **config: further `AdaptConfig` fields (seed, epsilon, lr, gamma, batch, ...).

    Returns
    -------
    (dict, Artifact): the run record (also out/results.json: the per-episode curve of return,
    length and agreement with the source) and the adapted artifact (readout replaced, the
    environment and the adaptation recorded in its manifest; save it with `.save(path)`).
    """
    from lavaloop.artifact import Artifact
    from lavaloop.deploy.adapt.protocol import adapt as run_adaptation
    from lavaloop.deploy.adapt.readout import check_trainable
    from lavaloop.deploy.adapt.rules import AdaptConfig
    from lavaloop.kinds import deployment_class

    if not isinstance(artifact, Artifact):
        artifact = load_artifact(artifact)
    check_trainable(artifact)
    cfg = from_kwargs(AdaptConfig, {"episodes": episodes, "rule": rule, **config}, "adapt")
    settings = RunSettings(backend=backend, env=env, env_params=env_params, sticky_actions=sticky_actions)
    deployment = deployment_class(artifact.kind)(artifact, settings)
    deployment.check()
    art = deployment.art
    out = out or f"runs/adapt_{art.env_id.replace('/', '_')}_{rule}_{backend}"
    return run_adaptation(art, cfg, out, backend, progress=progress)


def dream(env: str = "pong", out: str | Path | None = None, backend: str = "emulator", *,
          checkpoint_every: int = 50, progress: bool = True, **config) -> dict:
    """Train the on-chip dreaming agent (Blakowski et al.): fixed spiking populations on an
    emulated mixed-signal chip, readouts trained on the host from real games and dreams.

    Parameters
    ----------
    env: the game ("pong": Atari Pong from RAM).
    out: run directory; resumed if it holds the same configuration (default
        runs/<env>_<dream|nodream>_<backend>).
    backend: "emulator" (all runs batched) or "lava".
    checkpoint_every: games between checkpoints (emulator), >= 1.
    progress: show a progress bar.
    **config: `DreamConfig` fields (runs, games, dream, profile, mismatch_sigma, seed, ...);
        protocol="reference" starts from the authors' settings (`dreaming.agent.REFERENCE`).

    Returns
    -------
    dict: the results record, also written to out/results.json (learning curves, returns, timing).
    """
    from lavaloop.deploy.dreaming.agent import dream_config
    from lavaloop.deploy.dreaming.protocol import run as run_protocol
    from lavaloop.errors import LavaloopError
    from lavaloop.options import at_least

    if env != "pong":
        raise LavaloopError(f"unknown dreaming environment {env!r} (known: pong)")
    at_least("checkpoint_every", checkpoint_every, 1)
    cfg = dream_config(config)
    prefix = "" if cfg.protocol == "ours" else f"{cfg.protocol}_"
    suffix = ("" if cfg.coding_level is None else f"_coding{cfg.coding_level:g}") + (
        f"_dreams{cfg.dreams}" if cfg.dreams != 1 else "") + ("_peraction" if cfg.rules.model_per_action else "") + (
        f"_taps{cfg.rules.model_taps}" if cfg.rules.model_taps != 1 else "") + (
        f"_entropy{cfg.rules.entropy:g}" if cfg.rules.entropy else "") + (
        f"_baseline{cfg.rules.dream_baseline:g}" if cfg.rules.dream_baseline else "") + (
        f"_from{cfg.dream_start}" if cfg.dream_start != "reset" else "") + (
        f"_steps{cfg.dream_steps}" if cfg.dream_steps != 50 else "")
    out = out or f"runs/{env}_{prefix}{'dream' if cfg.dream else 'nodream'}{suffix}_{backend}"
    return run_protocol(cfg, out, backend, checkpoint_every, progress=progress)


def sweep(spec, out: str | Path | None = None, address: str | None = None, workers: int | None = None, *,
          progress: bool = True) -> dict:
    """Run a grid of conversions and runs (or dreaming runs) as Ray tasks; resumable cell by cell.

    Parameters
    ----------
    spec: the path of a TOML spec (lavaloop.deploy.sweep.spec documents its layout), or the same
        tables as a dict (relative paths then taken from the current folder).
    out: the sweep's folder (default: the spec's `out`, else a folder named after it). Finished
        cells are kept there; running the same spec again runs only the cells not yet finished.
    address: join the Ray cluster at HOST:PORT (or "auto"); None starts Ray on this machine.
    workers: CPUs of the Ray started here (default: all), >= 1.
    progress: show a progress bar over the cells.

    Returns
    -------
    dict: the results record, also OUT/results.json (each cell's axis values and recorded metrics;
    with [summary], their distributions over chip instances), beside OUT/<name>.png and
    OUT/report.html.
    """
    from lavaloop.deploy.sweep.runner import sweep as run_sweep
    from lavaloop.deploy.sweep.spec import load_spec, parse_spec

    parsed = parse_spec(spec) if isinstance(spec, dict) else load_spec(spec)
    return run_sweep(parsed, out, address, workers, progress)
