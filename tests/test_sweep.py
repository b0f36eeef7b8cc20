"""`lavaloop sweep`: specs, resumable cells on Ray, interrupts that leave nothing behind, and
cells whose numbers are those of the single `lavaloop run` with the same options."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

import lavaloop
from conftest import CARTPOLE, LAVALOOP, ROOT, assert_clean_failure, lavaloop_cli, read_json
from lavaloop.deploy.sweep.spec import SpecError, load_spec, parse_spec
from lavaloop.deploy.sweep.store import SweepStore

NOT_MEASURED = {"wall_s", "steps_per_s", "artifact", "versions"}   # timing and where the artifact was read
GRID = 'timesteps = [4, 8, 16, 32]\nreadout = ["robust", "spike_count"]'


def write_spec(folder, grid: str = GRID, run: str = "episodes = 3\nbackend = \"emulator\"", extra: str = ""):
    """A CartPole spec in `folder` (its cells: `grid`), its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(f'name = "study"\ncheckpoint = "{CARTPOLE}"\nenv = "CartPole-v1"\n{extra}\n'
                    f"[convert]\ncalib_steps = 500\n[run]\n{run}\n[grid]\n{grid}\n")
    return path


def ray_processes() -> list[str]:
    """Ray's own processes (GCS, raylet, agents, workers and what they forked: Lava's)."""
    out = subprocess.run(["pgrep", "-af", "ray::|site-packages/ray/"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def wait_for_no_ray(timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while ray_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    return ray_processes()


def direct(cell, artifacts: dict | None = None) -> dict:
    """The cell computed without the sweep: `lavaloop.convert` (once per conversion, kept in
    `artifacts`) + `lavaloop.run`."""
    artifacts = {} if artifacts is None else artifacts
    if cell.conversion_key not in artifacts:
        artifacts[cell.conversion_key] = lavaloop.convert(cell.source.path, cell.env, **cell.convert)
    return lavaloop.run(artifacts[cell.conversion_key], progress=False, **cell.options).to_dict()


def same_numbers(a: dict, b: dict) -> bool:
    def measured(d):
        return {k: v for k, v in d.items() if k not in NOT_MEASURED}

    return measured(a) == measured(b)


@pytest.mark.parametrize("text, needle", [
    ('checkpoint = "{ckpt}"\nenv = "CartPole-v1"\n[grid]\ntimestep = [4]', "unknown axis 'timestep'"),
    ('checkpoint = "{ckpt}"\nenv = "CartPole-v1"\n[run]\nepisode = 2\n[grid]\ntimesteps = [4]',
     "[run] takes no option episode"),
    ('checkpoint = "{ckpt}"\nenv = "CartPole-v1"', "the grid is empty"),
    ('checkpoint = "{ckpt}"\nenv = "CartPole-v1"\n[grid]\ntimesteps = []', "axis 'timesteps' has no values"),
    ('checkpoint = "missing.pt"\nenv = "CartPole-v1"\n[grid]\ntimesteps = [4]', "checkpoint missing.pt does not exist"),
    ('checkpoint = "{ckpt}"\nenv = "CartPole-v1"\n[grid]\npercentile = [99, 120]',
     "cell percentile=120: percentile must be in (0, 100]"),
    ('checkpoint = "{ckpt}"\nenv = "CartPole-v1"\nepisodes = 3\n[grid]\ntimesteps = [4]',
     "unknown spec entry episodes"),
    ('task = "dream"\n[grid]\nmismatch_sigma = [-0.1]', "mismatch_sigma must be >= 0.0"),
])
def test_a_bad_spec_gets_one_line_and_writes_nothing(tmp_path, text, needle):
    spec = tmp_path / "bad.toml"
    spec.write_text(text.format(ckpt=CARTPOLE))
    proc = lavaloop_cli("sweep", spec, "--out", tmp_path / "out")
    assert_clean_failure(proc, spec, needle)
    assert not (tmp_path / "out").exists()


def test_a_ray_address_that_does_not_answer_gets_one_line(tmp_path):
    spec = write_spec(tmp_path)
    proc = lavaloop_cli("sweep", spec, "--address", "127.0.0.1:9", "--out", tmp_path / "out")
    assert_clean_failure(proc, spec, "no Ray cluster answers at 127.0.0.1:9")
    assert not (tmp_path / "out").exists()


def test_a_changed_spec_is_refused_naming_the_fields(tmp_path):
    SweepStore(tmp_path / "out", load_spec(write_spec(tmp_path))).open()
    changed = load_spec(write_spec(tmp_path, run='episodes = 5\nbackend = "emulator"'))
    with pytest.raises(SpecError, match=r"differs in: fixed\.run\.episodes\)"):
        SweepStore(tmp_path / "out", changed).open()
    regridded = load_spec(write_spec(tmp_path, grid="timesteps = [4, 256]"))
    SweepStore(tmp_path / "out", regridded).open()        # a changed grid is fine: only new cells run


def test_axes_go_where_they_share_artifacts():
    spec = parse_spec({"checkpoint": str(CARTPOLE), "env": "CartPole-v1",
                       "grid": {"percentile": [99.0, 100.0], "timesteps": [8, 16], "convert.readout": ["robust"]}})
    cells = spec.cells()
    assert [c.params for c in cells][:2] == [{"percentile": 99.0, "timesteps": 8, "convert.readout": "robust"},
                                             {"percentile": 99.0, "timesteps": 16, "convert.readout": "robust"}]
    assert cells[0].options == {"timesteps": 8} and cells[0].convert == {"percentile": 99.0, "readout": "robust"}
    assert len({c.conversion_key for c in cells}) == 2        # one artifact per percentile, shared across T


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_an_interrupted_sweep_keeps_its_cells_and_the_rerun_ends_as_an_uninterrupted_run(tmp_path, signum):
    """SIGTERM or SIGINT midway through 8 cells: exit 128 + signum, every finished cell kept, no
    Ray or Lava process left; the rerun runs only the rest, and every cell's numbers equal the
    single convert + run with its options."""
    spec = write_spec(tmp_path)
    out = tmp_path / "study"
    proc = subprocess.Popen([*LAVALOOP, "sweep", str(spec), "--workers", "2", "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(list((out / "cells").glob("*.json"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum and "Traceback" not in err, err
    assert wait_for_no_ray() == []
    assert not list(out.rglob("*.tmp"))
    kept = len(list((out / "cells").glob("*.json")))
    assert 2 <= kept < 8

    rec = lavaloop.sweep(spec, workers=2, progress=False)
    assert rec["invocation"]["cells_before"] == kept and rec["invocation"]["cells_run"] == 8 - kept
    assert len(rec["cells"]) == 8 and rec["cells_missing"] == 0
    assert wait_for_no_ray() == []
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "src=\"http" not in html and (out / "study.png").stat().st_size
    if signum == signal.SIGINT:
        return
    cells, artifacts = {c.key: c for c in load_spec(spec).cells()}, {}    # once: the numbers, and a grown grid
    for row in rec["cells"]:
        stored = read_json(out / "cells" / f"{row['key']}.json")["result"]
        assert same_numbers(stored, direct(cells[row["key"]], artifacts)), row["params"]
        assert row["metrics"]["agreement"] == stored["agreement"]
    grown = {"name": "study", "checkpoint": str(CARTPOLE), "env": "CartPole-v1", "convert": {"calib_steps": 500},
             "run": {"episodes": 3, "backend": "emulator"},
             "grid": {"timesteps": [4, 8, 16, 32, 64], "readout": ["robust", "spike_count"]}}
    rec = lavaloop.sweep(grown, out=out, workers=2, progress=False)    # the same spec as a dict, its grid grown
    assert rec["invocation"]["cells_run"] == 2 and len(rec["cells"]) == 10


def test_one_cell_equals_the_single_lavaloop_run_and_a_failed_cell_is_one_line(tmp_path):
    """The sweep's cell and `lavaloop convert` + `lavaloop run --json` with the same options give
    the same numbers; a cell the kind refuses fails alone, in one line, and is not kept."""
    spec = write_spec(tmp_path, grid='coding = ["rate", "sigma-delta"]', run='episodes = 2\nbackend = "emulator"\n'
                      "timesteps = 8")
    proc = lavaloop_cli("sweep", spec, "--workers", "2", "--no-progress")
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("lavaloop: error: 1 of 2 cells failed") and "coding=sigma-delta" in line, proc.stderr
    assert "timesteps" in line
    rec = read_json(tmp_path / "study" / "results.json")
    assert [c["params"] for c in rec["cells"]] == [{"coding": "rate"}]
    art = tmp_path / "cell.h5"
    assert lavaloop_cli("convert", CARTPOLE, "--env", "CartPole-v1", "--calib-steps", "500", "--coding", "rate",
                        "-o", art).returncode == 0
    assert lavaloop_cli("run", art, "--episodes", "2", "--backend", "emulator", "--timesteps", "8",
                        "--json", tmp_path / "run.json", "--no-progress").returncode == 0
    stored = read_json(tmp_path / "study" / "cells" / f"{rec['cells'][0]['key']}.json")["result"]
    assert same_numbers(stored, read_json(tmp_path / "run.json"))


@pytest.mark.slow
def test_a_two_node_cluster_runs_the_cells_on_both_nodes(tmp_path):
    """A head and a worker node started locally (ray.cluster_utils); `--address` joins them."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        rec = lavaloop.sweep(write_spec(tmp_path), address=cluster.address, progress=False)
        assert len(rec["cells"]) == 8 and len({c["node"] for c in rec["cells"]}) == 2
        assert rec["invocation"]["ray_cpus"] == 2
    finally:
        cluster.shutdown()
    assert wait_for_no_ray() == []


@pytest.mark.slow
def test_sigterm_during_lava_cells_leaves_no_lava_process(tmp_path):
    spec = write_spec(tmp_path, grid="timesteps = [4, 8, 16, 32]", run='episodes = 1\nbackend = "lava"')
    out = tmp_path / "study"
    proc = subprocess.Popen([*LAVALOOP, "sweep", str(spec), "--workers", "2", "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((out / "cells").glob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert wait_for_no_ray() == []
    assert 1 <= len(list((out / "cells").glob("*.json"))) < 4


def test_a_cell_of_the_committed_cartpole_sweep_is_reproduced():
    """results/sweeps/cartpole holds what the current code computes: one of its cells, rerun alone."""
    spec = load_spec(ROOT / "benchmarks" / "cartpole_sweep.toml")
    cell = next(c for c in spec.cells() if c.params == {"percentile": 99.9, "readout": "robust", "timesteps": 8})
    stored = read_json(ROOT / "results" / "sweeps" / "cartpole" / "cells" / f"{cell.key}.json")
    assert same_numbers(stored["result"], direct(cell))


def test_instances_are_summarized_as_distributions_and_metrics_found_by_dotted_path():
    from lavaloop.deploy.sweep.report import lookup, summarize

    rec = {"result": {"curve": {"first_game_mean_ge_-0.5": 450, "final_mean": -0.4}}, "conversion": {"timesteps": 8}}
    assert lookup(rec, "curve.first_game_mean_ge_-0.5") == 450 and lookup(rec, "timesteps") == 8
    assert lookup(rec, "curve.missing") is None
    rows = [{"params": {"mismatch_sigma": s, "mismatch_seed": k}, "metrics": {"r": s * 10 + k}}
            for s in (0.1, 0.2) for k in range(20)]
    groups = summarize(rows, "mismatch_seed", ["r"])
    assert [g["params"] for g in groups] == [{"mismatch_sigma": 0.1}, {"mismatch_sigma": 0.2}]
    d = groups[1]["metrics"]["r"]
    assert d["n"] == 20 and d["median"] == 2 + 9.5 and d["p05"] == pytest.approx(2 + 0.95) and d["max"] == 21


def test_a_training_cell_trains_as_the_trainer_does(tmp_path):
    """A "train" cell (run here without Ray) makes the policy and curve `trainers.recurrent`
    makes with the same options; the GRSN seeds spec's cells are checked before running."""
    import torch

    from lavaloop.conversion.grsn import load_policy
    from lavaloop.deploy.sweep.tasks import train_task
    from lavaloop.trainers import recurrent

    opts = {"env": "CartPole-V", "cell": "grsn", "seed": 3, "eval_every": 100, "total_steps": 200,
            "learning_starts": 100}
    cell = train_task(opts)
    direct = recurrent.train("CartPole-V", "grsn", 3, tmp_path / "p.pt", recurrent.Config(total_steps=200,
                             learning_starts=100), 100, progress=False)
    assert [p[:2] for p in cell["result"]["curve"]] == [p[:2] for p in direct["curve"]]    # (step, eval return)
    (tmp_path / "cell.pt").write_bytes(cell["files"]["policy.pt"])
    ours, theirs = (load_policy(tmp_path / f)[0].state_dict() for f in ("cell.pt", "p.pt"))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert len(load_spec(ROOT / "benchmarks" / "grsn_seeds.toml").cells()) == 18
    with pytest.raises(SpecError, match="unknown cell 'lstm'"):
        parse_spec({"task": "train", "grid": {"cell": ["grsn", "lstm"]}})
