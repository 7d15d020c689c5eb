"""The eight replication studies of ``examples/studies/`` run end to end in their ``--quick``
modes, on the real data, in this process.

Each study's ``main(argv)`` is imported from its file in a clean checkout of the examples
(``test_examples_clean.clean_checkout``, shared by the file's tests) and called with its default
``--out``, ``--figures`` and ``--runs-dir``: everything must land in the git-ignored
``runs/studies/`` and leave ``git status`` unchanged. One parametrised test runs every study,
makes the checks every study's JSON must pass, then the study's own (``CHECKS``), all on the
files.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from conftest import all_finite, assert_png
from test_examples_clean import clean_checkout, load_script, stays_clean


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A clean checkout of the examples, shared by this file's tests."""
    return clean_checkout(tmp_path_factory.mktemp("checkout"))


def _run_quick(name: str, checkout: Path, data_dir: Path, monkeypatch) -> dict:
    """Run study ``name`` of ``checkout`` in ``--quick`` mode with its default outputs, from
    ``checkout``; check and return its JSON."""
    studies = checkout / "examples" / "studies"
    # the studies import their helpers as _common: this checkout's, whose ROOT is the checkout
    monkeypatch.delitem(sys.modules, "_common", raising=False)
    monkeypatch.syspath_prepend(str(studies))
    monkeypatch.chdir(checkout)
    with stays_clean(checkout):
        returned = load_script(studies / f"{name}.py").main(
            ["--quick", "--data-dir", str(data_dir)]
        )
    figures = checkout / "runs" / "studies"
    report = json.loads((figures / f"{name}.json").read_text())
    assert report == json.loads(json.dumps(returned))
    for key in ("study", "command", "quick", "budget", "wall_seconds", "figures", "seed"):
        assert key in report, key
    assert report["study"] == name and report["quick"] is True
    assert report["command"].startswith(f"python examples/studies/{name}.py --quick")
    assert report["wall_seconds"] > 0 and report["budget"]
    assert all_finite(report)
    for figure in report["figures"]:
        assert_png(figures / figure)
    assert (figures / name).is_dir()  # the run folders
    return report


def _check_curve(curve: list[dict], epochs: int, n_train: int) -> None:
    assert [p["epoch"] for p in curve] == list(range(1, epochs + 1))
    assert [p["samples_seen"] for p in curve] == [e * n_train for e in range(1, epochs + 1)]
    for p in curve:
        assert {"train_elbo", "test_elbo", "step", "seconds"} <= set(p)


def _check_latent_sweep(report: dict) -> None:
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


def _check_batch_samples(report: dict) -> None:
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


def _check_encoder_depth(report: dict) -> None:
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


def _check_activations(report: dict) -> None:
    rows = report["table"]
    assert [r["activation"] for r in rows] == ["tanh", "sigmoid", "relu", "softplus"]
    for r in rows:
        assert r["median_seconds_per_epoch"] > 0 and r["final_test_elbo"] < 0
    assert rows[0]["seconds_per_epoch_relative_to_tanh"] == 1.0


def _check_manifolds(report: dict) -> None:
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


def _check_estimators(report: dict) -> None:
    assert report["figures"] == ["estimators.png", "estimators_gradient_variance.png"]
    latents = [row["latent_dim"] for row in report["table"]]
    assert latents == [3, 10]
    assert {(r["latent_dim"], r["objective"]) for r in report["runs"]} == {
        (z, o) for z in latents for o in ("trace", "meanfield")
    }
    for r in report["runs"]:
        assert {"test_elbo", "train_elbo", "curve", "run_dir"} <= set(r)
        assert r["test_elbo"] < 0 and Path(r["run_dir"], "checkpoint.pt").exists()
    assert len(report["gradient_variance"]) == 3 * len(latents)
    for v in report["gradient_variance"]:
        assert v["parameters_from"] in ("init", "meanfield-trained", "trace-trained")
        for est in ("trace", "meanfield"):
            assert v[est]["encoder"]["total_variance"] > 0
            assert v[est]["decoder"]["total_variance"] > 0
        # the same ε for both estimators: the decoder's gradient (no KL term) is identical
        assert v["decoder_gradients_max_abs_difference"] == 0.0
        assert v["decoder_variance_ratio_trace_over_meanfield"] == 1.0
        assert v["encoder_variance_ratio_trace_over_meanfield"] > 0


def _check_vae_vs_autoencoder(report: dict) -> None:
    assert report["figures"] == ["vae_vs_autoencoder.png", "vae_vs_autoencoder_reconstructions.png"]
    assert [row["latent_dim"] for row in report["table"]] == [2, 5]
    models = {(r["latent_dim"], r["model"]): r for r in report["results"]}
    assert set(models) == {(z, m) for z in (2, 5) for m in ("VAE", "AE")}
    for (_, m), r in models.items():
        assert 0 < r["test_mse"] < 1 and 0 < r["train_mse"] < 1
        assert math.isclose(r["test_mse"], r["trainer_test_mse"], rel_tol=1e-5)
        config = r["config"]
        if m == "AE":
            assert config["guide"] == "deterministic" and config["beta"] == 0.0
            assert config["likelihood"] == "mse" and config["weight_decay"] > 0
        else:
            assert config["guide"] == "diagonal" and config["likelihood"] == "bernoulli"
            assert r["test_elbo"] < 0


def _check_marginal_likelihood(report: dict) -> None:
    assert report["figures"] == ["marginal_likelihood.png"]
    sizes = [r["num_train"] for r in report["runs"]]
    assert sizes == [100, 1000]
    for r in report["runs"]:
        seen = [p["samples_seen"] for p in r["curve"]]
        assert seen == sorted(seen) and len(seen) == 2
        # one run folder, continued from point to point: its metrics run through every epoch
        assert [m["epoch"] for m in r["per_epoch"]] == list(range(1, r["curve"][-1]["epoch"] + 1))
        for p in r["curve"]:
            # an IW estimate with K ≥ 1 is at least the ELBO in expectation; allow MC noise
            assert p["test_log_px"] > p["test_elbo"] - 5
        assert r["final"]["k"] == 50 and r["final"]["test_log_px"] < 0
    assert {"train_log_px", "test_log_px", "train_minus_test"} <= set(report["table"][0])


CHECKS = {
    "latent_sweep": _check_latent_sweep,
    "batch_samples": _check_batch_samples,
    "encoder_depth": _check_encoder_depth,
    "estimators": _check_estimators,
    "activations": _check_activations,
    "vae_vs_autoencoder": _check_vae_vs_autoencoder,
    "manifolds": _check_manifolds,
    "marginal_likelihood": _check_marginal_likelihood,
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_study_quick(name, checkout, data_dir, monkeypatch):
    CHECKS[name](_run_quick(name, checkout, data_dir, monkeypatch))
