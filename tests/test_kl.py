"""The analytic KL of the diagonal guide against Monte Carlo, and rate + distortion = −ELBO."""

from __future__ import annotations

import torch
from torch.distributions import kl_divergence

from pyrovae.guides import DiagonalGaussian
from pyrovae.infer import elbo_terms
from pyrovae.models import VAE, GaussianFixed
from pyrovae.models.priors import StandardNormal


def _posterior_batch(latent_dim=4, n=8):
    guide = DiagonalGaussian(12, latent_dim, hidden=[16])
    with torch.no_grad():  # spread the posteriors so the KL is far from 0
        guide.encoder[-1].weight.mul_(20.0)
        guide.encoder[-1].bias.normal_(0.0, 1.0)
    x = torch.rand(n, 12)
    return guide, guide.posterior(x)


def test_analytic_kl_matches_monte_carlo():
    guide, q = _posterior_batch()
    p = StandardNormal(4)()
    analytic = kl_divergence(q, p)
    z = q.sample((200_000,))
    log_ratio = q.log_prob(z) - p.log_prob(z)
    mc, se = log_ratio.mean(0), log_ratio.std(0) / 200_000**0.5
    assert analytic.shape == (8,)
    assert (analytic > 0.1).all()
    assert ((mc - analytic).abs() < 5 * se + 1e-4).all(), (mc, analytic, se)


def test_analytic_kl_matches_closed_form():
    _, q = _posterior_batch()
    mu, s = q.base_dist.loc, q.base_dist.scale
    by_hand = 0.5 * (mu**2 + s**2 - 1 - 2 * s.log()).sum(-1)
    torch.testing.assert_close(kl_divergence(q, StandardNormal(4)()), by_hand)


def test_rate_plus_distortion_is_minus_elbo_and_estimators_agree():
    model = VAE(12, 3, hidden=[16], likelihood=GaussianFixed(12, sigma=0.5))
    guide = DiagonalGaussian(12, 3, hidden=[16])
    x = torch.rand(10, 12)
    analytic = elbo_terms(model, guide, x, num_samples=20_000, analytic_kl=True)
    mc = elbo_terms(model, guide, x, num_samples=20_000, analytic_kl=False)
    for terms in (analytic, mc):
        torch.testing.assert_close(terms["elbo"], -(terms["rate"] + terms["distortion"]))
    # L^A and L^B estimate the same ELBO: the MC rate converges to the analytic one
    torch.testing.assert_close(mc["rate"], analytic["rate"], atol=0.05, rtol=0.02)
    torch.testing.assert_close(mc["elbo"], analytic["elbo"], atol=0.1, rtol=0.01)
