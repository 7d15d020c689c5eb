"""The replication studies of ``examples/studies/`` (latent sweep, M × L, depth, activations,
manifolds) run end to end in their ``--quick`` modes, on the real data, in this process.

Each study's ``main(argv)`` is imported from its file and called with ``--out``, ``--figures``
and ``--runs-dir`` inside ``tmp_path``; every check is on the JSON and PNGs it wrote.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

STUDIES = Path(__file__).resolve().parents[1] / "examples" / "studies"


@pytest.fixture
def run_study(tmp_path, data_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(STUDIES))  # the studies import their helpers as _common

    def run(name: str) -> dict:
        spec = importlib.util.spec_from_file_location(f"_study_{name}", STUDIES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out = tmp_path / f"{name}.json"
        argv = ["--quick", "--out", str(out), "--figures", str(tmp_path / "figures")]
        argv += ["--runs-dir", str(tmp_path / "runs"), "--data-dir", str(data_dir)]
        returned = module.main(argv)
        report = json.loads(out.read_text())
        assert report == json.loads(json.dumps(returned))
        for key in ("study", "command", "quick", "budget", "wall_seconds", "figures", "seed"):
            assert key in report, key
        assert report["study"] == name and report["quick"] is True
        assert report["command"].startswith(f"python examples/studies/{name}.py --quick")
        assert _all_finite(report)
        for figure in report["figures"]:
            _png(tmp_path / "figures" / figure)
        assert (tmp_path / "runs" / name).is_dir()
        return report

    return run


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


def _all_finite(obj) -> bool:
    return all(math.isfinite(v) for v in _numbers(obj))


def _png(path: Path) -> None:
    assert path.exists(), path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size < 300_000


def _check_curve(curve: list[dict], epochs: int, n_train: int) -> None:
    assert [p["epoch"] for p in curve] == list(range(1, epochs + 1))
    assert [p["samples_seen"] for p in curve] == [e * n_train for e in range(1, epochs + 1)]
    for p in curve:
        assert {"train_elbo", "test_elbo", "step", "seconds"} <= set(p)


def test_latent_sweep(run_study):
    report = run_study("latent_sweep")
    assert report["figures"] == ["latent_sweep.png"]
    runs = report["runs"]
    assert [r["latent_dim"] for r in runs["mnist"]] == [3, 5, 10, 20, 200]
    assert [r["latent_dim"] for r in runs["frey"]] == [2, 5, 10, 20]
    for key in ("mnist", "frey"):
        budget = report["budget"][key]
        for r in runs[key]:
            _check_curve(r["curve"], budget["epochs"], budget["num_train"])
            assert r["config"]["optimizer"] == "adagrad" and r["config"]["activation"] == "tanh"
            assert r["config"]["batch_size"] == 100 and r["config"]["particles"] == 1
        hidden = {r["config"]["hidden"][0] for r in runs[key]}
        assert hidden == {500 if key == "mnist" else 200}
        assert len(report["table"][key]) == len(runs[key])
    # binary MNIST: ELBO < 0
    assert all(r["final_test_elbo"] < 0 for r in runs["mnist"])


def test_batch_samples(run_study):
    report = run_study("batch_samples")
    assert report["figures"] == ["batch_samples_train.png", "batch_samples_test.png"]
    rows, cols = len(report["batch_sizes"]), len(report["particles"])
    for key in ("train_elbo", "test_elbo"):
        assert len(report[key]) == rows and all(len(r) == cols for r in report[key])
    assert len(report["cells"]) == rows * cols
    epochs = report["budget"]["epochs_per_cell"]
    for cell in report["cells"]:
        assert len(cell["curve"]) == epochs  # equal epochs in every cell
        n = report["budget"]["num_train"]
        assert cell["updates"] == epochs * math.ceil(n / cell["batch_size"])
    assert set(report["best"]) == {"train", "test"}


def test_encoder_depth(run_study):
    report = run_study("encoder_depth")
    rows = report["table"]
    assert [(r["variant"], r["depth"]) for r in rows] == [
        ("both", 1),
        ("both", 2),
        ("both", 3),
        ("both", 4),
        ("encoder", 2),
        ("encoder", 3),
        ("encoder", 4),
    ]
    by = {(r["variant"], r["depth"]): r for r in rows}
    # deeper nets have more parameters; encoder-only variants leave the decoder as it was
    assert by[("both", 4)]["parameters"]["model"] > by[("both", 1)]["parameters"]["model"]
    assert by[("encoder", 4)]["parameters"]["model"] == by[("both", 1)]["parameters"]["model"]
    assert by[("encoder", 4)]["parameters"]["guide"] == by[("both", 4)]["parameters"]["guide"]
    for r in report["runs"]:
        _check_curve(r["curve"], report["budget"]["epochs"], report["budget"]["num_train"])


def test_activations(run_study):
    report = run_study("activations")
    rows = report["table"]
    assert [r["activation"] for r in rows] == ["tanh", "sigmoid", "relu", "softplus"]
    for r in rows:
        assert r["median_seconds_per_epoch"] > 0 and r["final_test_elbo"] < 0
    assert rows[0]["seconds_per_epoch_relative_to_tanh"] == 1.0


def test_manifolds(run_study):
    report = run_study("manifolds")
    assert report["figures"] == [
        "manifolds_mnist.png",
        "manifolds_frey.png",
        "manifolds_latents.png",
    ]
    for key in ("mnist", "frey"):
        run = report["runs"][key]
        assert {"final_test_elbo", "test_iw_log_likelihood", "test_rate"} <= set(run)
        # the library's own manifold figure stays in the run folder
        assert (Path(run["run_plots"]) / "manifold.png").exists()
