"""ArviZ diagnostics: known posteriors are recovered, bad mixing and bad guides are flagged."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from pyrovae.cli import main
from pyrovae.diagnostics import (
    compare_posteriors,
    diagnose,
    diagnose_run,
    guide_khat,
    guide_log_ratios,
    inference_data,
    khat_summary,
    mcmc_inference_data,
    vi_inference_data,
)
from pyrovae.guides import ConstantVariance, DiagonalGaussian
from pyrovae.guides.bayesian import FullVBGuide
from pyrovae.infer import full_vb
from pyrovae.infer.importance import log_importance_weights
from pyrovae.infer.log_weights import per_point_log_weights
from pyrovae.infer.nuts import nuts_chains
from pyrovae.models import VAE, GaussianFixed, data_plate
from pyrovae.models.bayesian import bayesian_decoder

PNG = b"\x89PNG\r\n\x1a\n"
M0, S0, SIGMA = 1.0, 2.0, 1.5


def conjugate(y):
    """y_i ~ N(μ, σ²) with σ known and μ ~ N(m0, s0²): the posterior of μ is Gaussian."""
    mu = pyro.sample("mu", dist.Normal(M0, S0))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("obs", dist.Normal(mu, SIGMA), obs=y)


def _exact_posterior(y):
    precision = 1 / S0**2 + len(y) / SIGMA**2
    mean = (M0 / S0**2 + y.sum().item() / SIGMA**2) / precision
    return mean, precision**-0.5


def test_nuts_recovers_the_conjugate_posterior_and_writes_every_file(tmp_path):
    y = dist.Normal(3.0, SIGMA).sample((25,))
    samples, stats = nuts_chains(conjugate, y, num_samples=200, warmup_steps=100, num_chains=2)
    assert samples["mu"].shape == (2, 200)
    idata = mcmc_inference_data(samples, conjugate, y, sample_stats=stats)
    result = diagnose(idata, tmp_path)
    row = result.summary.loc["mu"]
    mean, sd = _exact_posterior(y)
    assert abs(row["mean"] - mean) < 4 * row["mcse_mean"] + 0.01
    assert row["sd"] == pytest.approx(sd, rel=0.15)
    assert row["r_hat"] < 1.05 and row["ess_bulk"] > 80
    # the pointwise log-likelihood of each y_i, 25 points: LOO is finite and well behaved
    assert idata.log_likelihood["obs"].shape == (2, 200, 25)
    assert result.loo["points"] == 25 and np.isfinite(result.loo["elpd_loo"])
    assert result.loo["frac_pareto_k_above_0.7"] == 0.0
    # one replicated y per draw (Predictive on the draws): y and ỹ share the "image" dim
    assert idata.posterior_predictive["obs"].dims == ("chain", "draw", "image")
    assert idata.observed_data["obs"].dims == ("image",)
    assert idata.posterior_predictive["obs"].values.std() == pytest.approx(
        (SIGMA**2 + sd**2) ** 0.5, rel=0.1
    )
    assert 0.1 < result.posterior_predictive["p_value_median"] < 0.9
    for name in ("summary.csv", "inference_data.nc", "diagnostics.json"):
        assert (tmp_path / name).stat().st_size > 0
    for name in ("trace.png", "posterior.png", "ppc.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    import arviz as az

    back = az.from_netcdf(tmp_path / "inference_data.nc")
    np.testing.assert_allclose(back.posterior["mu"].values, samples["mu"].numpy())
    assert json.loads((tmp_path / "diagnostics.json").read_text())["max_r_hat"] < 1.05


def test_r_hat_flags_chains_stuck_apart_and_passes_mixed_ones():
    rng = np.random.default_rng(0)
    stuck = np.stack([rng.normal(0.0, 1.0, 500), rng.normal(4.0, 1.0, 500)])
    mixed = rng.normal(0.0, 1.0, (2, 500))
    weights = rng.normal(0.0, 1.0, (2, 500, 3, 5))
    idata = inference_data({"stuck": stuck, "mixed": mixed, "w": weights}, entries=4)
    summary = diagnose(idata).summary
    assert summary.loc["stuck", "r_hat"] > 1.5
    assert summary.loc["mixed", "r_hat"] < 1.02
    # a (3, 5) site keeps its first 4 entries, labelled by their row-major index
    assert list(idata.posterior["w"].dims) == ["chain", "draw", "w_entry"]
    assert [f"w[{i}]" for i in ("0,0", "0,1", "0,2", "0,3")] == list(summary.index[-4:])


# -- PSIS k̂ of a guide: exact linear-Gaussian reference (as in test_importance) -----------
D, DZ = 6, 2


def _linear_gaussian():
    torch.manual_seed(1)
    decoder = nn.Linear(DZ, D)
    with torch.no_grad():
        decoder.weight.normal_(0.0, 1.0)
        decoder.bias.normal_(0.0, 0.5)
    model = VAE(D, DZ, likelihood=GaussianFixed(D, sigma=SIGMA / 3), decoder=decoder)
    W, b = decoder.weight.detach(), decoder.bias.detach()
    x = dist.MultivariateNormal(b, W @ W.T + (SIGMA / 3) ** 2 * torch.eye(D)).sample((40,))
    return model, W, b, x


def _posterior_guide(W, b, shift=0.0, scale=1.0):
    """q(z|x) = the exact posterior, its mean shifted by ``shift`` sds, its sd times ``scale``."""
    precision = torch.eye(DZ) + W.T @ W / (SIGMA / 3) ** 2
    cov = torch.linalg.inv(precision)

    def guide(x, num_data=None):
        mean = (x - b) @ W @ cov.T / (SIGMA / 3) ** 2 + shift * cov.diagonal().sqrt()
        with data_plate(x, num_data):
            pyro.sample("latent", dist.MultivariateNormal(mean, covariance_matrix=scale**2 * cov))

    return guide


def test_khat_is_small_for_the_exact_posterior_and_large_for_a_mismatched_guide():
    model, W, b, x = _linear_gaussian()
    exact = khat_summary(guide_khat(model, _posterior_guide(W, b), x, num_samples=400))
    wider = khat_summary(guide_khat(model, _posterior_guide(W, b, scale=1.3), x, num_samples=400))
    narrow = _posterior_guide(W, b, shift=1.5, scale=0.4)  # too sure and off-centre
    bad = khat_summary(guide_khat(model, narrow, x, num_samples=400))
    assert exact["max"] < 0.5 and wider["max"] < 0.5, (exact, wider)
    assert bad["frac_above_0.7"] > 0.9, bad


def test_khat_works_for_every_guide(tmp_path):
    x = torch.rand(20, 12)
    lik = GaussianFixed(12, sigma=0.3)
    decoder = bayesian_decoder(2, [5], 12, weight_prior="scale-mixture")
    bayes_model = VAE(12, 2, likelihood=lik, decoder=decoder)
    point_model = VAE(12, 2, hidden=[5], likelihood=lik)
    guides = [
        (point_model, DiagonalGaussian(12, 2, hidden=[8])),
        (point_model, ConstantVariance(12, 2, hidden=[8], posterior_scale=0.5)),
        (bayes_model, FullVBGuide(DiagonalGaussian(12, 2, hidden=[8]), bayes_model)),
    ]
    for model, guide in guides:
        k = guide_khat(model, guide, x, num_samples=100)
        assert k.shape == (20,) and np.isfinite(k).all()
    idata = vi_inference_data(bayes_model, guides[-1][1], x, num_chains=2, num_draws=15)
    assert idata.posterior["decoder.2.weight"].shape == (2, 15, 4)
    assert idata.log_likelihood["obs"].shape == (2, 15, 20)
    assert idata.observed_data["obs"].shape == (20, 12)
    assert idata.posterior_predictive["obs"].shape == (2, 15, 20, 12)
    assert idata.posterior_predictive["obs"].dtype == np.float32  # Gaussian: continuous


def _bernoulli_bayesian_vae():
    return VAE(12, 2, decoder=bayesian_decoder(2, [5], 12, weight_prior_scale=0.5))


def test_vi_inference_data_follows_the_schema_that_loo_compare_and_plot_ppc_read():
    import arviz as az
    import matplotlib.pyplot as plt

    x = torch.bernoulli(torch.full((20, 12), 0.3))
    model = _bernoulli_bayesian_vae()
    runs, guides = {}, {}
    for name, scale in (("narrow", 0.01), ("wide", 0.3)):
        guides[name] = FullVBGuide(DiagonalGaussian(12, 2, [8]), model, weight_init_scale=scale)
        runs[name] = vi_inference_data(
            model, guides[name], x, num_chains=2, num_draws=15, iw_samples=3, entries=None
        )
    idata = runs["wide"]
    groups = {"posterior", "log_likelihood", "posterior_predictive", "observed_data"}
    assert set(idata.groups()) == groups | {"sample_stats"}
    assert idata.log_likelihood["obs"].dims == ("chain", "draw", "image")
    assert idata.observed_data["obs"].dims == ("image", "pixel")
    assert idata.posterior_predictive["obs"].dims == ("chain", "draw", "image", "pixel")
    assert idata.posterior_predictive["obs"].shape == (2, 15, 20, 12)
    assert idata.sample_stats["lp"].dims == ("chain", "draw")
    # binary pixels are stored as integers: ArviZ plots them as discrete values
    assert idata.observed_data["obs"].dtype == np.int8
    assert idata.posterior_predictive["obs"].dtype == np.int8
    np.testing.assert_array_equal(idata.observed_data["obs"].values, x.numpy())
    # sample_stats of a draw: lp = log p(θ) + Σ_i log p̂(x_i | θ), log_q = log q(θ), at the
    # θ whose entries the posterior group holds (all of them here)
    guide, (c, d) = guides["wide"], (1, 7)
    theta = {
        n: torch.as_tensor(idata.posterior[n].values[c, d])
        .float()
        .reshape(guide.weights.loc(n).shape)
        for n in guide.weights.site_names
    }
    log_q, log_p = full_vb.weight_log_densities(guide, theta)
    ll = idata.log_likelihood["obs"].values[c, d].sum()
    assert idata.sample_stats["lp"].values[c, d] == pytest.approx(log_p.item() + ll, rel=1e-5)
    assert idata.sample_stats["log_q"].values[c, d] == pytest.approx(log_q.item(), rel=1e-5)
    # PSIS-LOO leaves out one image at a time
    with warnings.catch_warnings():  # high Pareto k on an untrained model; pandas deprecations
        warnings.simplefilter("ignore")
        loo = az.loo(idata, pointwise=True)
        table = az.compare(runs)
    assert loo.loo_i.dims == ("image",) and loo.loo_i.shape == (20,)
    assert sorted(table.index) == ["narrow", "wide"] and table["rank"].min() == 0
    axes = az.plot_ppc(idata, num_pp_samples=10, random_seed=0)
    assert np.ravel(axes)[0].get_xlabel() == "obs"
    plt.close("all")


def test_guide_log_ratios_are_the_per_point_log_weights():
    """The k̂ diagnostic reads the same log-weights as the IW log-likelihood (the dispatcher:
    trace-free for a pyrovae pair), equal bit for bit to Pyro's traced ones; a full-VB guide's
    are those of the local model at θ̄."""
    x = torch.rand(20, 12)
    lik = GaussianFixed(12, sigma=0.3)
    point_model, guide = VAE(12, 2, hidden=[5], likelihood=lik), DiagonalGaussian(12, 2, [8])
    bayes_model = VAE(12, 2, likelihood=lik, decoder=bayesian_decoder(2, [5], 12))
    fvb_guide = FullVBGuide(DiagonalGaussian(12, 2, hidden=[8]), bayes_model)
    local = full_vb.given_weights(bayes_model, fvb_guide, full_vb.posterior_mean(fvb_guide))
    for model, g, pair in (
        (point_model, guide, (point_model, guide)),
        (bayes_model, fvb_guide, local),
    ):
        pyro.set_rng_seed(4)
        ratios = guide_log_ratios(model, g, x, num_samples=30, batch_size=7)
        assert ratios.shape == (20, 30)
        pyro.set_rng_seed(4)
        rows = [per_point_log_weights(*pair, x[i : i + 7], 30) for i in (0, 7, 14)]
        torch.testing.assert_close(ratios, torch.cat(rows, 1).T, rtol=0, atol=0)
        pyro.set_rng_seed(4)
        traced = [
            log_importance_weights(*pair, x[i : i + 7], num_samples=30)[0] for i in (0, 7, 14)
        ]
        torch.testing.assert_close(ratios, torch.cat(traced, 1).T, rtol=0, atol=0)


def test_nuts_and_vi_posteriors_of_a_small_bayesian_decoder_compare():
    """Plumbing on a tiny run (NUTS on a PyroModule VAE costs ~50 ms per iteration here);
    examples/full_vb_mnist.py runs the real comparison."""
    pyro.set_rng_seed(0)
    decoder = bayesian_decoder(1, [], 4, weight_prior="normal", weight_prior_scale=1.0)
    model = VAE(4, 1, likelihood=GaussianFixed(4, sigma=0.5), decoder=decoder)
    x = torch.randn(15, 4) * 0.7 + torch.tensor([1.0, -1.0, 0.5, 0.0])
    samples, _ = nuts_chains(
        model, x, num_samples=12, warmup_steps=12, num_chains=2, max_tree_depth=3
    )
    assert samples["latent"].shape == (2, 12, 15, 1)
    nuts = mcmc_inference_data(samples, model, x)  # the z's are chain variables, not shown
    assert set(nuts.posterior.data_vars) == {"decoder.0.weight", "decoder.0.bias"}
    guide = FullVBGuide(DiagonalGaussian(4, 1, hidden=[4]), model, weight_init_scale=0.1)
    vi = vi_inference_data(model, guide, x, num_chains=2, num_draws=30)
    table = compare_posteriors(nuts, vi, ["decoder.0.bias"], labels=("nuts", "vi"))
    assert list(table.columns) == ["mean_nuts", "sd_nuts", "mean_vi", "sd_vi", "sd_ratio", "z"]
    assert len(table) == 4 and np.isfinite(table.to_numpy()).all()
    assert nuts.log_likelihood["obs"].shape == (2, 12, 15)


# -- the command line --------------------------------------------------------------------

TINY = ["--dataset", "digits", "--hidden", "16", "--latent", "2", "--epochs", "1"]
TINY += ["--iw-samples", "5", "--no-progress", "--weight-samples", "3"]
QUICK = ["--limit", "30", "--draws", "20", "--psis-samples", "50", "--iw-samples", "3"]


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_trains_a_bayesian_decoder_and_diagnoses_it(tmp_path):
    run = tmp_path / "run"
    result = _invoke("train", *TINY, "--weights", "bayesian", "--out", run)
    assert result.exit_code == 0, result.output
    assert "test_weight_kl" in result.output and "test_reconstruction_sd" in result.output
    result = _invoke("diagnose", run, *QUICK, "--entries", "2")
    assert result.exit_code == 0, result.output
    out = run / "diagnostics"
    report = json.loads((out / "diagnostics.json").read_text())
    assert report["guide_khat"]["points"] == 30 and report["loo"]["points"] == 30
    with (out / "summary.csv").open() as f:
        rows = list(csv.reader(f))
    assert len(rows) == 1 + 4 * 2  # header + 4 weight sites × 2 entries
    assert rows[1][0] == "decoder.0.weight[0,0]" and "r_hat" in rows[0]
    for name in ("trace", "posterior", "khat", "ppc"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG
    assert report["posterior_predictive"]["statistic"] == "mean value per image"
    assert "posterior_predictive:" in result.output
    import arviz as az

    idata = az.from_netcdf(out / "inference_data.nc")
    assert dict(idata.posterior.sizes)["chain"] == 2 and dict(idata.posterior.sizes)["draw"] == 20
    assert idata.posterior_predictive["obs"].shape == (2, 20, 30, 64)  # 8 × 8 digits
    assert idata.observed_data["obs"].dims == ("image", "pixel")
    assert set(idata.sample_stats.data_vars) == {"lp", "log_q"}
    result = _invoke("diagnose", run, *QUICK, "--sites", "decoder.9.weight")
    assert result.exit_code != 0 and "unknown sites" in result.output
    assert "Traceback" not in result.output


def test_a_point_estimate_run_gets_the_guide_khat_only(tmp_path):
    run = tmp_path / "point"
    assert _invoke("train", *TINY, "--out", run).exit_code == 0
    result = diagnose_run(run, limit=25, psis_samples=60)
    assert result.summary is None and result.khat.shape == (25,)
    assert "no weight posterior" in result.notes[0]
    assert (run / "diagnostics" / "khat.png").read_bytes()[:8] == PNG
    assert not (run / "diagnostics" / "inference_data.nc").exists()
