"""A run's life outside the training loop: signals in every phase, filesystem errors,
stale statuses and leftovers, and requests too large to start.

Phases are made observable, never guessed: ``status.json`` names the phase a run is
in, and ``PYROVAE_PAUSE_AT=<phase>`` holds a run at the start of one (until a signal).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyrovae import lifecycle
from pyrovae.cli import main
from pyrovae.config import ConfigError
from pyrovae.resources import check_pass_fits
from pyrovae.run import RunError, RunFolder
from pyrovae.train import train

RUN = ["--dataset", "digits", "--hidden", "32", "--latent", "2", "--epochs", "2"]
RUN += ["--iw-samples", "20", "--no-progress", "--seed", "5"]
TIMES = {"seconds", "eval_seconds", "train_seconds", "versions"}


def _cli(*args, env=None, wait=True):
    cmd = [sys.executable, "-m", "pyrovae.cli", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    if not wait:
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _wait_for_phase(run: RunFolder, phase: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if run.read_status().get("phase") == phase:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"the run never reached phase {phase!r}: {run.read_status()}")


def _numbers(out: Path) -> tuple[list[dict], dict]:
    run = RunFolder(out)
    rows = [{k: v for k, v in r.items() if k not in TIMES} for r in run.read_metrics()]
    summary = {k: v for k, v in run.read_summary().items() if k not in TIMES}
    return rows, summary


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[list[dict], dict]:
    out = tmp_path_factory.mktemp("ref") / "run"
    done = _cli("train", *RUN, "--out", out)
    assert done.returncode == 0, done.stderr
    return _numbers(out)


@pytest.mark.parametrize(
    ("phase", "sig"),
    [
        ("evaluating the test split", signal.SIGINT),
        ("writing the plots", signal.SIGTERM),
        ("recording completion", signal.SIGINT),
    ],
)
def test_a_signal_after_training_leaves_an_interrupted_run_that_resume_completes(
    reference, tmp_path, phase, sig
):
    out = tmp_path / "run"
    proc = _cli("train", *RUN, "--out", out, env={lifecycle.PAUSE_VARIABLE: phase}, wait=False)
    _wait_for_phase(RunFolder(out), phase)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    errors = [ln for ln in err.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and f"interrupted while {phase}" in errors[0], err
    status = RunFolder(out).read_status()
    assert status["state"] == "interrupted" and "--resume" in status["message"]
    assert not list(out.rglob(".*.tmp"))
    done = _cli("train", "--out", out, "--resume", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert RunFolder(out).read_status()["state"] == "complete"
    assert _numbers(out) == reference


def test_a_run_whose_process_vanished_reads_as_interrupted_and_its_leftovers_go(tmp_path):
    out = tmp_path / "run"
    train({"dataset": "digits", "hidden": [16], "latent_dim": 2, "epochs": 1}, out, plots=False)
    run = RunFolder(out)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    (out / "status.json").write_text(json.dumps({"state": "running", "pid": int(dead)}))
    status = run.read_status()
    assert status["state"] == "interrupted" and "ended without recording why" in status["message"]
    leftovers = [out / ".checkpoint.pt.x1y2.tmp", out / "plots" / ".curves.png.a.tmp"]
    for path in leftovers:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half a file")
    train({"epochs": 2}, out, resume=True, plots=False)
    assert not any(p.exists() for p in leftovers)
    assert run.read_status()["state"] == "complete"


def _fail_on(monkeypatch, name: str, code: int) -> None:
    """Make the atomic write of the file called ``name`` fail with ``code`` half way."""
    import pyrovae.run as run_module

    original = run_module.atomic_write

    def failing(path, write):
        if Path(path).name == name:

            def half(f):
                f.write(b"half")
                raise OSError(code, os.strerror(code), str(path))

            return original(path, half)
        return original(path, write)

    monkeypatch.setattr(run_module, "atomic_write", failing)


def test_a_full_disk_fails_the_run_in_one_line_and_keeps_the_checkpoint(monkeypatch, tmp_path):
    out = tmp_path / "run"
    _fail_on(monkeypatch, "summary.json", errno.ENOSPC)
    with pytest.raises(RunError) as info:
        train({"dataset": "digits", "hidden": [16], "latent_dim": 2, "epochs": 1}, out)
    message = str(info.value)
    assert "No space left on device" in message and "free some space" in message
    assert "\n" not in message
    status = RunFolder(out).read_status()
    assert status["state"] == "failed" and "No space left" in status["message"]
    assert not list(out.rglob(".*.tmp")) and not (out / "summary.json").exists()
    assert RunFolder(out).load_checkpoint()["epoch"] == 1
    monkeypatch.undo()
    train({"epochs": 1}, out, resume=True, plots=False)  # the next try completes
    assert RunFolder(out).read_status()["state"] == "complete"


def test_a_filesystem_error_through_the_cli_is_one_line(monkeypatch, tmp_path):
    _fail_on(monkeypatch, "checkpoint.pt", errno.EROFS)
    result = CliRunner().invoke(main, ["train", *RUN, "--out", str(tmp_path / "ro")])
    assert result.exit_code == 1, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "Read-only file system" in errors[0], result.output
    assert "writable filesystem" in errors[0]
    assert RunFolder(tmp_path / "ro").read_status()["state"] == "failed"


def test_the_sweep_decides_from_the_status_not_from_the_files(tmp_path):
    from pyrovae.sweep import sweep

    config = {"dataset": "digits", "hidden": [16], "latent_dim": 2, "epochs": 1, "iw_samples": 0}
    first = sweep(config, [1.0], out=tmp_path, figures=False)
    (folder,) = first.status
    assert first.status[folder] == "trained"
    status = RunFolder(folder).read_status()
    RunFolder(folder).write_status("interrupted", **{k: status[k] for k in ("epoch", "step")})
    assert (Path(folder) / "summary.json").exists()
    again = sweep(config, [1.0], out=tmp_path, figures=False)
    assert again.status[folder] == "resumed"
    assert RunFolder(folder).read_status()["state"] == "complete"
    assert sweep(config, [1.0], out=tmp_path, figures=False).status[folder] == "finished"


def test_requests_that_cannot_fit_are_refused_before_allocating(tmp_path):
    out = tmp_path / "huge"
    with pytest.raises(ConfigError, match=r"parameters and needs about .* reduce --latent-dim"):
        train({"dataset": "digits", "latent_dim": 10**9, "epochs": 1}, out)
    assert not out.exists()
    with pytest.raises(ConfigError, match="lower --chunk-size"):
        check_pass_fits(10**6, [784, 400], "a pass", "lower --chunk-size", available=10**9)
    check_pass_fits(10**3, [784, 400], "a pass", "lower --chunk-size", available=10**9)


@pytest.mark.parametrize(
    "moment",
    [
        "epoch 1",
        "epoch 2",
        "evaluating the test split",
        "writing the plots",
        "recording completion",
    ],
)
def test_a_kill_at_any_phase_loses_nothing(reference, tmp_path, moment):
    """SIGKILL (no handler runs) at five moments spread over the whole run."""
    out = tmp_path / "run"
    run = RunFolder(out)
    env = {} if moment.startswith("epoch") else {lifecycle.PAUSE_VARIABLE: moment}
    proc = _cli("train", *RUN, "--out", out, env=env, wait=False)
    if moment.startswith("epoch"):
        epoch = int(moment.split()[1])
        end = time.monotonic() + 120
        while len(run.read_metrics()) < epoch and time.monotonic() < end:
            time.sleep(0.01)
    else:
        _wait_for_phase(run, moment)
    proc.kill()
    proc.wait(timeout=30)
    if moment != "epoch 2":  # (the run may have finished by then: nothing to resume)
        assert run.read_status()["state"] in ("interrupted", "complete")
    done = _cli("train", "--out", out, "--resume", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert run.read_status()["state"] == "complete"
    assert not list(out.rglob(".*.tmp"))
    assert _numbers(out) == reference


def test_a_kill_between_the_checkpoint_and_the_metrics_loses_no_row(reference, tmp_path):
    """The checkpoint is written first and holds the rows: a resume restores the metrics
    file from it (found by benchmarks/kill_trials.py: a kill right after the last
    epoch's checkpoint left metrics.jsonl one row short)."""
    out = tmp_path / "run"
    done = _cli("train", *RUN, "--out", out)
    assert done.returncode == 0, done.stderr
    metrics = out / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines(keepends=True)[0])  # as if killed there
    (out / "summary.json").unlink()
    RunFolder(out).write_status("running", epoch=2, step=26, phase="training")
    done = _cli("train", "--out", out, "--resume", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert _numbers(out) == reference


def test_a_run_killed_before_its_first_checkpoint_restarts_with_its_own_settings(
    reference, tmp_path
):
    """Found by benchmarks/kill_trials.py: a kill 7 ms into training left config.json and
    a running status but no checkpoint, and --resume then trained the defaults instead."""
    out = tmp_path / "run"
    done = _cli("train", *RUN, "--out", out)
    assert done.returncode == 0, done.stderr
    for name in ("checkpoint.pt", "metrics.jsonl", "summary.json"):
        (out / name).unlink()
    RunFolder(out).write_status("running", epoch=0, step=0, phase="training")
    done = _cli("train", "--out", out, "--resume", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert _numbers(out) == reference
