"""β sweeps through the command line: a table, the figures, and resumption without retraining."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyrovae.cli import main
from pyrovae.config import ConfigError
from pyrovae.sweep import TABLE_COLUMNS, parse_betas, run_folder

PNG = b"\x89PNG\r\n\x1a\n"


def _sweep(out):
    args = ["sweep", "--dataset", "digits", "--beta", "0.5,1", "--prior", "standard"]
    args += ["--prior", "mixture", "--prior-components", "2", "--epochs", "1", "--hidden", "16"]
    args += ["--latent", "2", "--iw-samples", "5", "--no-progress", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result


def _runs(out):
    return [run_folder(out, p, b) for p in ("standard", "mixture") for b in (0.5, 1.0)]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "rd"
    return out, _sweep(out)


def test_sweep_writes_the_table_and_figures(swept):
    out, result = swept
    rows = json.loads((out / "summary" / "table.json").read_text())
    assert [(r["prior"], r["beta"]) for r in rows] == [
        ("standard", 0.5),
        ("standard", 1.0),
        ("mixture", 0.5),
        ("mixture", 1.0),
    ]
    for r in rows:
        assert set(TABLE_COLUMNS) <= r.keys()
        for key in ("rate", "distortion", "elbo", "iw_log_likelihood"):
            assert math.isfinite(r[key]), (key, r)
        assert r["elbo"] == pytest.approx(-(r["rate"] + r["distortion"]), rel=1e-6)
        assert r["rate"] > 0
        config = json.loads((Path(r["run"]) / "config.json").read_text())
        assert (config["config"]["beta"], config["config"]["prior"]) == (r["beta"], r["prior"])
    table = (out / "summary" / "table.md").read_text()
    assert table.startswith("| prior | β | R | D | ELBO |") and table.count("\n") == 6
    assert "| mixture | 0.5 |" in result.output
    names = ["rate_distortion", "reconstructions-standard", "samples-standard"]
    names += ["reconstructions-mixture", "samples-mixture"]
    for name in names:
        assert (out / "summary" / f"{name}.png").read_bytes()[:8] == PNG, name


def test_rerun_skips_finished_runs_and_completes_only_the_missing_one(swept):
    out, _ = swept
    runs = _runs(out)
    checkpoints = {r: (r / "checkpoint.pt").stat().st_mtime_ns for r in runs}
    summaries = {r: (r / "summary.json").stat().st_mtime_ns for r in runs}
    again = _sweep(out)
    assert again.output.count(": finished (") == 4
    assert {r: (r / "checkpoint.pt").stat().st_mtime_ns for r in runs} == checkpoints
    assert {r: (r / "summary.json").stat().st_mtime_ns for r in runs} == summaries

    (runs[1] / "summary.json").unlink()
    third = _sweep(out)
    assert third.output.count(": finished (") == 3 and third.output.count(": resumed (") == 1
    assert (runs[1] / "summary.json").exists()
    # resumed from its last checkpoint (already at the final epoch): nothing retrained
    assert {r: (r / "checkpoint.pt").stat().st_mtime_ns for r in runs} == checkpoints
    for r in runs[:1] + runs[2:]:
        assert (r / "summary.json").stat().st_mtime_ns == summaries[r]


def test_a_partial_run_is_resumed_from_its_checkpoint(tmp_path, digits_data):
    from pyrovae.run import RunError, RunFolder
    from pyrovae.sweep import sweep

    base = dict(dataset="digits", hidden=[16], latent_dim=2, iw_samples=0, epochs=1)
    sweep(base, [0.5], ["standard"], tmp_path, dataset=digits_data, figures=False)
    run = run_folder(tmp_path, "standard", 0.5)
    result = sweep({**base, "epochs": 2}, [0.5], ["standard"], tmp_path, dataset=digits_data)
    assert result.status == {str(run): "resumed"}
    assert [r["epoch"] for r in RunFolder(run).read_metrics()] == [1, 2]
    with pytest.raises(RunError, match="different latent_dim"):
        sweep({**base, "latent_dim": 3}, [0.5], ["standard"], tmp_path, dataset=digits_data)


@pytest.fixture(scope="module")
def digits_data():
    from pyrovae.data import load_dataset

    return load_dataset("digits")


def test_parse_betas():
    assert parse_betas("0.1:1.1:0.1") == [round(0.1 * i, 10) for i in range(1, 12)]
    assert parse_betas("0, 0.5,1,0.5") == [0.0, 0.5, 1.0]
    assert parse_betas("2,0.1:0.3:0.1") == [2.0, 0.1, 0.2, 0.3]
    for bad in ("", "a", "1:0:0.1", "0:1", "-1", "0:1:0"):
        with pytest.raises(ConfigError):
            parse_betas(bad)


def test_bad_sweep_options_give_one_line_errors(tmp_path):
    result = CliRunner().invoke(
        main, ["sweep", "--dataset", "digits", "--beta", "x", "--out", str(tmp_path / "a")]
    )
    assert result.exit_code == 1 and "cannot read β 'x'" in result.output
    result = CliRunner().invoke(
        main,
        ["sweep", "--dataset", "digits", "--objective", "iwae", "--beta", "0.5,1"]
        + ["--out", str(tmp_path / "b")],
    )
    assert result.exit_code == 1 and "objective 'iwae' needs beta 1" in result.output
    assert "Traceback" not in result.output
