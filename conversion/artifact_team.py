"""The GRSN team artifact (kind "grsn-team"): one agent network's fixed-point stages for a whole team.

A QMIX team shares one agent network, so the artifact is a GRSN artifact (same stages and
datasets, `lavaloop.conversion.artifact_grsn`) whose manifest names a cooperative
multi-agent task (`env`: a `lavaloop.teams.TeamSpec`) and the team's shape (`team`: agents,
their observation sizes and action counts, the global state's size). The network's
observation is an agent's padded observation plus its one-hot index (`obs_shape`), its
actions the team's largest action count (`n_actions`).
"""
from __future__ import annotations

from dataclasses import dataclass

from lavaloop.conversion.artifact_grsn import GRSNArtifact
from lavaloop.errors import ArtifactError
from lavaloop.teams import TeamShape, TeamSpec


@dataclass
class TeamArtifact(GRSNArtifact):
    """A team of identical GRSN agents (lavaloop.conversion.team)."""

    kind = "grsn-team"
    manifest_keys = GRSNArtifact.manifest_keys + ("team",)

    @property
    def env_spec(self) -> TeamSpec:
        return TeamSpec.from_dict(self.manifest["env"])

    @property
    def team(self) -> TeamShape:
        return TeamShape.from_dict(self.manifest["team"])

    def validate(self, what: str = "artifact") -> None:
        """The GRSN stages' checks, plus: the network's input and output sizes fit the team."""
        super().validate(what)
        m = self.manifest
        try:
            team, spec = self.team, self.env_spec
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{what}: malformed team description ({exc})") from exc
        if m["continuous"] or list(m["obs_shape"]) != [team.agent_obs_dim] or m["n_actions"] != team.max_actions:
            raise ArtifactError(f"{what}: the agent network ({m['obs_shape']} inputs, {m['n_actions']} actions) "
                                f"does not fit its team of {team.n_agents} on {spec.id}")

    def describe(self) -> list[str]:
        team = self.team
        agents = ", ".join(f"{a} ({o} obs, {n} actions)" for a, o, n in zip(team.agents, team.obs_dims,
                                                                           team.n_actions))
        return [f"team       {team.n_agents} agents sharing one network: {agents}", *super().describe()]
