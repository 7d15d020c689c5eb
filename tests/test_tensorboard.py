"""TensorBoard logging (``--tensorboard``): event files read back with TensorBoard's own reader."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from pyrovae.cli import main

pytest.importorskip("tensorboard")  # the optional extra: pip install pyrovae[tensorboard]

TINY = ["train", "--dataset", "digits", "--hidden", "16", "--latent", "2", "--epochs", "2"]
TINY += ["--iw-samples", "0", "--threads", "1", "--quiet"]
SCALARS = {
    "train/elbo": "train_elbo",
    "test/elbo": "test_elbo",
    "test/rate": "test_rate",
    "test/distortion": "test_distortion",
    "optimisation/lr": "lr",
    "optimisation/beta": "beta",
}


def _train(*args):
    result = CliRunner().invoke(main, [*TINY, *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "run"
    _train("--tensorboard", "--out", out)
    return out


def test_scalars_match_the_metrics_file_epoch_by_epoch(logged):
    rows = _rows(logged)
    events = _events(logged / "tensorboard")
    assert set(SCALARS) <= set(events.Tags()["scalars"])
    for tag, key in SCALARS.items():
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [r["epoch"] for r in rows] == [1, 2], tag
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in rows], rel=1e-6)


def test_reconstruction_and_sample_grids_are_logged_every_epoch(logged):
    from PIL import Image

    events = _events(logged / "tensorboard")
    assert {"reconstructions", "samples"} <= set(events.Tags()["images"])
    for tag, rows in (("reconstructions", 2), ("samples", 2)):
        images = events.Images(tag)
        assert [i.step for i in images] == [1, 2]
        # 8 images of 8 x 8 per row, one pixel of padding around each
        assert (images[-1].width, images[-1].height) == (8 * 9 + 1, rows * 9 + 1)
        picture = Image.open(io.BytesIO(images[-1].encoded_image_string))
        assert picture.size == (73, rows * 9 + 1)
        assert len(np.unique(np.asarray(picture))) > 2  # grey levels, not a blank grid


def test_logging_leaves_the_run_unchanged(logged, tmp_path):
    """The grids are drawn under a forked RNG: the same numbers as without TensorBoard."""
    plain = tmp_path / "plain"
    _train("--out", plain)
    assert not (plain / "tensorboard").exists()
    drop = ("seconds", "eval_seconds")
    strip = [{k: v for k, v in r.items() if k not in drop} for r in _rows(plain)]
    assert strip == [{k: v for k, v in r.items() if k not in drop} for r in _rows(logged)]


def test_a_resumed_run_continues_the_log_and_an_overwritten_one_replaces_it(tmp_path):
    out = tmp_path / "run"
    _train("--tensorboard", "--out", out, "--epochs", "1")
    _train("--out", out, "--epochs", "3", "--resume")  # the run's own --tensorboard
    _check_test_elbo(out, epochs=3)
    _train("--tensorboard", "--out", out, "--overwrite", "--seed", "1")  # two epochs
    _check_test_elbo(out, epochs=2)


def _check_test_elbo(out, epochs):
    """The log's test ELBO is the metrics file's, at steps 1 to ``epochs`` exactly once."""
    scalars = _events(out / "tensorboard").Scalars("test/elbo")
    assert [s.step for s in scalars] == list(range(1, epochs + 1))
    assert [s.value for s in scalars] == pytest.approx([r["test_elbo"] for r in _rows(out)])


def test_without_tensorboard_installed_the_error_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    result = CliRunner().invoke(main, [*TINY, "--tensorboard", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    errors = [ln for ln in result.output.splitlines() if ln.strip()]
    assert errors == [
        "Error: --tensorboard needs the tensorboard package: pip install pyrovae[tensorboard]"
    ]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
