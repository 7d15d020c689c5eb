"""The headline NLL benchmark: its quick mode, and that the test split never steers training."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "nll_binarized_mnist.py"


def _module():
    spec = importlib.util.spec_from_file_location("nll_binarized_mnist", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_mode_writes_finite_numbers(data_dir, tmp_path):
    out = tmp_path / "nll.json"
    rows = _module().main(
        [
            "--quick",
            "--data-dir",
            str(data_dir),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--out",
            str(out),
            "--threads",
            "1",
        ]
    )
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(rows))
    row = saved[0]
    for key in ("test_nll", "test_elbo", "test_rate", "test_distortion", "train_wall_seconds"):
        assert math.isfinite(row[key]), key
    # the importance-weighted bound is tighter than the ELBO: NLL <= -ELBO (up to MC error)
    assert row["test_nll"] <= -row["test_elbo"] + 3 * row["test_nll_standard_error"]
    assert row["selected_epoch"] in [h["epoch"] for h in row["valid_history"]]
    assert row["command"].endswith("--threads 1")  # the row says how to reproduce it
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("select_iw", [0, 10], ids=["by-elbo", "by-iw"])
def test_the_test_split_never_steers_training_or_selection(mnist_binarized, tmp_path, select_iw):
    bench = _module()
    base = dataclasses.replace(
        mnist_binarized, train=mnist_binarized.train[:500], valid=mnist_binarized.valid[:200]
    )
    histories = []
    for i, test in enumerate((base.test[:100], base.test[5000:5100])):
        data = dataclasses.replace(base, test=test)
        selection = bench.select(
            "vae-pythae", data, 2, 1, "cpu", tmp_path / f"r{i}", select_iw=select_iw
        )
        histories.append(selection["history"])
        key = "valid_iw" if select_iw else "valid_elbo"
        assert selection["selected_by"] == key
        assert selection["best"][key] == max(h[key] for h in selection["history"])
    assert histories[0] == histories[1]  # different test splits, identical training and choice
