"""The command line through click's test runner: it writes a run folder and reads it back."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from pyrovae.cli import main

TINY = [
    "--dataset",
    "digits",
    "--hidden",
    "32",
    "--latent",
    "2",
    "--epochs",
    "2",
    "--iw-samples",
    "10",
    "--no-progress",
]


def _invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def _one_line_error(result, *fragments):
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    for frag in fragments:
        assert frag in errors[0], errors[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = _invoke("train", *TINY, "--out", out)
    assert result.exit_code == 0, result.output
    return out, result


def test_train_writes_a_complete_run_folder(trained_run):
    out, result = trained_run
    assert f"run written to {out}" in result.output
    config = json.loads((out / "config.json").read_text())
    assert (
        config["config"]["latent_dim"] == 2 and config["config"]["likelihood"] == "gaussian-fixed"
    )
    assert config["data_dim"] == 64 and config["image_shape"] == [8, 8]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["test_elbo"] < 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_iw_log_likelihood"] >= summary["test_elbo"] - 1.0
    assert summary["test_elbo"] == rows[-1]["test_elbo"]
    for name in ("curves", "reconstructions", "samples", "manifold"):
        assert (out / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "checkpoint.pt").stat().st_size > 1000


def test_evaluate_reads_the_run_back(trained_run):
    out, _ = trained_run
    result = _invoke("evaluate", out, "--samples", "50")
    assert result.exit_code == 0, result.output
    numbers = json.loads((out / "evaluation-test.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert numbers["num_points"] == 250 and numbers["epoch"] == 2
    # the same checkpoint gives the same analytic-KL ELBO up to 1-sample Monte Carlo noise
    assert numbers["elbo"] == pytest.approx(summary["test_elbo"], rel=0.03)
    again = _invoke("evaluate", out, "--samples", "50")
    assert json.loads((out / "evaluation-test.json").read_text()) == numbers, again.output
    assert numbers["elbo"] == pytest.approx(-(numbers["rate"] + numbers["distortion"]), abs=1e-3)
    assert numbers["iw_log_likelihood"] > numbers["elbo"]


def test_sample_and_manifold_write_pngs(trained_run, tmp_path):
    out, _ = trained_run
    result = _invoke(
        "sample", out, "--num", 16, "--out", tmp_path / "s.png", "--save-tensor", tmp_path / "s.pt"
    )
    assert result.exit_code == 0, result.output
    import torch

    samples = torch.load(tmp_path / "s.pt", weights_only=True)
    assert samples.shape == (16, 64)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    result = _invoke("manifold", out, "--grid", 5, "--out", tmp_path / "m.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.png").exists()


def test_every_run_command_takes_threads_and_a_checked_device(trained_run, tmp_path):
    """``--threads`` sets torch's CPU threads for the command; ``--device`` accepts only
    auto, cpu, cuda and cuda:N (listed in ``--help``), auto loading on the CPU here."""
    import torch

    out, _ = trained_run
    before = torch.get_num_threads()
    try:
        for command in ("evaluate", "sample", "manifold", "diagnose"):
            help_text = _invoke(command, "--help").output
            assert "--threads" in help_text and "[auto|cpu|cuda|cuda:N]" in help_text
        torch.set_num_threads(2)
        result = _invoke("sample", out, "--num", 4, "--out", tmp_path / "s.png", "--threads", 1)
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        auto = _invoke("sample", out, "--num", 4, "--out", tmp_path / "a.png", "--device", "auto")
        assert auto.exit_code == 0, auto.output
    finally:
        torch.set_num_threads(before)
    bad = _invoke("evaluate", out, "--device", "gpu")
    assert bad.exit_code == 2
    assert "'gpu' is not auto, cpu, cuda or cuda:N" in bad.output


def test_config_file_with_overrides(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('dataset = "digits"\nlatent_dim = 3\nhidden = [16]\nepochs = 3\n')
    out = tmp_path / "run"
    result = _invoke(
        "train", "--config", toml, "--epochs", 1, "--iw-samples", 0, "--no-progress", "--out", out
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["latent_dim"], config["hidden"], config["epochs"]) == (3, [16], 1)


def test_scale_transform_reaches_the_guide_and_survives_a_reload(tmp_path):
    from pyrovae.run import load_run

    out = tmp_path / "exp"
    result = _invoke("train", *TINY, "--scale-transform", "exp", "--iw-samples", 0, "--out", out)
    assert result.exit_code == 0, result.output
    _, _, guide, _ = load_run(out)
    assert guide.scale_transform == "exp"
    x = torch.rand(3, 64).round()  # digits: 8 × 8 images
    raw = guide.encode(x)[..., guide.latent_dim :]  # σ = exp(r / 2): r = log σ²
    torch.testing.assert_close(guide.posterior(x).stddev, torch.exp(raw / 2) + guide.min_scale)
    _one_line_error(
        _invoke("train", *TINY, "--scale-transform", "tanh", "--out", tmp_path / "bad"),
        "--scale-transform",
    )


def test_bad_inputs_give_one_line_errors(trained_run, tmp_path, data_dir):
    out, _ = trained_run
    _one_line_error(
        _invoke("train", *TINY, "--likelihood", "bernoulli", "--out", tmp_path / "a"),
        "bernoulli likelihood needs binary data",
    )
    _one_line_error(
        _invoke("evaluate", out, "--dataset", "mnist", "--data-dir", data_dir),
        "64 dimensions",
        "784",
    )
    result = _invoke("train", *TINY, "--guide", "nope", "--out", tmp_path / "b")
    assert result.exit_code == 2 and "Invalid value for '--guide'" in result.output
    assert "diagonal" in result.output
    _one_line_error(
        _invoke(
            "train",
            *TINY,
            "--dataset",
            "mnist",
            "--data-dir",
            tmp_path / "no-such-folder",
            "--out",
            tmp_path / "c",
        ),
        "no-such-folder",
    )
    _one_line_error(
        _invoke("train", *TINY, "--device", "cuda", "--out", tmp_path / "d"), "no CUDA device"
    )
    _one_line_error(_invoke("evaluate", tmp_path / "missing-run"), "does not exist")
    toml = tmp_path / "typo.toml"
    toml.write_text("latnt_dim = 3\n")
    _one_line_error(
        _invoke("train", "--config", toml, "--out", tmp_path / "e"),
        "latnt_dim",
        "did you mean 'latent_dim'",
    )
    _one_line_error(_invoke("train", *TINY, "--out", out), "already holds a run", "--resume")
    assert not (tmp_path / "a").exists() or not (tmp_path / "a" / "checkpoint.pt").exists()
