"""Full variational Bayes over decoder weights (Kingma & Welling 2013, appendix F).

The bound is checked against its definition computed by hand, the IW estimator
against an exact linear-Gaussian marginal, and training on real MNIST against
the numbers a model that does not learn would give.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from conftest import small
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import kl_divergence

from pyrovae.config import ConfigError, RunConfig
from pyrovae.guides import DiagonalGaussian
from pyrovae.guides.bayesian import FullVBGuide
from pyrovae.infer import full_vb
from pyrovae.infer.evaluation import iw_log_likelihood, log_likelihood_draws
from pyrovae.models import VAE, GaussianFixed, data_plate
from pyrovae.models.bayesian import bayesian_decoder
from pyrovae.models.weight_priors import ScaleMixtureNormal
from pyrovae.run import RunFolder, load_run
from pyrovae.train import train

MIXTURE = dict(mixture_pi=0.3, mixture_sigma1=1.0, mixture_sigma2=0.05)


def _small_model(prior="normal", data_dim=12, latent_dim=2, hidden=(5,), init_scale=0.05):
    decoder = bayesian_decoder(
        latent_dim, list(hidden), data_dim, "tanh", prior, weight_prior_scale=0.3, **MIXTURE
    )
    model = VAE(data_dim, latent_dim, decoder=decoder)
    guide = FullVBGuide(
        DiagonalGaussian(data_dim, latent_dim, hidden=[7]), model, weight_init_scale=init_scale
    )
    return model, guide


def _log_prior(prior: str, w: torch.Tensor) -> torch.Tensor:
    if prior == "normal":
        return dist.Normal(0.0, 0.3).log_prob(w).sum()
    pi, s1, s2 = MIXTURE["mixture_pi"], MIXTURE["mixture_sigma1"], MIXTURE["mixture_sigma2"]
    dens = (
        pi * dist.Normal(0.0, s1).log_prob(w).exp()
        + (1 - pi) * dist.Normal(0.0, s2).log_prob(w).exp()
    )
    return dens.log().sum()


@pytest.mark.parametrize("prior", ["normal", "scale-mixture"])
def test_full_vb_bound_is_its_definition_computed_the_long_way(prior):
    model, guide = _small_model(prior)
    x = torch.bernoulli(torch.full((6, 12), 0.4))
    n = 90  # the minibatch of 6 stands for 90 points: data term × 90/6, weight terms once
    guide_trace = poutine.trace(guide).get_trace(x, num_data=n)
    fixed = poutine.replay(guide, trace=guide_trace)
    loss = Trace_ELBO(max_plate_nesting=1).differentiable_loss(model, fixed, x, num_data=n)

    v = {
        name: site["value"] for name, site in guide_trace.nodes.items() if site["type"] == "sample"
    }
    z = v["latent"]
    h = torch.tanh(z @ v["decoder.0.weight"].T + v["decoder.0.bias"])
    logits = h @ v["decoder.2.weight"].T + v["decoder.2.bias"]
    log_px = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    log_pz = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = guide.local.posterior(x).log_prob(z)
    data_term = (n / 6) * (log_px + log_pz - log_qz).sum()
    weights = guide.weights
    log_p_theta = sum(_log_prior(prior, v[s]) for s in weights.site_names)
    log_q_theta = sum(
        dist.Normal(weights.loc(s), F.softplus(weights.rhos[s.replace(".", "/")]) + 1e-8)
        .log_prob(v[s])
        .sum()
        for s in weights.site_names
    )
    bound = data_term + log_p_theta - log_q_theta
    torch.testing.assert_close(-loss, bound, rtol=1e-5, atol=1e-3)


def test_mean_field_elbo_uses_the_closed_form_weight_kl_and_matches_monte_carlo():
    model, guide = _small_model("normal", init_scale=0.2)
    x = torch.bernoulli(torch.full((6, 12), 0.4))
    kl, exact = full_vb.weight_kl(guide)
    assert exact and kl > 0
    _, p_trace = full_vb._prior_and_posterior(guide)
    mc = 0.0
    for name in guide.weights.site_names:  # 4000 draws of θ ~ q(θ), vectorised per site
        q = guide.weights.distribution(name)
        draws = q.sample((4000,))
        mc = mc + q.log_prob(draws) - p_trace.nodes[name]["fn"].log_prob(draws)
    assert abs(mc.mean() - kl) < 4 * mc.std() / math.sqrt(len(mc))
    # TraceMeanField_ELBO replaces log q − log p by the closed-form KL at every site, the
    # weights included: with the same draws, its loss minus Trace_ELBO's is exactly the sum of
    # (KL − sampled log-ratio) over the latent and weight sites
    pyro.set_rng_seed(3)
    with warnings.catch_warnings():  # the guide samples in the model's order: no mean-field
        warnings.simplefilter("error", UserWarning)  # warning from TraceMeanField_ELBO
        tmf = TraceMeanField_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x)
    pyro.set_rng_seed(3)
    trace = poutine.trace(guide).get_trace(x)
    tr = Trace_ELBO(max_plate_nesting=1).differentiable_loss(
        model, poutine.replay(guide, trace=trace), x
    )
    theta = {n: s["value"] for n, s in trace.nodes.items() if n in guide.weights.site_names}
    q_trace, p_trace = full_vb._prior_and_posterior(guide, theta)
    sampled_kl = sum(
        (s["fn"].log_prob(s["value"]) - p_trace.nodes[n]["fn"].log_prob(s["value"])).sum()
        for n, s in full_vb._sites(q_trace)
    )
    z, q_z, p_z = trace.nodes["latent"]["value"], guide.local.posterior(x), model.prior()
    latent_gap = (kl_divergence(q_z, p_z) - q_z.log_prob(z) + p_z.log_prob(z)).sum()
    torch.testing.assert_close(tmf - tr, kl - sampled_kl + latent_gap, rtol=1e-4, atol=1e-2)


def test_scale_mixture_density_and_moments():
    d = ScaleMixtureNormal(torch.tensor(0.25), torch.tensor(2.0), torch.tensor(0.1))
    grid = torch.linspace(-12, 12, 200_001)
    mass = torch.trapezoid(d.log_prob(grid).exp(), grid)
    assert mass == pytest.approx(1.0, abs=1e-4)
    draws = d.expand((4,)).sample((50_000,))
    assert draws.shape == (50_000, 4)
    assert draws.var().item() == pytest.approx(d.variance.item(), rel=0.05)
    # the narrow component holds 75% of the mass within a few σ₂ of zero
    assert (draws.abs() < 0.3).float().mean().item() == pytest.approx(0.75 + 0.25 * 0.12, abs=0.02)


def _linear_gaussian(sigma=0.5, d=6, dz=2):
    decoder = bayesian_decoder(dz, [], d, weight_prior="normal", weight_prior_scale=1.0)
    model = VAE(d, dz, likelihood=GaussianFixed(d, sigma=sigma), decoder=decoder)
    torch.manual_seed(1)
    w, b = torch.randn(d, dz), torch.randn(d) * 0.5
    thetas = [  # two draws of θ, near each other as draws from a fitted q(θ) are
        {"decoder.0.weight": w, "decoder.0.bias": b},
        {"decoder.0.weight": w + 0.2 * torch.randn(d, dz), "decoder.0.bias": b + 0.3},
    ]
    return model, thetas


def _exact_log_px(theta, x, sigma=0.5):
    w, b = theta["decoder.0.weight"], theta["decoder.0.bias"]
    cov = w @ w.T + sigma**2 * torch.eye(w.shape[0])
    return dist.MultivariateNormal(b, cov).log_prob(x)


def test_iw_log_likelihood_with_weight_draws_is_the_log_mean_of_exact_marginals():
    model, thetas = _linear_gaussian()
    w, b = thetas[0]["decoder.0.weight"], thetas[0]["decoder.0.bias"]
    x = dist.MultivariateNormal(b, w @ w.T + 0.25 * torch.eye(6)).sample((30,))
    precision = torch.eye(2) + w.T @ w / 0.25
    cov = torch.linalg.inv(precision)

    def broad_guide(x, num_data=None):  # posterior of θ_0, widened: a fair proposal for both
        mean = (x - b) @ w @ cov.T / 0.25
        with data_plate(x, num_data):
            pyro.sample("latent", dist.MultivariateNormal(mean, covariance_matrix=4 * cov))

    est = iw_log_likelihood(model, broad_guide, x, 3000, chunk_size=1000, weights=thetas)
    exact = torch.logsumexp(torch.stack([_exact_log_px(t, x) for t in thetas]), 0) - math.log(2)
    assert (est - exact).abs().max() < 0.05
    assert est.mean() <= exact.mean() + 0.01  # a lower bound in expectation


def test_full_vb_iw_log_likelihood_is_a_log_mean_exp_over_weight_draws_by_hand():
    """Same random numbers: S draws θ_s ~ q(θ), then for each K draws z ~ q(z|x); the
    estimate is log (1/S) Σ_s (1/K) Σ_k p(x, z_sk | θ_s) / q(z_sk | x), computed here with
    the decoder, prior and likelihood written out."""
    model, guide = _small_model("normal", init_scale=0.3)
    x = torch.bernoulli(torch.full((7, 12), 0.4))
    s, k = 4, 6
    pyro.set_rng_seed(8)
    est = iw_log_likelihood(model, guide, x, k, num_weight_samples=s)
    pyro.set_rng_seed(8)
    thetas = full_vb.sample_weights(guide, s)
    per_draw = []
    with torch.no_grad():
        for v in thetas:
            q = guide.local.posterior(x)
            z = q.sample((k,))  # (K, B, 2)
            h = torch.tanh(z @ v["decoder.0.weight"].T + v["decoder.0.bias"])
            logits = h @ v["decoder.2.weight"].T + v["decoder.2.bias"]
            log_px = -F.binary_cross_entropy_with_logits(
                logits, x.expand_as(logits), reduction="none"
            ).sum(-1)
            log_w = log_px + dist.Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z)
            per_draw.append(torch.logsumexp(log_w, 0) - math.log(k))
    expected = torch.logsumexp(torch.stack(per_draw), 0) - math.log(s)
    assert est.shape == (7,)
    torch.testing.assert_close(est, expected, rtol=1e-5, atol=1e-4)
    # given draws: the log-mean-exp of the per-draw estimates, on the same numbers
    pyro.set_rng_seed(9)
    given = iw_log_likelihood(model, guide, x, k, weights=thetas)
    pyro.set_rng_seed(9)
    rows = log_likelihood_draws(model, guide, x, k, thetas)
    assert rows.shape == (s, 7)
    torch.testing.assert_close(given, torch.logsumexp(rows, 0) - math.log(s), rtol=0, atol=0)


def test_plug_in_and_spread_follow_the_weight_posterior():
    model, guide = _small_model(init_scale=1e-6)
    x = torch.bernoulli(torch.full((5, 12), 0.4))
    z = guide.posterior(x).mean
    with poutine.condition(data=guide.weights.median()):
        expected = model.decode(z)
    torch.testing.assert_close(full_vb.plug_in(model, guide).decode(z), expected)
    assert full_vb.reconstruction_spread(model, guide, x, num_weight_samples=5).max() < 1e-4
    _, wide = _small_model(init_scale=0.5)
    assert full_vb.reconstruction_spread(model, wide, x, num_weight_samples=5).min() > 1e-3


def test_config_refuses_objectives_that_need_local_sites_only():
    with pytest.raises(ConfigError, match="trace or meanfield"):
        RunConfig.from_dict({"weights": "bayesian", "objective": "iwae"})
    with pytest.raises(ConfigError, match="init_from needs weights 'bayesian'"):
        RunConfig.from_dict({"init_from": "runs/x"})
    with pytest.raises(ConfigError, match="mixture_sigma2"):
        RunConfig.from_dict(
            {"weights": "bayesian", "weight_prior": "scale-mixture", "mixture_sigma2": 2.0}
        )


# -- training on real MNIST ----------------------------------------------------------------

FAST = dict(
    dataset="mnist-binarized",
    latent_dim=8,
    hidden=[64],
    batch_size=50,
    lr=1e-2,
    iw_samples=0,
    weight_samples=3,
)


@pytest.fixture(scope="module")
def mnist_slice(mnist_binarized):
    data = small(mnist_binarized, 3000, 10)
    return dataclasses.replace(data, test=mnist_binarized.test[::20])  # all classes


def _marginal_baseline(data) -> float:
    """Test log-likelihood of independent pixels with the training marginals."""
    p = data.train.float().mean(0).clamp(1e-3, 1 - 1e-3)
    return dist.Bernoulli(probs=p).to_event(1).log_prob(data.test.float()).mean().item()


def test_full_vb_learns_on_mnist_but_pays_for_its_weights(mnist_slice):
    baseline = _marginal_baseline(mnist_slice)  # measured: -206
    untrained = train(
        {**FAST, "weights": "bayesian", "epochs": 0}, dataset=mnist_slice, plots=False
    )
    point = train({**FAST, "epochs": 5}, dataset=mnist_slice, plots=False)
    bayes = train({**FAST, "weights": "bayesian", "epochs": 5}, dataset=mnist_slice, plots=False)
    last = bayes.metrics[-1]
    # measured here: untrained -569, full VB -187.5 (data term -168, weight KL/N 20), point -157
    assert untrained.summary["test_elbo"] < -500
    assert last["test_elbo"] > baseline + 10  # it learned what a latent-free model cannot
    assert last["test_elbo"] > bayes.metrics[0]["test_elbo"] + 20
    torch.testing.assert_close(
        last["test_elbo"],
        -(last["test_rate"] + last["test_distortion"] + last["test_weight_kl"]),
        rtol=1e-5,
        atol=1e-3,
    )
    # honest: on 3000 points the weights' KL costs ~20 nats per point and the noisy decoder
    # fits a little worse, so the point estimate of the same size is better
    assert last["test_elbo"] < point.metrics[-1]["test_elbo"]
    data_term = -(last["test_rate"] + last["test_distortion"])
    assert data_term > point.metrics[-1]["test_elbo"] - 20
    assert 5 < last["test_weight_kl"] < 40


def _resume_config(epochs):
    return {**FAST, "weights": "bayesian", "epochs": epochs, "hidden": [16], "latent_dim": 3}


def test_checkpoints_resume_exactly_and_load_back(mnist_slice, tmp_path):
    data = small(mnist_slice, 400, 100)
    full = train(_resume_config(2), tmp_path / "full", dataset=data, plots=False)
    train(_resume_config(1), tmp_path / "part", dataset=data, plots=False)
    resumed = train(_resume_config(2), tmp_path / "part", dataset=data, resume=True, plots=False)
    drop = ("seconds", "eval_seconds")
    rows = [{k: v for k, v in r.items() if k not in drop} for r in resumed.metrics]
    assert rows == [{k: v for k, v in r.items() if k not in drop} for r in full.metrics]
    for a, b in zip(full.guide.state_dict().values(), resumed.guide.state_dict().values()):
        assert torch.equal(a, b)
    _, model, guide, info = load_run(tmp_path / "part")
    assert info["num_train"] == 400
    for name, value in resumed.guide.weights.median().items():
        assert torch.equal(guide.weights.median()[name], value)
    assert RunFolder(tmp_path / "part").read_config()["config"]["weights"] == "bayesian"


def test_init_from_a_point_estimate_run_copies_its_weights(mnist_slice, tmp_path):
    data = small(mnist_slice, 400, 100)
    cfg = {**FAST, "hidden": [16], "latent_dim": 3, "epochs": 1}
    point = train(cfg, tmp_path / "point", dataset=data, plots=False)
    seeded = train(
        {**cfg, "weights": "bayesian", "epochs": 0, "init_from": str(tmp_path / "point")},
        dataset=data,
        plots=False,
    )
    means = seeded.guide.weights.median()
    for name, value in point.model.decoder.state_dict().items():
        assert torch.equal(means[f"decoder.{name}"], value)
    for a, b in zip(point.guide.state_dict().values(), seeded.guide.local.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="same sizes"):
        train(
            {**cfg, "hidden": [8], "weights": "bayesian", "init_from": str(tmp_path / "point")},
            dataset=data,
            plots=False,
        )
