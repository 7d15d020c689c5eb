"""The replication studies estimators, vae_vs_autoencoder and marginal_likelihood run end to end.

Each study's ``main(argv)`` runs in this process in its ``--quick`` mode, on the real data,
with every output (JSON, PNGs, run folders) under ``tmp_path``; the checks are on the files.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

STUDIES = Path(__file__).resolve().parents[1] / "examples" / "studies"


def _load(name: str):
    if str(STUDIES) not in sys.path:  # the studies import their sibling ``_common``
        sys.path.insert(0, str(STUDIES))
    spec = importlib.util.spec_from_file_location(f"_study_{name}", STUDIES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(name: str, tmp_path: Path, data_dir: Path) -> dict:
    out = tmp_path / f"{name}.json"
    argv = ["--quick", "--out", str(out), "--figures", str(tmp_path)]
    argv += ["--runs-dir", str(tmp_path / "runs"), "--data-dir", str(data_dir)]
    returned = _load(name).main(argv)
    report = json.loads(out.read_text())
    assert report["study"] == returned["study"] == name
    assert report["quick"] is True and report["command"].startswith("python examples/studies/")
    assert report["wall_seconds"] > 0 and report["budget"]
    assert _all_finite(report)
    for figure in report["figures"]:
        _png(tmp_path / figure)
    return report


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


def test_estimators(tmp_path, data_dir):
    report = _run("estimators", tmp_path, data_dir)
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


def test_vae_vs_autoencoder(tmp_path, data_dir):
    report = _run("vae_vs_autoencoder", tmp_path, data_dir)
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


def test_marginal_likelihood(tmp_path, data_dir):
    report = _run("marginal_likelihood", tmp_path, data_dir)
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
