"""Progress of long commands: a bar on a terminal, one line per epoch (or phase) off it,
nothing with ``--quiet``; ``evaluate``'s table and ``--json``; the device and thread options."""

from __future__ import annotations

import io
import json
import re

import pytest
from click.testing import CliRunner

from pyrovae.cli import main
from pyrovae.progress import Reporter, Task, epoch_line

SMALL = ["--dataset", "digits", "--hidden", "16", "--latent", "2", "--iw-samples", "0"]
SMALL += ["--threads", "1"]


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _screen(text: str) -> list[str]:
    """The lines a terminal shows after ``text``: each line as its last carriage return left
    it (trailing padding dropped)."""
    return [line.split("\r")[-1].rstrip() for line in text.split("\n")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A three-epoch run, trained off a terminal (the runner's captured streams)."""
    out = tmp_path_factory.mktemp("progress") / "run"
    result = _invoke("train", *SMALL, "--epochs", 3, "--out", out)
    assert result.exit_code == 0, result.output
    return out, result


def test_off_a_terminal_training_writes_exactly_one_line_per_epoch(trained):
    out, result = trained
    rows = _rows(out)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("epoch")]
    assert len(lines) == len(rows) == 3
    assert "\r" not in result.stderr  # no bar is drawn off a terminal
    for line, row in zip(lines, rows):
        assert line.startswith(f"epoch {row['epoch']}/3  loss")
        # the numbers of the epoch's metrics row, as written to metrics.jsonl
        numbers = [float(v) for v in re.findall(r"-?\d+\.\d+", line)]
        expected = [-row["train_elbo"], row["test_elbo"], row["test_rate"]]
        expected += [row["test_distortion"]]
        assert numbers[:4] == pytest.approx(expected, abs=0.006)
        assert line.endswith(" s/epoch")
        assert line == epoch_line(row, 3)
    # progress goes to standard error; standard output keeps the results
    assert "epoch" not in result.stdout and "test_elbo" in result.stdout


def test_quiet_prints_no_progress(tmp_path):
    for flag in ("--quiet", "--no-progress"):  # --no-progress: the old spelling
        out = tmp_path / flag.strip("-")
        result = _invoke("train", *SMALL, "--epochs", 2, flag, "--out", out)
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        assert f"run written to {out}" in result.stdout and "test_elbo" in result.stdout
        assert len(_rows(out)) == 2


def test_on_a_terminal_each_epoch_is_a_bar_replaced_by_its_line(tmp_path):
    """On a terminal the bar is redrawn in place (carriage returns) and what stays on the
    screen is the same line per epoch as off a terminal."""
    from pyrovae.train import train

    screen = Terminal()
    config = dict(dataset="digits", hidden=[16], latent_dim=2, epochs=2, iw_samples=0)
    result = train(config, progress=Reporter("auto", file=screen), plots=False)
    text = screen.getvalue()
    assert "\r" in text and "[" in text and "%" in text
    shown = [line for line in _screen(text) if line]
    assert shown == [epoch_line(row, 2) for row in result.metrics]


def test_a_sweep_labels_each_epoch_with_its_run(tmp_path):
    from pyrovae.sweep import sweep

    log = io.StringIO()
    base = dict(dataset="digits", hidden=[16], latent_dim=2, iw_samples=0, epochs=2)
    sweep(base, [0.5, 1], ["standard"], tmp_path, progress=Reporter("lines", log), figures=False)
    lines = log.getvalue().splitlines()
    assert [ln.split("  loss")[0] for ln in lines] == [
        "[1/2] standard β=0.5  epoch 1/2",
        "[1/2] standard β=0.5  epoch 2/2",
        "[2/2] standard β=1  epoch 1/2",
        "[2/2] standard β=1  epoch 2/2",
    ]
    assert all("(β 0.5)" in ln for ln in lines[:2])  # the loss is D + βR there


def _table(text: str) -> dict[str, float]:
    rows = [ln.split() for ln in text.splitlines() if ln.startswith("  ")]
    return {key: float(value) for key, value in rows}


def test_evaluate_prints_the_table_and_json_with_the_same_numbers(trained):
    out, _ = trained
    shown = _invoke("evaluate", out, "--samples", 20, "--threads", 1)
    assert shown.exit_code == 0, shown.output
    table = _table(shown.stdout)
    keys = ["test_elbo", "test_rate", "test_distortion", "test_iw_log_likelihood"]
    keys += ["test_iw_log_likelihood_se", "test_mse"]
    assert list(table) == keys
    # aligned: every number ends in the same column
    widths = {len(ln) for ln in shown.stdout.splitlines() if ln.startswith("  ")}
    assert len(widths) == 1
    # off a terminal: one line per phase on standard error
    phases = shown.stderr.splitlines()
    assert [p.split("  ")[0] for p in phases] == [
        "ELBO, rate and distortion",
        "IW log-likelihood",
        "reconstruction MSE",
    ]
    machine = _invoke("evaluate", out, "--samples", 20, "--threads", 1, "--json", "--quiet")
    assert machine.exit_code == 0, machine.output
    assert machine.stderr == ""
    numbers = json.loads(machine.stdout)
    assert numbers == json.loads((out / "evaluation-test.json").read_text())
    for key, value in table.items():
        assert numbers[key.removeprefix("test_")] == pytest.approx(value, abs=5e-5)


def test_diagnose_reports_its_phases(trained):
    out, _ = trained
    args = ["diagnose", out, "--limit", 20, "--psis-samples", 50, "--threads", 1]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0].startswith("PSIS k̂ of the guide  20 points x 50 draws")
    quiet = _invoke(*args, "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.output


def test_every_computing_command_lists_its_devices_and_takes_threads(trained):
    out, _ = trained
    for command in ("train", "sweep", "evaluate", "sample", "manifold", "diagnose"):
        text = _invoke(command, "--help").output
        assert "--threads" in text and "--device [auto|cpu|cuda|cuda:N]" in text, command
    for command in ("train", "sweep", "evaluate", "diagnose"):
        assert "--quiet" in _invoke(command, "--help").output, command
    bad = _invoke("train", *SMALL, "--device", "gpu", "--out", out.parent / "gpu")
    assert bad.exit_code == 2 and "'gpu' is not auto, cpu, cuda or cuda:N" in bad.output
    # cuda:1 is a valid name: refused by the machine (no CUDA here), not by the option
    import torch

    if not torch.cuda.is_available():
        named = _invoke("train", *SMALL, "--device", "cuda:1", "--out", out.parent / "c1")
        assert named.exit_code == 1 and "no CUDA device" in named.output


# ------------------------------------------------------------------- the reporter itself


def test_reporter_modes():
    assert Reporter("auto", file=Terminal()).mode == "bar"
    assert Reporter("auto", file=io.StringIO()).mode == "lines"
    assert Reporter(False).mode == "quiet"
    with pytest.raises(ValueError, match="progress mode"):
        Reporter("loud")
    for mode, expected in (("quiet", ""), ("lines", "work  done\n")):
        stream = io.StringIO()
        with Reporter(mode, file=stream).task("work", total=4) as task:
            for _ in range(4):
                task.advance(1, "text")
            task.done("done")
        assert stream.getvalue() == expected


def test_a_bar_fits_the_width_and_an_interrupted_one_stays_on_screen():
    stream = Terminal()
    reporter = Reporter("bar", file=stream)
    task = Task(reporter, "epoch 1/10", total=200)
    task.count = 50
    task.text = "loss 123.45 | ELBO -120.00 R 20.00 D 100.00 1.23 s/epoch"
    for width in (40, 80, 200):
        line = task.render(width)
        assert len(line) <= width and line.startswith("epoch 1/10")
    assert "25%" in task.render(80) and "[" in task.render(120)
    with pytest.raises(KeyboardInterrupt), reporter.task("epoch 2/10", total=10) as task:
        task.advance(3)
        raise KeyboardInterrupt
    assert stream.getvalue().endswith("\n")  # the next message starts on its own line
    assert _screen(stream.getvalue())[-2].startswith("epoch 2/10 [")


def test_heartbeat_lines_off_a_terminal(monkeypatch):
    """A long task off a terminal writes a line at each tenth of its work reached at least
    HEARTBEAT seconds after the last: with HEARTBEAT = 0, one per tenth, then its summary."""
    from pyrovae import progress

    monkeypatch.setattr(progress, "HEARTBEAT", 0.0)
    stream = io.StringIO()
    with Reporter("lines", file=stream).task("IW", total=100, heartbeat=True) as task:
        for _ in range(100):
            task.advance(1)
        task.done("finished")
    lines = stream.getvalue().splitlines()
    assert [ln.split(" (")[0] for ln in lines[:-1]] == [f"IW: {10 * i}/100" for i in range(1, 10)]
    assert lines[-1] == "IW  finished"
