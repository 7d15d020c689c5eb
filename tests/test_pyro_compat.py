"""pyrovae's model and guide are plain Pyro code: Pyro's own tools apply unchanged."""

from __future__ import annotations

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import Predictive, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO

from pyrovae.guides import DiagonalGaussian
from pyrovae.models import VAE, Bernoulli


def _pair():
    return VAE(20, 3, hidden=[8], likelihood=Bernoulli(20)), DiagonalGaussian(20, 3, hidden=[8])


def test_trace_has_named_sites_in_the_data_plate():
    model, guide = _pair()
    x = torch.bernoulli(torch.full((5, 20), 0.3))
    tr = poutine.trace(model).get_trace(x, num_data=50)
    assert tr.nodes["latent"]["value"].shape == (5, 3)
    assert tr.nodes["obs"]["is_observed"]
    for site in ("latent", "obs"):
        frames = tr.nodes[site]["cond_indep_stack"]
        assert [f.name for f in frames] == ["data"]
        assert tr.nodes[site]["scale"] == 10.0  # N / B


def test_predictive_reconstructs_through_the_guide():
    model, guide = _pair()
    x = torch.bernoulli(torch.full((5, 20), 0.3))
    pred = Predictive(poutine.uncondition(model), guide=guide, num_samples=4)
    out = pred(x)
    assert out["obs"].shape == (4, 5, 20)
    assert set(out["obs"].unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(out["obs"][0], x)  # sampled, not the observed values


def test_pyro_elbos_accept_the_pair():
    model, guide = _pair()
    x = torch.bernoulli(torch.full((5, 20), 0.3))
    for elbo in (Trace_ELBO(), TraceMeanField_ELBO(), RenyiELBO(alpha=0.5, num_particles=2)):
        loss = elbo.loss(model, guide, x)
        assert torch.isfinite(torch.tensor(loss))


def test_elbo_module_trains_with_a_torch_optimiser():
    model, guide = _pair()
    x = torch.bernoulli(torch.full((64, 20), 0.2))
    loss_fn = Trace_ELBO()(model, guide)
    opt = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    before = loss_fn(x).item()
    for _ in range(100):
        loss = loss_fn(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    pyro.set_rng_seed(0)
    after = sum(loss_fn(x).item() for _ in range(10)) / 10
    assert after < before - 100
