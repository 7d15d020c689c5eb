"""Importance-weighted log-likelihood and the IWAE objective on a linear-Gaussian model.

With z ~ N(0, I) and x = W z + b + N(0, σ² I), log p(x) = log N(x; b, W Wᵀ + σ² I)
exactly, and the posterior p(z | x) is Gaussian: exact references for every estimator.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from torch import nn

from pyrovae.guides import DiagonalGaussian
from pyrovae.infer import IWAE_ELBO, elbo_terms, iw_log_likelihood
from pyrovae.models import VAE, GaussianFixed, data_plate

D, DZ, SIGMA = 6, 2, 0.5


def _linear_gaussian():
    torch.manual_seed(1)
    decoder = nn.Linear(DZ, D)
    with torch.no_grad():
        decoder.weight.normal_(0.0, 1.0)
        decoder.bias.normal_(0.0, 0.5)
    model = VAE(D, DZ, likelihood=GaussianFixed(D, sigma=SIGMA), decoder=decoder)
    W, b = decoder.weight.detach(), decoder.bias.detach()
    x = dist.MultivariateNormal(b, W @ W.T + SIGMA**2 * torch.eye(D)).sample((40,))
    return model, W, b, x


def _exact_log_px(W, b, x):
    return dist.MultivariateNormal(b, W @ W.T + SIGMA**2 * torch.eye(D)).log_prob(x)


def _exact_posterior_guide(W, b):
    """A plain Pyro guide (not a pyrovae class): the exact Gaussian posterior p(z | x)."""
    precision = torch.eye(DZ) + W.T @ W / SIGMA**2
    cov = torch.linalg.inv(precision)

    def guide(x, num_data=None):
        mean = (x - b) @ W @ cov.T / SIGMA**2
        with data_plate(x, num_data):
            pyro.sample("latent", dist.MultivariateNormal(mean, covariance_matrix=cov))

    return guide


def test_iw_estimate_is_exact_with_the_exact_posterior():
    model, W, b, x = _linear_gaussian()
    guide = _exact_posterior_guide(W, b)
    est = iw_log_likelihood(model, guide, x, num_samples=3)
    torch.testing.assert_close(est, _exact_log_px(W, b, x), atol=1e-4, rtol=1e-5)


def test_iw_estimate_converges_and_sits_between_elbo_and_exact():
    model, W, b, x = _linear_gaussian()
    guide = DiagonalGaussian(D, DZ, hidden=[8])  # an untrained, mismatched guide
    exact = _exact_log_px(W, b, x).mean()
    elbo = elbo_terms(model, guide, x, num_samples=2000)["elbo"].mean()
    gaps = []
    for k in (1, 10, 100, 5000):
        est = iw_log_likelihood(model, guide, x, num_samples=k, chunk_size=500).mean()
        gaps.append((exact - est).item())
    assert elbo < exact - 1.0  # the guide really is poor
    assert gaps[0] == pytest.approx((exact - elbo).item(), rel=0.2)
    assert all(g1 > g2 for g1, g2 in zip(gaps, gaps[1:])), gaps  # tightens with K
    assert gaps[-1] > -0.02 and gaps[-1] < 0.1 * gaps[0], gaps  # ≤ exact, close at large K


def test_chunking_does_not_change_the_estimate():
    model, W, b, x = _linear_gaussian()
    guide = DiagonalGaussian(D, DZ, hidden=[8])
    pyro.set_rng_seed(3)
    whole = iw_log_likelihood(model, guide, x, num_samples=64)
    pyro.set_rng_seed(3)
    batched = iw_log_likelihood(model, guide, x, num_samples=64, batch_size=40)
    torch.testing.assert_close(whole, batched)
    pyro.set_rng_seed(3)
    chunked = iw_log_likelihood(model, guide, x, num_samples=64, chunk_size=16)
    torch.testing.assert_close(whole, chunked)


def test_iwae_with_one_particle_is_the_elbo():
    model, W, b, x = _linear_gaussian()
    guide = DiagonalGaussian(D, DZ, hidden=[8])
    pyro.set_rng_seed(5)
    iwae = IWAE_ELBO(num_particles=1).differentiable_loss(model, guide, x, num_data=400)
    pyro.set_rng_seed(5)
    trace = Trace_ELBO().differentiable_loss(model, guide, x, num_data=400)
    torch.testing.assert_close(iwae, trace)


def test_iwae_is_per_data_point_and_scaled_after_the_log_mean_exp():
    model, W, b, x = _linear_gaussian()
    guide = _exact_posterior_guide(W, b)
    # with the exact posterior every weight equals p(x), so the bound is exact for any K
    loss = IWAE_ELBO(num_particles=7).differentiable_loss(model, guide, x, num_data=400)
    expected = -(400 / 40) * _exact_log_px(W, b, x).sum()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-3)


def test_iwae_bound_increases_with_k():
    model, W, b, x = _linear_gaussian()
    guide = DiagonalGaussian(D, DZ, hidden=[8])
    losses = []
    for k in (1, 8, 64):
        vals = [IWAE_ELBO(num_particles=k).loss(model, guide, x) for _ in range(20)]
        losses.append(sum(vals) / len(vals))
    assert losses[0] > losses[1] > losses[2]
    assert losses[2] > -_exact_log_px(W, b, x).sum().item() - 1.0


def test_site_outside_the_data_plate_is_refused():
    def model(x):
        s = pyro.sample("s", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Normal(s, 1.0), obs=x)

    def guide(x):
        pyro.sample("s", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="outside the plate named 'data'"):
        iw_log_likelihood(model, guide, torch.zeros(3), num_samples=2)


def test_default_passes_are_bounded_and_equal_the_explicit_ones():
    """Without chunk or batch arguments each IW pass holds at most PASS_BYTES of data-sized
    values (all K × N in one pass was 1.3-1.5x slower and unbounded in memory), in equal
    chunks; the same as passing the sizes pass_sizes chose."""
    from pyrovae.infer.evaluation import PASS_BYTES, chunked_log_mean_exp, pass_sizes

    calls = []

    def log_weights(xb, k):
        calls.append((k, xb.shape[0]))
        return torch.randn(k, xb.shape[0], generator=gen)

    x = torch.zeros(120, 784)
    gen = torch.Generator().manual_seed(0)
    default = chunked_log_mean_exp(log_weights, x, 1000)
    assert calls and all(k * n * 784 * 4 <= PASS_BYTES for k, n in calls)
    assert sum(k * n for k, n in calls) == 1000 * 120 and len({k for k, _ in calls}) == 1
    chunk, batch = pass_sizes(1000, num_points=120, point_bytes=784 * 4)
    gen = torch.Generator().manual_seed(0)
    explicit = chunked_log_mean_exp(log_weights, x, 1000, chunk_size=chunk, batch_size=batch)
    torch.testing.assert_close(default, explicit, rtol=0, atol=0)
