"""The installable package: one top-level name, every module shipped, a light front door."""
import shutil
import subprocess
import sys
import zipfile

from conftest import ROOT

MAPPED = {"lavaloop": "lavaloop", "conversion": "lavaloop/conversion", "processes": "lavaloop/processes",
          "deploy": "lavaloop/deploy", "trainers": "lavaloop/trainers"}


def test_the_wheel_installs_only_lavaloop_and_every_module(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", *MAPPED):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                         if (ROOT / name).is_dir() else {}))
    build = subprocess.run([sys.executable, "-c", "from setuptools.build_meta import build_wheel; "
                            f"print(build_wheel({str(tmp_path / 'dist')!r}))"],
                           cwd=src, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = tmp_path / "dist" / build.stdout.strip().splitlines()[-1]
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"lavaloop", wheel.name.split("-")[0] + "-" +
                                                wheel.name.split("-")[1] + ".dist-info"}
    expected = {f"{MAPPED[folder]}/{p.relative_to(ROOT / folder).as_posix()}"
                for folder in MAPPED for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts}
    assert expected - set(names) == set()          # a new subpackage must be listed in pyproject.toml


def test_dynamics_and_emulator_import_without_lava(tmp_path):
    script = ("import sys, lavaloop, lavaloop.processes.dynamics, lavaloop.deploy.emulator\n"
              "print(sorted({m.split('.')[0] for m in sys.modules} & {'lava', 'torch'}))\n"
              "print(lavaloop.__version__, lavaloop.RunResult.__name__, lavaloop.Artifact.__name__)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "'lava'" not in lines[0]                 # the arithmetic and the emulator need no Lava
    assert lines[1].split()[1:] == ["RunResult", "Artifact"]


def test_public_functions_document_their_parameters():
    import inspect

    import lavaloop

    for name in ("convert", "load_artifact", "run", "dream"):
        doc = inspect.getdoc(getattr(lavaloop, name))
        params = [p for p in inspect.signature(getattr(lavaloop, name)).parameters if p not in ("options", "settings",
                                                                                                 "config")]
        assert "Parameters" in doc and "Returns" in doc, name
        for p in params:
            assert f"{p}:" in doc or f"**{p}" in doc, (name, p)
