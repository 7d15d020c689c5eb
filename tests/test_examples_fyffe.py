"""The Fyffe / Mattei & Frellsen examples run end to end in their ``--quick`` modes.

Each example is imported from ``examples/`` and run in this process (importing torch and pyro
once instead of once per subprocess keeps the file well under 90 s); ``swap_guides.py`` is a
plain script and runs through :func:`runpy.run_path`. Every check is on the written files.
They run with their default ``--out`` in a clean checkout of the examples
(``test_examples_clean.clean_checkout``, the current directory set to it), and must leave its
``git status`` unchanged, writing under ``runs/fyffe/``.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
from conftest import all_finite, assert_png
from test_examples_clean import clean_checkout, load_script, stays_clean


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A clean checkout of the examples, shared by this file's tests."""
    return clean_checkout(tmp_path_factory.mktemp("checkout"))


@pytest.fixture
def out(checkout, monkeypatch) -> Path:
    """Where the examples write by default, run from ``checkout``."""
    monkeypatch.chdir(checkout)
    return checkout / "runs" / "fyffe"


def _run(name: str, checkout: Path, out: Path, data_dir: Path) -> dict:
    with stays_clean(checkout):
        load_script(checkout / "examples" / f"{name}.py").main(
            ["--quick", "--data-dir", str(data_dir)]
        )
    return json.loads((out / f"{name}.json").read_text())


def test_unbounded_likelihood(checkout, out, data_dir):
    report = _run("unbounded_likelihood", checkout, out, data_dir)
    assert_png(out / "unbounded_likelihood.png")
    assert report["quick"] is True and all_finite(report)
    names = [r["likelihood"] for r in report["results"]]
    assert names == ["gaussian-learned", "bounded-gaussian", "gaussian-fixed", "baggins"]
    for r in report["results"]:
        # a blow-up is allowed (it is the point): then it is recorded with its epoch and message
        if r["blowup"] is not None:
            assert set(r["blowup"]) >= {"epoch", "message"}
            assert r["epochs_completed"] == r["blowup"]["epoch"] - 1
        else:
            assert r["epochs_completed"] == report["epochs"]
            assert r["test_iw_log_likelihood"] is not None
        assert r["per_epoch"] and {"epoch", "train_elbo", "test_elbo", "min_sigma"} <= set(
            r["per_epoch"][0]
        )
        assert r["min_sigma_reached"] > 0
        if r["log_likelihood_ceiling"] is not None:  # bounded heads never exceed their ceiling
            assert r["max_train_elbo"] <= r["log_likelihood_ceiling"]
    by_name = {r["likelihood"]: r for r in report["results"]}
    assert by_name["gaussian-learned"]["log_likelihood_ceiling"] is None
    assert by_name["bounded-gaussian"]["min_sigma_reached"] >= report["floor"]
    assert by_name["gaussian-fixed"]["min_sigma_reached"] == pytest.approx(report["sigma_fixed"])
    assert set(report["headline"]) >= {
        "unbounded_max_train_elbo",
        "unbounded_min_sigma",
        "unbounded_blowup",
        "test_iw_log_likelihood",
    }


def test_constant_vs_learned_variance(checkout, out, data_dir):
    report = _run("constant_vs_learned_variance", checkout, out, data_dir)
    assert_png(out / "constant_vs_learned_variance.png")
    assert all_finite(report)
    assert set(report["tables"]) == {"mnist-binarized", "frey"}
    for rows in report["tables"].values():
        variants = [r["variant"] for r in rows]
        assert variants[0] == "diagonal" and "constant + BILBO" in variants
        for r in rows:
            assert {"test_elbo", "test_iw_log_likelihood", "guide_parameters"} <= set(r)
        diag, const = rows[0], rows[1]
        # means only: the constant guide's last layer has half the outputs
        assert const["guide_parameters"] < diag["guide_parameters"]
        bilbo = next(r for r in rows if r["objective"] == "bilbo")
        assert "test_elbo_floating_prior" in bilbo


def test_scale_invariance(checkout, out, data_dir):
    report = _run("scale_invariance", checkout, out, data_dir)
    assert_png(out / "scale_invariance.png")
    assert_png(out / "scale_invariance_reconstructions.png")
    assert all_finite(report) and report["dtype"] == "float64"
    families = report["families"]
    assert families["baggins"]["invariant"] is True
    assert families["baggins"]["max_abs_deviation_from_d_log_c"] < 1e-8
    assert families["baggins"]["max_abs_parameter_difference"] < 1e-10
    for c in report["scales"]:
        row = families["baggins"]["per_scale"][f"c={c:g}"]
        assert row["loss_shift_first_step"] == pytest.approx(row["d_log_c"], abs=1e-8)
        assert row["test_elbo_plus_d_log_c"] == pytest.approx(
            families["baggins"]["per_scale"]["c=1"]["test_elbo"], abs=1e-6
        )
    assert families["gaussian-fixed"]["invariant"] is False
    assert families["baggins-unnormalised"]["invariant"] is False
    assert report["what_must_be_scale_equivariant"]


def test_swap_guides(checkout, out, monkeypatch):
    from pyrovae import registry
    from pyrovae.config import is_point_posterior

    monkeypatch.setattr(sys, "argv", ["swap_guides.py", "--quick"])
    with stays_clean(checkout):
        runpy.run_path(str(checkout / "examples" / "swap_guides.py"), run_name="__main__")
    results = json.loads((out / "swap_guides.json").read_text())
    # every guide of a VAE; a point posterior ("deterministic") is an auto-encoder's
    vae_guides = {g for g in registry.GUIDES.names() if not is_point_posterior(g)}
    assert "diagonal" in vae_guides and "deterministic" not in vae_guides
    assert set(results) == vae_guides
    assert all_finite(results)
    for guide in results:
        assert_png(out / f"swap_guides_{guide}.png")
