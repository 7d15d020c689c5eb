"""Every results JSON says how it was made: command, commit, machine (issue #23)."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
from results_lint import MACHINE_PATH

from pyrovae.provenance import machine, portable, provenance

ROOT = Path(__file__).resolve().parents[1]


def assert_portable(command: str) -> None:
    """No machine-specific path: nothing the linter flags, no absolute argument."""
    assert not MACHINE_PATH.search(command), command
    assert not [w for w in shlex.split(command) if w.startswith("/") or "=/" in w], command


def assert_provenance(record: dict, starts: str) -> None:
    assert record["command"].startswith(starts), record["command"]
    assert_portable(record["command"])
    assert record["commit"] is None or len(record["commit"]) == 40
    assert record["dirty"] in (None, True, False)
    assert {"processor", "cores", "python", "torch", "pyro", "platform"} <= record["machine"].keys()


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_has_no_machine_paths(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("PYROVAE_DATA", str(data))
    argv = ["--data-dir", str(data / "mnist"), "--out", str(ROOT / "docs" / "x.json")]
    argv += [f"--runs-dir={ROOT / 'runs' / 'a'}", "--data-dir", str(ROOT.parent / "shared")]
    command = provenance(argv, script=ROOT / "examples" / "swap_guides.py")["command"]
    assert command == (
        "python examples/swap_guides.py --data-dir $PYROVAE_DATA/mnist --out docs/x.json "
        "--runs-dir=runs/a --data-dir ../shared"
    )
    assert_portable(command)
    # the variable stays expandable where the argument needs quoting
    assert (
        provenance([f"{data}/a b"], script="x.py")["command"] == 'python x.py "$PYROVAE_DATA/a b"'
    )


def test_programs_and_paths_elsewhere(monkeypatch):
    monkeypatch.delenv("PYROVAE_DATA", raising=False)
    pyrovae = Path(sys.executable).parent / "pyrovae"
    assert provenance(["sweep"], script=pyrovae)["command"] == "pyrovae sweep"
    main = ROOT / "pyrovae" / "__main__.py"
    assert provenance(["train"], script=main)["command"] == "python -m pyrovae train"
    # a path outside the checkout and beside it is what ran: kept, for the linter to flag
    assert portable("--out=/srv/x", root=ROOT) == "--out=/srv/x"
    assert portable(str(ROOT), root=ROOT) == "."


def _git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    identity = ["-c", "user.name=t", "-c", "user.email=t@t.invalid", "-c", "commit.gpgsign=false"]
    command = ["git", "-C", str(repo), *identity, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_commit_and_dirty_come_from_the_scripts_checkout(tmp_path):
    repo = tmp_path / "checkout"
    (repo / "examples").mkdir(parents=True)
    script = repo / "examples" / "run.py"
    script.write_text("")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    record = provenance(["--out", str(repo / "runs" / "x.json")], script=script)
    assert record["command"] == "python examples/run.py --out runs/x.json"
    assert record["commit"] == _git(repo, "rev-parse", "HEAD").strip()
    assert record["dirty"] is False
    script.write_text("print(1)\n")
    assert provenance([], script=script)["dirty"] is True


def test_without_git(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on the path
    record = provenance([], script=ROOT / "examples" / "swap_guides.py")
    assert record["commit"] is None and record["dirty"] is None
    assert record["command"] == "python examples/swap_guides.py"


def test_machine():
    found = machine()
    assert found["processor"]
    assert found["cores"]["logical"] >= (found["cores"]["usable"] or 1) >= 1
    assert found["torch_threads"] == torch.get_num_threads()
    assert (found["torch"], found["pyro"]) == (torch.__version__, pyro.__version__)


def test_speed_benchmark_report(tmp_path):
    report = _load(ROOT / "benchmarks" / "_report.py", "_report")
    out = tmp_path / "speed.json"
    argv = ["--threads", "1", "--out", str(ROOT / "benchmarks" / "results" / "speed.json")]
    report.write_report({"median_seconds": 1.5}, out, argv, ROOT / "benchmarks" / "speed.py")
    saved = json.loads(out.read_text())
    assert saved["median_seconds"] == 1.5
    assert_provenance(saved, "python benchmarks/speed.py --threads 1 --out benchmarks/results/")
    # a command the report holds already is kept, made portable
    report.write_report({"command": f"python b.py --out {ROOT}/runs/x"}, out, [])
    assert json.loads(out.read_text())["command"] == "python b.py --out runs/x"


def test_sweep_table_rows(tmp_path, monkeypatch):
    from pyrovae.sweep import write_table

    monkeypatch.delenv("PYROVAE_DATA", raising=False)
    program = str(Path(sys.executable).parent / "pyrovae")
    argv = ["sweep", "--data-dir", str(ROOT.parent / "shared" / "data"), "--out", "runs/rd"]
    monkeypatch.setattr(sys, "argv", [program, *argv])
    rows = [{"prior": "standard", "beta": b, "rate": 1.0, "distortion": 2.0} for b in (0.5, 1.0)]
    json_path, _ = write_table(rows, tmp_path)
    for row in json.loads(json_path.read_text()):
        assert_provenance(row, "pyrovae sweep --data-dir ../shared/data --out runs/rd")


def test_study_header(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "studies"))
    common = _load(ROOT / "examples" / "studies" / "_common.py", "_common")
    monkeypatch.setenv("PYROVAE_DATA", str(ROOT.parent / "shared" / "data"))
    argv = ["--quick", "--data-dir", str(ROOT.parent / "shared" / "data")]
    argv += ["--out", str(tmp_path / "demo.json"), "--threads", "1"]
    args = common.parse_args("demo", "a study", argv)
    header = common.header(args, "nothing", {})
    assert header["command"].startswith("python examples/studies/demo.py --quick --data-dir ")
    assert "$PYROVAE_DATA" in header["command"]
    assert header["machine"]["torch_threads"] == 1
    assert {"commit", "dirty"} <= header.keys()
