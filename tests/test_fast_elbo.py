"""The fast path equals the reference Pyro estimators, value and gradients, on fixed noise."""

from __future__ import annotations

import pyro
import pyro.poutine as poutine
import pytest
import torch
from heads import every_head

from pyrovae import registry
from pyrovae.guides import ConstantVariance, DeterministicGuide, DiagonalGaussian
from pyrovae.infer.fast_elbo import REFERENCES, FastELBO, fast_log_weights, supports_fast_path
from pyrovae.infer.importance import log_importance_weights
from pyrovae.infer.log_weights import per_point_log_weights
from pyrovae.models import Bernoulli
from pyrovae.models.vae import VAE

D, DZ = 12, 3

LIKELIHOODS = every_head(D)
GUIDES = {
    "diagonal": lambda: DiagonalGaussian(D, DZ, hidden=[8]),
    "constant": lambda: ConstantVariance(D, DZ, hidden=[8], learn_scale="vector"),
    "deterministic": lambda: DeterministicGuide(D, DZ, hidden=[8]),
}


def test_every_registered_likelihood_and_guide_is_covered():
    assert set(LIKELIHOODS) == set(registry.LIKELIHOODS.names())
    assert set(GUIDES) == set(registry.GUIDES.names())


def _loss_and_grads(elbo, model, guide, x):
    pyro.set_rng_seed(11)
    loss = elbo.differentiable_loss(model, guide, x, num_data=80)
    params = [*model.parameters(), *guide.parameters()]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@pytest.mark.parametrize("kind", sorted(REFERENCES))
@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
@pytest.mark.parametrize("guide_name", sorted(GUIDES))
def test_fast_path_equals_reference(kind, likelihood, guide_name):
    torch.manual_seed(0)
    # float64, so that the two summation orders agree to ~1e-12: the same mathematics
    model = VAE(D, DZ, hidden=[8], likelihood=LIKELIHOODS[likelihood]()).double()
    guide = GUIDES[guide_name]().double()
    x = torch.bernoulli(torch.full((20, D), 0.4, dtype=torch.float64))
    assert supports_fast_path(model, guide)
    particles = 3
    fast, ref = (
        FastELBO(kind, num_particles=particles),
        REFERENCES[kind](num_particles=particles, vectorize_particles=True, max_plate_nesting=1),
    )
    loss_f, grads_f = _loss_and_grads(fast, model, guide, x)
    loss_r, grads_r = _loss_and_grads(ref, model, guide, x)
    torch.testing.assert_close(loss_f, loss_r, rtol=1e-10, atol=1e-8)
    for gf, gr in zip(grads_f, grads_r):
        torch.testing.assert_close(gf, gr, rtol=1e-9, atol=1e-9)


def test_other_models_fall_back_to_the_reference():
    model = VAE(D, DZ, hidden=[8])
    guide = DiagonalGaussian(D, DZ, hidden=[8])
    x = torch.bernoulli(torch.full((20, D), 0.4))
    scaled = poutine.scale(model, scale=0.5)  # a handler: not the plain VAE any more
    assert not supports_fast_path(scaled, guide)
    fast = FastELBO("meanfield")
    pyro.set_rng_seed(1)
    a = fast.loss(scaled, guide, x)
    pyro.set_rng_seed(1)
    b = REFERENCES["meanfield"](max_plate_nesting=1).loss(scaled, guide, x)
    assert a == pytest.approx(b)


@pytest.mark.parametrize("kind", ["trace", "meanfield"])
@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0])
def test_fast_beta_equals_scaled_reference(kind, beta):
    from pyrovae.infer.beta import BetaScaled

    torch.manual_seed(0)
    model = VAE(D, DZ, hidden=[8], likelihood=Bernoulli(D))
    guide = GUIDES["diagonal"]()
    x = torch.bernoulli(torch.full((20, D), 0.4))
    fast = BetaScaled(FastELBO(kind, num_particles=2), beta=beta)
    ref = BetaScaled(
        REFERENCES[kind](num_particles=2, vectorize_particles=True, max_plate_nesting=1), beta=beta
    )
    loss_f, grads_f = _loss_and_grads(fast, model, guide, x)
    loss_r, grads_r = _loss_and_grads(ref, model, guide, x)
    torch.testing.assert_close(loss_f, loss_r, rtol=1e-5, atol=1e-4)
    for gf, gr in zip(grads_f, grads_r):
        torch.testing.assert_close(gf, gr, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
@pytest.mark.parametrize("guide_name", sorted(GUIDES))
def test_fast_importance_weights_equal_the_traced_ones(likelihood, guide_name):
    torch.manual_seed(0)
    model = VAE(D, DZ, hidden=[8], likelihood=LIKELIHOODS[likelihood]()).double()
    guide = GUIDES[guide_name]().double()
    x = torch.bernoulli(torch.full((9, D), 0.4, dtype=torch.float64))
    pyro.set_rng_seed(3)
    traced, _ = log_importance_weights(model, guide, x, num_samples=17)
    pyro.set_rng_seed(3)
    fast = fast_log_weights(model, guide, x, 17)
    assert fast.shape == (17, 9)
    torch.testing.assert_close(fast, traced, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
@pytest.mark.parametrize("guide_name", ["constant", "diagonal"])
def test_the_dispatcher_gives_the_same_log_weights_on_either_path(likelihood, guide_name):
    """per_point_log_weights: trace-free for the VAE itself, Pyro traces for the same model
    behind a plain function; bit for bit the same weights on the same random numbers."""
    torch.manual_seed(0)
    model = VAE(D, DZ, hidden=[8], likelihood=LIKELIHOODS[likelihood]())
    guide = GUIDES[guide_name]()
    x = torch.bernoulli(torch.full((9, D), 0.4))

    def wrapped(x, num_data=None):  # not a VAE instance: the traced path
        return model(x, num_data)

    assert supports_fast_path(model, guide) and not supports_fast_path(wrapped, guide)
    pyro.set_rng_seed(3)
    fast = per_point_log_weights(model, guide, x, 17)
    pyro.set_rng_seed(3)
    traced = per_point_log_weights(wrapped, guide, x, 17)
    pyro.set_rng_seed(3)
    reference, _ = log_importance_weights(model, guide, x, num_samples=17)
    assert fast.shape == traced.shape == (17, 9)
    torch.testing.assert_close(fast, traced, rtol=0, atol=0)
    torch.testing.assert_close(traced, reference, rtol=0, atol=0)
