"""What every artifact converted from a DQN shares: the float source network and the environment."""
from __future__ import annotations

from dataclasses import replace

import h5py

from lavaloop.artifact import Artifact
from lavaloop.conversion.network import ConvLayer, DenseLayer, Layer
from lavaloop.envs import game, is_atari
from lavaloop.errors import ArtifactError


class ConvertedDQN(Artifact):
    """Base of the DQN kinds ("if", "sigma-delta"). A subclass is a dataclass with fields
    `layers` (its integer layers) and `source` (the float source network, for fidelity),
    stored as /source/{i}/ weight, bias (, stride, inShape)."""

    source: list[Layer]

    def with_env(self, env_id: str | None = None, sticky: float | None = None,
                 physics: dict | None = None) -> ConvertedDQN:
        """This artifact deployed on another environment id, sticky-action probability and/or
        physics (`EnvSpec.physics`, merged into the artifact's own).

        The preprocessing stays; an ALE artifact only moves between versions of its own game.
        """
        spec = self.env_spec
        if physics:
            spec = replace(spec, physics={**spec.physics, **physics})
        new_id = env_id or spec.id
        if spec.atari is not None:
            if not is_atari(new_id) or game(new_id) != game(spec.id):
                raise ArtifactError(f"artifact was converted for {spec.id}; {new_id} is a different game")
            pre = spec.atari if sticky is None else replace(spec.atari, repeat_action_probability=sticky)
            spec = replace(spec, id=new_id, atari=pre)
        elif sticky is not None:
            raise ArtifactError(f"sticky actions apply to ALE games only, not {spec.id}")
        else:
            spec = replace(spec, id=new_id)
        return replace(self, manifest={**self.manifest, "env": spec.to_dict()})


    def distillation_line(self, model: str) -> list[str]:
        """The `describe` line of the distillation report ([] if not distilled); `model` names what it trained."""
        d = self.manifest.get("distillation")
        if not d:
            return []
        return [f"distilled  {d['steps']} steps on {d['observations']} observations ({d['seconds']:.0f} s): {model} "
                f"agrees with the source on {100 * d['heldout_agreement_before']:.1f}% -> "
                f"{100 * d['heldout_agreement_after']:.1f}% of held-out observations"
                + (f", {100 * d['own_agreement_before']:.1f}% -> {100 * d['own_agreement_after']:.1f}% of its own"
                   if "own_agreement_after" in d else "")
                + "".join(f"; {name} objective {100 * r['own_agreement_after']:.1f}% of its own"
                          + (" (the better)" if name == d["objective"] else "")
                          for name, r in d.get("objectives", {}).items())
                + ("; kept the converted network" if d.get("kept") == "converted" else "")]

    def adaptation_line(self) -> list[str]:
        """The `describe` line of a readout adapted in the loop ([] if not adapted); the layer
        lines below then describe the adapted readout (its weight error is the conversion's)."""
        a = self.manifest.get("adaptation")
        if not a:
            return []
        physics = ", ".join(f"{k}={v}" for k, v in a["env"].get("physics", {}).items())
        sticky = (a["env"].get("atari") or {}).get("repeat_action_probability")
        where = a["env"]["id"] + (f" ({physics})" if physics else "") + (f" (sticky {sticky})" if sticky else "")
        return [f"adapted    readout trained in the loop on {where}: {a['rule']}, {a['episodes']} episodes on "
                f"{a['backend']}; mean return of the first / last 10 {a['first_returns_mean']:.1f} / "
                f"{a['last_returns_mean']:.1f}"
                + (f"; kept the readout of episode {kept['episode']} (10-episode mean {kept['window_mean']:.1f})"
                   if (kept := a.get("kept", {})).get("readout") == "best" else "")]

    @staticmethod
    def layer_kind(q) -> str:
        """"dense", or "conv KxK/S" for a convolution: a `describe` column."""
        return f"conv {q.weight.shape[2]}x{q.weight.shape[3]}/{q.stride}" if q.is_conv else "dense"

    def _write_source(self, f: h5py.File) -> None:
        for i, s in enumerate(self.source):
            g = f.create_group(f"source/{i}")
            g["weight"], g["bias"] = s.weight, s.bias
            if isinstance(s, ConvLayer):
                g["stride"], g["inShape"] = s.stride, list(s.in_shape)
            g.attrs["name"] = s.name

    @staticmethod
    def _read_source(f: h5py.File) -> list[Layer]:
        source: list[Layer] = []
        for i in range(len(f["source"])):
            g = f[f"source/{i}"]
            if "stride" in g:
                source.append(ConvLayer(g.attrs["name"], g["weight"][()], g["bias"][()], int(g["stride"][()]),
                                        tuple(int(n) for n in g["inShape"][()])))
            else:
                source.append(DenseLayer(g.attrs["name"], g["weight"][()], g["bias"][()]))
        return source
