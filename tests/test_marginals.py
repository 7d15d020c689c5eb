"""Learned marginals m(z): normalised densities, gradients, and their place in build and train."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovae.build import build_model
from pyrovae.config import RunConfig
from pyrovae.guides.diagonal import DiagonalGaussian
from pyrovae.models.marginals import MixtureOfGaussians, VampPrior


def _mass_on_grid(distribution, half_width=12.0, points=481) -> float:
    """∫ m(z) dz over a 2-D square by the midpoint rule."""
    axis = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    step = (axis[1] - axis[0]).item()
    z = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    return (distribution.log_prob(z.float()).double().exp().sum() * step**2).item()


def test_mixture_prior_is_a_normalised_density_with_positive_scales():
    prior = MixtureOfGaussians(2, num_components=5)
    with torch.no_grad():  # spread the components and weights so the check is not trivial
        prior.raw_scales.uniform_(-3, 1)
        prior.logits.normal_()
    m = prior()
    assert m.batch_shape == () and m.event_shape == (2,)
    assert (prior.scales > 0).all()
    assert _mass_on_grid(m) == pytest.approx(1.0, abs=2e-3)
    assert m.sample((7,)).shape == (7, 2)


def test_vamp_prior_is_a_normalised_density_and_its_pseudo_inputs_learn():
    guide = DiagonalGaussian(data_dim=6, latent_dim=2, hidden=[8])
    prior = VampPrior(2, guide, data_dim=6, num_components=4)
    m = prior()
    assert m.batch_shape == () and m.event_shape == (2,)
    assert _mass_on_grid(m) == pytest.approx(1.0, abs=2e-3)
    # it is the average of the guide's posteriors at the pseudo-inputs
    z = torch.randn(3, 2)
    by_hand = guide.posterior(prior.pseudo_inputs).log_prob(z[:, None]).logsumexp(-1)
    assert torch.allclose(m.log_prob(z), by_hand - torch.log(torch.tensor(4.0)), atol=1e-5)
    # the guide is used, not owned: its weights stay out of the prior's parameters
    assert [n for n, _ in prior.named_parameters()] == ["pseudo_inputs"]


@pytest.mark.parametrize("prior_name", ["mixture", "vamp"])
def test_marginal_parameters_receive_gradients_through_the_elbo(mnist_binarized, prior_name):
    config = RunConfig.from_dict(
        {"hidden": [32], "latent_dim": 2, "prior": prior_name, "prior_components": 3}
    )
    config = config.replace(likelihood="bernoulli")
    model, guide = build_model(config, mnist_binarized.data_dim)
    assert model.prior.num_components == 3
    loss = Trace_ELBO(vectorize_particles=True, max_plate_nesting=1)(model, guide)
    loss(mnist_binarized.train[:32]).backward()
    prior_params = dict(model.prior.named_parameters())
    assert prior_params and all(
        p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
        for p in prior_params.values()
    )
    if prior_name == "vamp":
        assert model.prior._posterior.__self__ is guide
        assert not any(k.startswith("prior.encoder") for k in model.state_dict())


def test_vamp_prior_needs_a_guide_with_a_posterior():
    with pytest.raises(ValueError, match="posterior"):
        VampPrior(2, torch.nn.Linear(3, 4), data_dim=3)
    guide = DiagonalGaussian(data_dim=6, latent_dim=3, hidden=[8])
    with pytest.raises(ValueError, match="event shape"):
        VampPrior(2, guide, data_dim=6)


@pytest.mark.parametrize("objective", ["meanfield", "iwae"])
def test_vamp_run_trains_and_loads_back(mnist_binarized, tmp_path, objective):
    from conftest import small

    from pyrovae.infer.evaluation import elbo_terms
    from pyrovae.run import load_run
    from pyrovae.train import train

    data = small(mnist_binarized, 400, 100)
    cfg = dict(
        dataset="mnist-binarized",
        prior="vamp",
        prior_components=5,
        objective=objective,
        particles=2,
        hidden=[32],
        latent_dim=3,
        epochs=1,
        iw_samples=5,
    )
    result = train(cfg, tmp_path / "run", dataset=data, plots=False)
    row = result.metrics[-1]
    assert all(
        torch.isfinite(torch.tensor(row[k])) for k in ("test_elbo", "test_rate", "test_distortion")
    )
    _, model, guide, _ = load_run(tmp_path / "run")
    pyro.set_rng_seed(0)
    again = elbo_terms(model, guide, data.test, analytic_kl=False)
    pyro.set_rng_seed(0)
    before = elbo_terms(result.model.eval(), result.guide.eval(), data.test, analytic_kl=False)
    assert torch.allclose(again["elbo"], before["elbo"])
