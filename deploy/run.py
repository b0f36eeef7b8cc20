"""`run`: an artifact's closed-loop episodes on a backend, measured the same way for every kind."""
from __future__ import annotations

from lavaloop.artifact import Artifact
from lavaloop.deploy.results import RunResult, build_result
from lavaloop.kinds import deployment_class
from lavaloop.options import RunSettings


def run(art: Artifact, settings: RunSettings | None = None, progress: bool = True,
        artifact_path: str | None = None) -> RunResult:
    """Play the artifact's episodes on Lava or the emulator and measure them.

    Parameters
    ----------
    art: an artifact of any registered kind.
    settings: how to run (default RunSettings()); kind-specific settings the kind does not
        take are refused.
    progress: show a progress bar.
    artifact_path: recorded in the result.

    Returns a RunResult: returns beside the float source's and a random policy's on the same
    seeds, decision agreement, spikes, synaptic operations, energy and timing.
    """
    settings = settings or RunSettings()
    dep = deployment_class(art.kind)(art, settings)
    dep.check()
    log = dep.run_lava(progress) if settings.backend == "lava" else dep.run_emulator(progress)
    fid = dep.fidelity(log)
    return build_result(dep, log, fid, dep.source_returns(), dep.random_returns(),
                        artifact_path)
