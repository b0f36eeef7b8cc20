"""RunResult: what every run measured, the same fields for every network kind."""
from __future__ import annotations

import platform
from dataclasses import dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from lavaloop.deploy.energy import energy_report
from lavaloop.deploy.episodes import EpisodeLog

PACKAGES = ("lavaloop", "lava-nc", "lava-dl", "torch", "numpy", "gymnasium", "ale-py")


def versions() -> dict:
    """Python's and the key packages' versions, for every record."""
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _mean(x) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


@dataclass
class RunResult:
    """The outcome of `lavaloop.run` for any network kind.

    Returns are compared sign-safely: `return_difference` (network - source) and the
    `normalized_score` (network - random) / (source - random) against a uniformly random
    policy on the same seeds, as Atari papers report; `return_ratio` only where both mean
    returns are positive. `agreement` is the fraction of decisions where the float
    source's greedy action equals the network's (for a converted DQN, the paper's
    "conversion rate"). `energy` estimates the run's energy from its measured spikes and
    synaptic operations (lavaloop.deploy.energy). Kind-specific numbers are in `details`;
    `log` (not serialized) keeps the raw episode log.
    """

    kind: str
    env: str
    backend: str
    profile: str
    epsilon: float
    seeds: list[int]
    returns: list[float]
    lengths: list[int]
    source_returns: list[float]
    random_returns: list[float]
    agreement: float
    agreement_per_episode: list[float]
    decisions: int
    spikes: int
    synops: int
    energy: dict
    backend_steps: int
    wall_s: float
    compile_s: float | None
    source_sha256: str
    artifact: str | None = None
    details: dict = field(default_factory=dict)
    versions: dict = field(default_factory=versions)
    log: EpisodeLog | None = field(default=None, repr=False, compare=False)

    @property
    def mean_return(self) -> float:
        return _mean(self.returns)

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    @property
    def source_mean_return(self) -> float:
        return _mean(self.source_returns)

    @property
    def random_mean_return(self) -> float:
        return _mean(self.random_returns)

    @property
    def return_difference(self) -> float:
        """Network minus source mean return (negative: the network does worse)."""
        return self.mean_return - self.source_mean_return

    @property
    def normalized_score(self) -> float | None:
        """(network - random) / (source - random): 1 matches the source, 0 is chance; None
        when the source does no better or worse than random."""
        gap = self.source_mean_return - self.random_mean_return
        return None if abs(gap) < 1e-12 else (self.mean_return - self.random_mean_return) / gap

    @property
    def return_ratio(self) -> float | None:
        """network / source mean return, only where both are positive (else None)."""
        src, snn = self.source_mean_return, self.mean_return
        return snn / src if src > 0 and snn > 0 else None

    @property
    def spikes_per_decision(self) -> float:
        return self.spikes / max(self.decisions, 1)

    @property
    def synops_per_decision(self) -> float:
        return self.synops / max(self.decisions, 1)

    @property
    def steps_per_s(self) -> float | None:
        return self.backend_steps / self.wall_s if self.wall_s > 0 else None

    def to_dict(self) -> dict:
        """A JSON-able record: every field (but `log`) plus the derived numbers and per-episode rows."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "log"}
        for name in ("mean_return", "std_return", "source_mean_return", "random_mean_return", "return_difference",
                     "normalized_score", "return_ratio", "spikes_per_decision", "synops_per_decision", "steps_per_s"):
            d[name] = getattr(self, name)
        d["episodes"] = [{"seed": s, "return": r, "source_return": sr, "random_return": rr, "length": n,
                          "agreement": a}
                         for s, r, sr, rr, n, a in zip(self.seeds, self.returns, self.source_returns,
                                                       self.random_returns, self.lengths, self.agreement_per_episode)]
        return d

    def summary(self) -> str:
        """A plain-text table of the episodes and the headline numbers."""
        from lavaloop.kinds import deployment_class

        lines = [f"{self.env} on {self.backend} ({self.profile}, {self.kind} network, epsilon={self.epsilon})",
                 f"{'seed':>6} {'chip return':>12} {'source':>10} {'random':>10} {'length':>7} {'agreement':>10}"]
        for e in self.to_dict()["episodes"]:
            lines.append(f"{e['seed']:>6} {e['return']:>12.1f} {e['source_return']:>10.1f} {e['random_return']:>10.1f} "
                         f"{e['length']:>7d} {e['agreement']:>10.4f}")
        score = self.normalized_score
        en = self.energy["energy_per_decision_nj"]
        lines += [
            f"mean return: chip {self.mean_return:.1f} +- {self.std_return:.1f}, source {self.source_mean_return:.1f}, "
            f"random {self.random_mean_return:.1f}; chip - source {self.return_difference:+.1f}"
            + ("" if score is None else f", normalized score {score:.3f}"),
            f"decision agreement with the source: {self.agreement:.4f} over {self.decisions} decisions",
            *deployment_class(self.kind).summary_lines(self),
            f"per decision: {self.spikes_per_decision:.1f} spikes, {self.synops_per_decision:.0f} synaptic ops; "
            f"energy {en['cmos45']:.1f} nJ (45 nm), {en['loihi']:.1f} nJ (Loihi figures)",
            f"{self.backend}: {self.backend_steps} steps in {self.wall_s:.1f} s ({self.steps_per_s or 0:.0f} steps/s)",
        ]
        return "\n".join(lines)


def build_result(dep, log: EpisodeLog, fid, source: np.ndarray, random: np.ndarray,
                 artifact_path: str | None = None) -> RunResult:
    """The RunResult of a deployment's run (see lavaloop.deploy.run)."""
    art = dep.art
    extra = dict(log.extra)
    extra.pop("ops", None)
    compile_s = extra.pop("compile_s", None)
    details = {**dep.config(), **fid.details, "spikes_per_layer": list(map(int, log.spikes)),
               "synops_per_layer": list(map(int, log.synops)), **extra}
    return RunResult(
        kind=art.kind, env=art.env_id, backend=dep.settings.backend, profile=art.manifest["profile"]["name"],
        epsilon=dep.epsilon, seeds=list(log.seeds), returns=[float(r) for r in log.returns],
        lengths=[int(n) for n in log.lengths], source_returns=[float(r) for r in source],
        random_returns=[float(r) for r in random], agreement=float(fid.agreement),
        agreement_per_episode=[float(a) for a in fid.per_episode], decisions=log.decisions,
        spikes=int(sum(log.spikes)), synops=int(sum(log.synops)),
        energy=energy_report(dep.ops(log), log.decisions), backend_steps=int(log.steps), wall_s=float(log.wall_s),
        compile_s=compile_s, source_sha256=art.manifest["source"]["sha256"],
        artifact=None if artifact_path is None else str(artifact_path), details=details, log=log)
