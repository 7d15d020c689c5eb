"""BILBO (Fyffe 2019) is the batch-averaged ELBO under the floating prior N(0, diag(m + s²))."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from pyrovae.guides.constant import ConstantVariance
from pyrovae.guides.diagonal import DiagonalGaussian
from pyrovae.infer.bilbo import BILBO
from pyrovae.models.likelihoods import GaussianFixed
from pyrovae.models.vae import VAE

D, LATENT, B, N, K = 10, 4, 16, 160, 3


def _pair(learn_scale: str = "vector"):
    model = VAE(D, LATENT, hidden=[12], likelihood=GaussianFixed(D, sigma=0.5))
    guide = ConstantVariance(D, LATENT, hidden=[12], posterior_scale=0.6, learn_scale=learn_scale)
    if learn_scale == "vector":
        with torch.no_grad():  # distinct scales per dimension
            guide.log_scale.copy_(torch.linspace(-1.0, 0.5, LATENT))
    return model, guide


def _same_draws(guide, x, num_particles, seed):
    """The latent draws of BILBO's particle plate: the guide's q expanded to (K, B), rsampled."""
    pyro.set_rng_seed(seed)
    return guide.posterior(x).expand((num_particles, x.shape[0])).rsample().detach()


def _long_way(model, guide, x, z):
    """Batch-averaged ELBO under N(0, diag(m + s²)) and under N(0, I), with latent draws z."""
    q = guide.posterior(x).base_dist  # Normal, batch (B, LATENT)
    m = q.loc.pow(2).mean(0)
    s = guide.scale().expand(LATENT)
    floating = Normal(torch.zeros(LATENT), (m + s.pow(2)).sqrt())
    standard = Normal(torch.zeros(LATENT), torch.ones(LATENT))
    log_lik = model.likelihood(model.decoder(z)).log_prob(x)  # (K, B)
    distortion = -log_lik.mean(0)
    elbo_floating = -kl_divergence(q, floating).sum(-1) - distortion
    elbo_standard = -kl_divergence(q, standard).sum(-1) - distortion
    return elbo_floating.mean(), elbo_standard.mean()


def test_equals_the_elbo_under_the_floating_prior(float64):
    model, guide = _pair()
    x = torch.randn(B, D)
    pyro.set_rng_seed(7)
    loss = BILBO(num_particles=K).differentiable_loss(model, guide, x, num_data=N)
    z = _same_draws(guide, x, K, seed=7)
    bilbo, elbo = _long_way(model, guide, x, z)
    torch.testing.assert_close(loss, -N * bilbo, rtol=1e-10, atol=1e-9)
    # the floating prior is the best zero-mean diagonal prior for the batch
    assert bilbo >= elbo


def test_rate_is_the_gaussian_channel_capacity(float64):
    model, guide = _pair("scalar")
    x = torch.randn(B, D)
    pyro.set_rng_seed(7)
    loss = BILBO().differentiable_loss(model, guide, x)
    z = _same_draws(guide, x, 1, seed=7)
    mu = guide.posterior(x).mean
    rate = 0.5 * torch.log1p(mu.pow(2).mean(0) / guide.scale().pow(2)).sum()
    distortion = -model.likelihood(model.decoder(z)).log_prob(x).mean()
    torch.testing.assert_close(loss / B, rate + distortion)


def test_module_form_matches_loss_and_loss_and_grads():
    model, guide = _pair()
    x = torch.randn(B, D)
    objective = BILBO(num_particles=2, max_plate_nesting=1, vectorize_particles=True)
    pyro.set_rng_seed(3)
    value = objective(model, guide)(x, num_data=N)
    pyro.set_rng_seed(3)
    assert objective.loss(model, guide, x, num_data=N) == pytest.approx(value.item(), rel=1e-6)
    pyro.set_rng_seed(3)
    assert objective.loss_and_grads(model, guide, x, num_data=N) == pytest.approx(
        value.item(), rel=1e-6
    )
    assert guide.log_scale.grad is not None and torch.isfinite(guide.log_scale.grad).all()


def test_loss_over_n_is_per_data_point():
    model, guide = _pair()
    x = torch.randn(B, D)
    pyro.set_rng_seed(1)
    full = BILBO().differentiable_loss(model, guide, x, num_data=N)
    pyro.set_rng_seed(1)
    batch = BILBO().differentiable_loss(model, guide, x)
    torch.testing.assert_close(full / N, batch / B)


def test_trains_model_guide_and_scale():
    model, guide = _pair("scalar")
    x = torch.randn(64, D)
    loss_fn = BILBO(num_particles=2)(model, guide)
    opt = torch.optim.Adam(loss_fn.parameters(), lr=0.02)
    decoder_before = [p.detach().clone() for p in model.decoder.parameters()]
    scale_before = guide.scale().item()
    losses = []
    for _ in range(40):
        loss = loss_fn(x, num_data=640)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item() / 640)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < sum(losses[:5])
    assert guide.scale().item() != scale_before
    assert any(not torch.equal(a, b) for a, b in zip(decoder_before, model.decoder.parameters()))


def test_rejects_a_guide_with_per_point_scales():
    model, _ = _pair()
    guide = DiagonalGaussian(D, LATENT, hidden=[12])
    with pytest.raises(ValueError, match="same for every data point.*constant"):
        BILBO()(model, guide)(torch.randn(B, D))


def test_rejects_a_non_gaussian_guide():
    import pyro.distributions as dist

    model, _ = _pair()

    def laplace_guide(x, num_data=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("latent", dist.Laplace(torch.zeros(x.shape[0], LATENT), 1.0).to_event(1))

    with pytest.raises(ValueError, match="Gaussian guide"):
        BILBO().differentiable_loss(model, laplace_guide, torch.randn(B, D))


def test_the_floating_prior_frozen_at_a_dataset_gives_bilbos_rate_there(float64):
    """Over the data it was fitted to, the average KL to N(0, diag(m + s²)) is exactly
    ½ Σ log(1 + m/s²), and no other zero-mean diagonal prior has a smaller one."""
    from pyrovae.infer.bilbo import floating_prior
    from pyrovae.infer.evaluation import elbo_terms
    from pyrovae.models.priors import prior_replaced

    model, guide = _pair()
    x = torch.randn(N, D)
    prior = floating_prior(guide, x, batch_size=7)  # batches do not change the fit
    with torch.no_grad():
        m = guide.posterior(x).mean.pow(2).mean(0)
        v = guide.scale().expand(LATENT).pow(2)
    capacity = 0.5 * torch.log1p(m / v).sum()
    with prior_replaced(model, prior):
        rate = elbo_terms(model, guide, x)["rate"].mean()
    torch.testing.assert_close(rate, capacity)
    assert model.prior.scale.eq(1).all()  # the model's own prior is back
    for factor in (0.9, 1.1):  # the fit is the minimum: moving the scale raises the rate
        with prior_replaced(model, floating_prior(guide, x)) as moved:
            moved.prior.scale.mul_(factor)
            assert elbo_terms(model, guide, x)["rate"].mean() > rate


def test_a_bilbo_run_reports_its_test_numbers_under_the_frozen_prior(mnist_binarized):
    from conftest import small

    from pyrovae.train import train

    data = small(mnist_binarized, 300, 100)
    config = dict(
        dataset="mnist-binarized",
        guide="constant",
        objective="bilbo",
        latent_dim=4,
        hidden=[32],
        epochs=1,
        iw_samples=5,
        batch_size=50,
    )
    summary = train(config, dataset=data, plots=False).summary
    for key in ("elbo", "rate", "distortion", "iw_log_likelihood"):
        assert math.isfinite(summary[f"test_{key}_floating_prior"]), key
    assert len(summary["floating_prior_scale"]) == 4
    # the distortion does not depend on the prior (same seeds would give the same draws)
    assert summary["test_distortion_floating_prior"] == pytest.approx(
        summary["test_distortion"], rel=0.05
    )
    plain = train({**config, "objective": "meanfield"}, dataset=data, plots=False).summary
    assert "test_elbo_floating_prior" not in plain
