"""The redesign changed no number: runs give what pyrovae 0.1.0 gave, and its folders still work.

``fixtures/identity-0.1.0.json`` holds the metrics and summaries that pyrovae
0.1.0 (commit 0f88656) printed for seven configurations covering every kind
of part (written by ``fixtures/make_identity.py``). ``fixtures/run-0.1.0`` is
a run folder 0.1.0 wrote (``pyrovae train --dataset digits --latent 2 --hidden
16 --epochs 2 --iw-samples 10 --threads 1``), with the ``evaluation-test.json``
its ``pyrovae evaluate --samples 10`` wrote; ``run-0.1.0-resumed-to-3-epochs.jsonl``
is the metrics of the same command with ``--epochs 3``, uninterrupted.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyrovae.cli import main
from pyrovae.provenance import cpu_model
from pyrovae.run import RunFolder, migrate_config
from pyrovae.train import train

FIXTURES = Path(__file__).resolve().parent / "fixtures"
IDENTITY = json.loads((FIXTURES / "identity-0.1.0.json").read_text())
TIMES = {"seconds", "eval_seconds", "train_seconds", "device", "versions", "parameters"}


def _strip(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMES}


def _close(new, old) -> bool:
    if isinstance(old, dict):
        return (
            isinstance(new, dict)
            and new.keys() == old.keys()
            and all(_close(new[k], old[k]) for k in old)
        )
    if isinstance(old, list):
        return isinstance(new, list) and len(new) == len(old) and all(map(_close, new, old))
    if isinstance(old, float):
        return isinstance(new, (int, float)) and math.isclose(new, old, rel_tol=1e-4, abs_tol=1e-6)
    return new == old


def _assert_same(new, old, what: str) -> None:
    """Bit for bit on the CPU model the fixture was written on (one torch thread);
    elsewhere other SIMD kernels round differently, so within 1e-4 relative."""
    if cpu_model() == IDENTITY["machine"]["cpu"]:
        assert new == old, what
    else:
        assert _close(new, old), what


@pytest.mark.parametrize("name", list(IDENTITY["runs"]))
def test_a_run_gives_the_numbers_of_0_1_0(name, data_dir, tmp_path):
    expected = IDENTITY["runs"][name]
    config = migrate_config(expected["config"], "0.1.0")  # 0.1.0's decoder is now weights
    result = train({**config, "data_dir": str(data_dir)}, tmp_path / "run")
    _assert_same([_strip(r) for r in result.metrics], expected["metrics"], f"{name} metrics")
    _assert_same(_strip(result.summary), expected["summary"], f"{name} summary")


@pytest.fixture
def old_run(tmp_path) -> Path:
    run = tmp_path / "run-0.1.0"
    shutil.copytree(FIXTURES / "run-0.1.0", run)
    return run


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_a_0_1_0_run_evaluates_to_the_numbers_0_1_0_printed(old_run):
    before = json.loads((old_run / "evaluation-test.json").read_text())
    assert json.loads((old_run / "config.json").read_text())["pyrovae_version"] == "0.1.0"
    _invoke("evaluate", old_run, "--samples", "10")
    after = json.loads((old_run / "evaluation-test.json").read_text())
    _assert_same(after, before, "evaluation")


def test_a_0_1_0_run_samples_and_resumes_as_the_uninterrupted_run(old_run, tmp_path):
    _invoke("sample", old_run, "--num", "4", "--out", tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    _invoke("train", "--out", old_run, "--epochs", "3", "--resume", "--no-progress")
    lines = (FIXTURES / "run-0.1.0-resumed-to-3-epochs.jsonl").read_text().splitlines()
    uninterrupted = [_strip(json.loads(line)) for line in lines]
    resumed = [_strip(r) for r in RunFolder(old_run).read_metrics()]
    _assert_same(resumed, uninterrupted, "resumed metrics")
    assert RunFolder(old_run).read_config()["pyrovae_version"] != "0.1.0"
