"""A sweep's results: results.json (the recorded metrics per cell, and their distributions
over chip instances), a PNG of each metric against an axis, and a self-contained HTML report."""
from __future__ import annotations

import base64
import html
import json
import numbers
from pathlib import Path

import numpy as np

from lavaloop.atomic import atomic_path, save_figure, write_json
from lavaloop.deploy.results import versions
from lavaloop.deploy.sweep.spec import Cell, SweepSpec
from lavaloop.deploy.sweep.store import SweepStore


def lookup(record: dict, path: str):
    """A metric by dotted path in a cell's record ("result" first, then "conversion"); None if absent.
    Keys may hold dots themselves ("curve.first_game_mean_ge_-0.5")."""
    def walk(d, rest):
        if not isinstance(d, dict):
            return None
        if rest in d:
            return d[rest]
        for i, ch in enumerate(rest):
            if ch == "." and rest[:i] in d:
                found = walk(d[rest[:i]], rest[i + 1:])
                if found is not None:
                    return found
        return None

    for part in ("result", "conversion"):
        value = walk(record.get(part, {}), path)
        if value is not None:
            return value
    return None


def is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)


def distribution(values: list) -> dict:
    """Median, 5-95 % band, mean and spread of a metric over chip instances."""
    v = np.array([x for x in values if is_number(x)], dtype=float)
    if not len(v):
        return {"n": 0}
    p05, med, p95 = np.percentile(v, [5, 50, 95])
    return {"n": int(len(v)), "median": float(med), "p05": float(p05), "p95": float(p95), "mean": float(v.mean()),
            "std": float(v.std()), "min": float(v.min()), "max": float(v.max())}


def summarize(rows: list[dict], over: str, metrics: list[str]) -> list[dict]:
    """Rows grouped by every axis but `over`, each metric's distribution across the group."""
    groups: dict[str, dict] = {}
    for row in rows:
        params = {k: v for k, v in row["params"].items() if k != over}
        g = groups.setdefault(repr(sorted(params.items())), {"params": params, "rows": []})
        g["rows"].append(row)
    return [{"params": g["params"], over: [r["params"].get(over) for r in g["rows"]],
             "metrics": {m: distribution([r["metrics"][m] for r in g["rows"]]) for m in metrics}}
            for g in groups.values()]


def write_report(spec: SweepSpec, store: SweepStore, cells: list[Cell], finished: dict, invocation: dict,
                 invocations: list[dict]) -> dict:
    """Write results.json, <name>.png and report.html for the spec's finished cells; the record.

    Parameters
    ----------
    invocation: this run of the spec (cells kept and run, wall time, Ray CPUs).
    invocations: the runs of the spec that ran cells.
    """
    rows = [{"key": c.key, "params": c.params, "metrics": {m: lookup(finished[c.key], m) for m in spec.record},
             "wall_s": finished[c.key].get("wall_s"), "host": finished[c.key].get("host"),
             "node": finished[c.key].get("node")}
            for c in cells if c.key in finished]
    record = {"sweep": spec.name, "out": str(store.path), "task": spec.task, "spec": spec.fingerprint(),
              "axes": spec.axes, "record": spec.record, "over": spec.over, "cells": rows,
              "cells_missing": len(cells) - len(rows),
              "summary": summarize(rows, spec.over, spec.record) if spec.over else None,
              "invocation": invocation, "invocations": invocations, "versions": versions()}
    write_json(store.path / "results.json", record)
    png = store.path / f"{spec.name}.png"
    if rows:
        plot(spec, record, png)
    with atomic_path(store.path / "report.html") as tmp:
        tmp.write_text(html_report(spec, record, png if rows else None))
    return record


def x_axis(spec: SweepSpec, axes: dict) -> str | None:
    """The plot's x: the spec's, else the first numeric axis with several values."""
    if spec.plot.get("x"):
        return spec.plot["x"]
    for name, values in axes.items():
        if name != spec.over and len(values) > 1 and all(is_number(v) for v in values):
            return name
    return next((n for n, v in axes.items() if n != spec.over and len(v) > 1), None)


def plot(spec: SweepSpec, record: dict, path: Path) -> None:
    """Each metric against the x axis, one line per combination of the other axes (with
    [summary]: the median over instances and its 5-95 % band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in spec.plot.get("metrics", spec.record)
               if any(is_number(r["metrics"].get(m)) for r in record["cells"])]
    x = x_axis(spec, record["axes"])
    if not metrics:
        return
    cols = min(3, len(metrics))
    rows_n = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 3.8 * rows_n), squeeze=False)
    points = record["summary"] if spec.over else [{"params": r["params"], "metrics": r["metrics"]}
                                                  for r in record["cells"]]
    series: dict[str, list] = {}
    for p in points:
        if x is not None and x not in p["params"]:
            continue                       # a cell of another grid, without this axis
        label = ", ".join(f"{k}={v}" for k, v in p["params"].items() if k != x) or spec.name
        series.setdefault(label, []).append(p)
    xs_all = record["axes"].get(x, [None])
    numeric_x = all(is_number(v) for v in xs_all)
    for ax, m in zip(axes.flat, metrics):
        for label, pts in series.items():
            pts = sorted(pts, key=lambda p: xs_all.index(p["params"].get(x)) if p["params"].get(x) in xs_all else 0)
            xv = [p["params"].get(x) if numeric_x else xs_all.index(p["params"].get(x)) for p in pts]
            if spec.over:
                med = [p["metrics"][m].get("median", np.nan) for p in pts]
                ax.plot(xv, med, marker="o", label=label)
                ax.fill_between(xv, [p["metrics"][m].get("p05", np.nan) for p in pts],
                                [p["metrics"][m].get("p95", np.nan) for p in pts], alpha=0.2)
            else:
                yv = [p["metrics"][m] if is_number(p["metrics"][m]) else np.nan for p in pts]
                ax.plot(xv, yv, marker="o", label=label)
        if numeric_x and spec.plot.get("log_x"):
            ax.set_xscale("log", base=2)
        if not numeric_x:
            ax.set_xticks(range(len(xs_all)), [str(v) for v in xs_all])
        ax.set(title=m, xlabel=x or "", ylabel=f"median, 5-95 % over {spec.over}" if spec.over else m)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    if len(series) > 1:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"sweep {spec.name}: {len(record['cells'])} cells")
    fig.tight_layout()
    save_figure(fig, path)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_report(spec: SweepSpec, record: dict, png: Path | None) -> str:
    """One HTML file with everything inline: the plot, the tables, the spec, the versions."""
    axes = list(record["axes"])
    parts = [f"<h1>sweep {html.escape(spec.name)}</h1>",
             f"<p>task {spec.task}; {len(record['cells'])} cells finished, {record['cells_missing']} missing</p>"]
    if png is not None and png.exists():
        parts.append(f'<img alt="metrics" src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">')
    if record["summary"]:
        stats = ("median", "p05", "p95")
        parts += [f"<h2>Distributions over {html.escape(spec.over)}</h2>",
                  _table([a for a in axes if a != spec.over] + ["n"] + [f"{m} {s}" for m in spec.record for s in stats],
                         [[g["params"].get(a, "") for a in axes if a != spec.over]
                          + [max(d.get("n", 0) for d in g["metrics"].values())]
                          + [g["metrics"][m].get(s, "") for m in spec.record for s in stats]
                          for g in record["summary"]])]
    parts += ["<h2>Cells</h2>",
              _table(axes + spec.record + ["wall s"],
                     [[r["params"].get(a, "") for a in axes] + [r["metrics"][m] for m in spec.record] + [r["wall_s"]]
                      for r in record["cells"]]),
              "<h2>Invocations</h2>",
              _table(["finished at", "cells kept", "cells run", "failed", "wall s", "Ray CPUs", "cells/hour"],
                     [[i["finished_at"], i["cells_before"], i["cells_run"], i["cells_failed"], i["wall_s"],
                       i["ray_cpus"] or "", i["cells_per_hour"] or ""] for i in record["invocations"]]),
              "<h2>Spec</h2>",
              f"<pre>{html.escape(spec.text or json.dumps({**record['spec'], 'grids': spec.grids}, indent=2))}</pre>",
              "<h2>Versions</h2>", _table(["package", "version"], sorted(record["versions"].items()))]
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>sweep {html.escape(spec.name)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
