"""The registry of network kinds: each kind's artifact class, deployment and converter.

A kind is one artifact class (read, validate, describe, write; `lavaloop.artifact`), one
deployment (Lava graph, emulator, fidelity replay; `lavaloop.deploy.kinds`) and one
converter (checkpoint -> artifact). Everything that dispatches on a kind (`convert`,
`run`, `info`, the CLI, sweeps) goes through this table, by name, so adding a kind is its
modules plus one entry in KINDS. Entries name their objects as "module:attribute" and
are imported on first use: `import lavaloop` stays light.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from lavaloop.errors import LavaloopError


@dataclass(frozen=True)
class Kind:
    """One network kind.

    Parameters
    ----------
    name: stored in every artifact of the kind (root attribute `network`).
    artifact: its `lavaloop.artifact.Artifact` subclass.
    deployment: its `lavaloop.deploy.kinds.base.Deployment` subclass.
    converter: converter(checkpoint, env_id, **options) -> artifact; None for a kind that
        another kind's converter makes (the DQN converter makes "sigma-delta" with
        coding="sigma-delta").
    claims: claims(checkpoint) -> bool, whether the checkpoint is this kind's source; None
        for the fallback kind (tried last).
    options: the converter's options dataclass (checked before a sweep converts anything); None
        where `converter` is None.
    description: one line for help texts.
    """

    name: str
    artifact: str
    deployment: str
    converter: str | None
    claims: str | None
    options: str | None
    description: str


KINDS = {k.name: k for k in (
    Kind("grsn", "lavaloop.conversion.artifact_grsn:GRSNArtifact", "lavaloop.deploy.kinds.grsn:GRSNDeployment",
         "lavaloop.conversion.grsn:convert_policy", "lavaloop.conversion.grsn:is_policy_checkpoint",
         "lavaloop.options:GRSNConvertOptions",
         "GRSN policy (gated recurrent spiking neurons, one SNN step per env step)"),
    Kind("grsn-team", "lavaloop.conversion.artifact_team:TeamArtifact", "lavaloop.deploy.kinds.team:TeamDeployment",
         "lavaloop.conversion.team:convert_team", "lavaloop.conversion.models.qmix:is_team_checkpoint",
         "lavaloop.options:GRSNConvertOptions",
         "team of GRSN agents sharing one network (QMIX), on one chip per agent or one shared"),
    Kind("if", "lavaloop.conversion.artifact_if:IFArtifact", "lavaloop.deploy.kinds.rate_if:IFDeployment",
         "lavaloop.conversion.convert:convert_dqn", None, "lavaloop.options:ConvertOptions",
         "rate-coded IF network converted from a DQN (Tan et al.)"),
    Kind("mixed-signal", "lavaloop.conversion.artifact_ms:MixedSignalArtifact",
         "lavaloop.deploy.kinds.mixed_signal:MixedSignalDeployment", None, None, None,
         "DQN mapped onto a mixed-signal chip (LIF neurons, shared weight levels, device mismatch)"),
    Kind("sigma-delta", "lavaloop.conversion.artifact_sd:SDArtifact",
         "lavaloop.deploy.kinds.sigma_delta:SDDeployment", None, None, None,
         "sigma-delta network converted from a DQN (graded spikes, one Lava step per layer)"),
)}


def resolve(ref: str):
    """The object named by "module:attribute"."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def known_kinds() -> list[str]:
    return list(KINDS)


def get_kind(name: str) -> Kind:
    if name not in KINDS:
        raise LavaloopError(f"unknown network kind {name!r} (known: {', '.join(KINDS)})")
    return KINDS[name]


def artifact_class(name: str) -> type:
    return resolve(get_kind(name).artifact)


def deployment_class(name: str) -> type:
    return resolve(get_kind(name).deployment)


def kind_for_checkpoint(checkpoint: str | Path) -> Kind:
    """The kind whose converter takes `checkpoint`: the first that claims it, else the fallback."""
    fallback = None
    for kind in KINDS.values():
        if kind.converter is None:
            continue
        if kind.claims is None:
            fallback = kind
        elif resolve(kind.claims)(checkpoint):
            return kind
    if fallback is None:
        raise LavaloopError(f"no network kind converts {Path(checkpoint).name}")
    return fallback
