"""Rate and distortion per data point: R + D = −ELBO, analytic and Monte Carlo, and the bounds."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyrovae.build import build_model
from pyrovae.config import RunConfig
from pyrovae.infer.evaluation import elbo_terms, information_bounds


def _pair(data_dim, prior="standard"):
    config = RunConfig.from_dict({"hidden": [32], "latent_dim": 3, "prior": prior})
    config = config.replace(likelihood="bernoulli")
    pyro.set_rng_seed(2)
    return build_model(config, data_dim)


@pytest.fixture(scope="module")
def x(mnist_binarized):
    return mnist_binarized.test[::50][:120]  # every class (the test split is in class order)


def test_analytic_terms_are_the_meanfield_elbo_exactly(x):
    model, guide = _pair(x.shape[1])
    pyro.set_rng_seed(4)
    terms = elbo_terms(model, guide, x, num_samples=1, analytic_kl=True)
    pyro.set_rng_seed(4)
    loss = TraceMeanField_ELBO(vectorize_particles=True, max_plate_nesting=1).loss(model, guide, x)
    assert torch.equal(terms["elbo"], -(terms["rate"] + terms["distortion"]))
    assert -terms["elbo"].sum().item() == pytest.approx(loss, rel=1e-6)
    # the rate is KL(N(μ, σ²) ‖ N(0, 1)) in closed form, per point
    q = guide.posterior(x).base_dist
    kl = 0.5 * (q.scale**2 + q.loc**2 - 1 - 2 * q.scale.log()).sum(-1)
    assert torch.allclose(terms["rate"], kl, rtol=1e-5)
    assert (terms["rate"] > 0).all() and (terms["distortion"] > 0).all()


@pytest.mark.parametrize("prior", ["standard", "mixture"])
def test_monte_carlo_terms_are_the_trace_elbo_with_the_same_noise(x, prior):
    model, guide = _pair(x.shape[1], prior)
    pyro.set_rng_seed(6)
    terms = elbo_terms(model, guide, x, num_samples=1, analytic_kl=False)
    pyro.set_rng_seed(6)
    loss = Trace_ELBO(vectorize_particles=True, max_plate_nesting=1).loss(model, guide, x)
    assert torch.equal(terms["elbo"], -(terms["rate"] + terms["distortion"]))
    assert -terms["elbo"].sum().item() == pytest.approx(loss, rel=1e-6)


def test_monte_carlo_rate_agrees_with_the_analytic_one_within_its_error(x):
    model, guide = _pair(x.shape[1])
    exact = elbo_terms(model, guide, x, analytic_kl=True, num_samples=1)["rate"]
    samples = 400
    mc = elbo_terms(model, guide, x, analytic_kl=False, num_samples=samples)["rate"]
    # per-point MC error of log q − log p with 400 samples: sd / 20; compare the batch means
    one = torch.stack([elbo_terms(model, guide, x, analytic_kl=False)["rate"] for _ in range(20)])
    se = one.std(0).mean() / math.sqrt(samples * len(x))
    assert abs(mc.mean() - exact.mean()) < 5 * se + 1e-4


def test_mixture_and_vamp_marginals_fall_back_to_a_monte_carlo_rate(x):
    """No closed-form KL to a mixture: elbo_terms (analytic_kl=True) uses MC, as meanfield does."""
    for prior in ("mixture", "vamp"):
        model, guide = _pair(x.shape[1], prior)
        pyro.set_rng_seed(8)
        asked_analytic = elbo_terms(model, guide, x, num_samples=1, analytic_kl=True)
        pyro.set_rng_seed(8)
        mc = elbo_terms(model, guide, x, num_samples=1, analytic_kl=False)
        assert torch.equal(asked_analytic["rate"], mc["rate"]), prior
        pyro.set_rng_seed(8)
        meanfield = TraceMeanField_ELBO(vectorize_particles=True, max_plate_nesting=1)
        loss = meanfield.loss(model, guide, x)
        assert loss == pytest.approx(-mc["elbo"].sum().item(), rel=1e-6), prior


def test_information_bounds_on_the_toy_model():
    from pyrovae.models.toy import ToyModel, fit_toy, toy_data

    data = toy_data(num_values=12)
    torch.manual_seed(0)
    model = fit_toy(ToyModel(data.p_x, num_latent=3), beta=0.7, steps=200)
    terms = model.terms()
    lower, upper = information_bounds(terms["entropy"], terms["rate"], terms["distortion"])
    assert lower <= terms["information"] + 1e-9 and terms["information"] <= upper + 1e-9
    assert upper - lower == pytest.approx(terms["rate"] + terms["distortion"] - data.entropy)
    # per-point tensors are averaged
    lower2, upper2 = information_bounds(2.0, torch.tensor([1.0, 3.0]), torch.tensor([0.5, 0.5]))
    assert (lower2, upper2) == (1.5, 2.0)
