"""Artifacts in other tools' formats: NIR graphs (rate-coded IF networks) and lava-dl netx
HDF5 files (sigma-delta networks). `lavaloop export` and `lavaloop.export` call `export`."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from lavaloop.artifact import Artifact
from lavaloop.atomic import atomic_path
from lavaloop.errors import LavaloopError

FORMATS = ("nir", "netx")
NETX_STATE_EXP = 6   # lava-dl netx builds every SigmaDelta with state_exp 6 (and spike_exp from the Network)


def export(art: Artifact, path: str | Path, fmt: str) -> dict:
    """Write `art` as `fmt` ("nir" for a rate-coded IF artifact, "netx" for a sigma-delta one).

    Parameters
    ----------
    art: a loaded artifact. path: the output file (written atomically). fmt: "nir" or "netx".

    Returns what a consumer needs to know beyond the file (e.g. how to feed the netx network).
    """
    if fmt not in FORMATS:
        raise LavaloopError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    wanted = {"nir": "if", "netx": "sigma-delta"}[fmt]
    if art.kind != wanted:
        raise LavaloopError(f"a {art.kind!r} artifact cannot be exported to {fmt} (it takes {wanted!r} "
                            f"artifacts{': convert with --coding sigma-delta' if fmt == 'netx' else ''})")
    with atomic_path(path) as tmp:
        return export_nir(art, tmp) if fmt == "nir" else export_netx(art, tmp)


def export_nir(art, path: Path) -> dict:
    """The rate-coded IF network as a NIR graph: per layer an Affine or Conv2d node and an IF node.

    Weights and biases are the implemented fixed-point values in threshold units
    (W_mant * 2**exp / vth), so every IF node has r = 1 and v_threshold = 1 per neuron. NIR's
    IF resets to `v_reset`; ours subtracts the threshold and starts each decision at v_init:
    both are recorded in every IF node's metadata ({"reset": "subtract", "v_init": ...}),
    with the window and readout in the graph's.
    """
    import nir

    nodes, edges, prev = {"input": nir.Input({"input": np.array(art.manifest["obs_shape"])})}, [], "input"
    for i, q in enumerate(art.layers):
        w, b = q.effective()
        if q.is_conv:
            syn = nir.Conv2d(input_shape=tuple(q.in_shape[1:]), weight=w, stride=q.stride, padding=0, dilation=1,
                             groups=1, bias=q.bias / q.vth)
        else:
            if i > 0 and art.layers[i - 1].is_conv:
                shape = np.array(art.layers[i - 1].out_shape)
                nodes[f"flatten{i}"] = nir.Flatten(input_type={"input": shape}, start_dim=0)
                edges.append((prev, f"flatten{i}"))
                prev = f"flatten{i}"
            syn = nir.Affine(weight=w, bias=b)
        shape = q.out_shape
        v_init = q.per_neuron(q.v_init / q.vth).reshape(shape)
        nodes[f"layer{i}"] = syn
        nodes[f"if{i}"] = nir.IF(r=np.ones(shape), v_threshold=np.ones(shape), v_reset=np.zeros(shape),
                                 metadata={"reset": "subtract", "v_init": v_init, "name": q.name})
        edges += [(prev, f"layer{i}"), (f"layer{i}", f"if{i}")]
        prev = f"if{i}"
    nodes["output"] = nir.Output({"output": np.array(art.layers[-1].out_shape)})
    edges.append((prev, "output"))
    meta = {"producer": "lavaloop", "coding": "rate", "timesteps": art.timesteps, "readout": art.manifest["readout"],
            "input_scale_bits": art.manifest["input_scale_bits"], "env": art.manifest["env"]["id"],
            "note": "IF nodes reset by subtraction (metadata 'reset'); each decision holds the observation "
                    "for `timesteps` steps starting from v_init; layer l is active at steps l..l+T-1"}
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)
    nir.write(path, graph)
    return {"nodes": len(nodes)}


def export_netx(art, path: Path) -> dict:
    """The sigma-delta network as the HDF5 file lava-dl's `netx.hdf5.Network` builds.

    netx gives every SigmaDelta layer a message shift (state_exp) of 6 and scales thresholds
    and biases by 2**(spike_exp + 6); built with `Network(spike_exp=0, input_message_bits=16)`
    those are whole message units, as ours, so an artifact converted with `message_shift=6`
    maps one to one: integer weights, biases and thresholds >> 6. There is no input layer:
    feed the network our delta-encoded payload messages. The output layer becomes netx's
    Sigma, which takes no bias: add the returned `output_bias` (state units) to its values.
    One difference remains: Lava's SigmaDelta drops the low bits a message shift loses,
    where ours keeps them in the residue: from rest, a hidden neuron with a positive bias
    sends twice on Lava (its bias, then the input's effect), so even the first decision
    differs slightly, and later ones drift (tests/test_export.py measures it).
    """
    last = len(art.layers) - 1
    if any(q.is_conv for q in art.layers):
        raise LavaloopError("netx export takes dense sigma-delta networks only, for now (netx's convolutions "
                            "are channels-last and not checked against ours)")
    if any(q.split_bits for q in art.layers):
        raise LavaloopError("netx builds one 8-bit synapse per connection; this artifact splits its weights over "
                            "two: convert without --weight-split-bits to export it to netx")
    shifts = [q.msg_shift for q in art.layers[:-1]]
    if any(s != NETX_STATE_EXP for s in shifts):
        raise LavaloopError(f"netx shifts every message by {NETX_STATE_EXP} bits; this artifact's layers shift by "
                            f"{shifts}: convert with --message-shift {NETX_STATE_EXP} to export it to netx")
    with h5py.File(path, "w") as f:
        for i, q in enumerate(art.layers):
            g = f.create_group(f"layer/{i}")
            g["type"] = np.bytes_("dense")
            g["weight"], g["shape"] = q.weight.astype(np.int64), np.array([q.out_size])
            n = g.create_group("neuron")
            n["type"] = np.bytes_("SDNN")
            if i == last:
                n["sigma_output"] = 1
            else:
                n["vThMant"] = q.vth >> NETX_STATE_EXP
                g["bias"] = q.bias >> NETX_STATE_EXP
    return {"spike_exp": 0, "input_message_bits": 16,
            "output_bias": art.layers[-1].bias.tolist()}
