"""A Bayesian decoder under Pyro's vectorised machinery: Predictive and vectorised particles.

Pyro puts a plate of draws (``Predictive(parallel=True)``) or of particles
(``vectorize_particles=True``) at dim −2 of a model with one data plate, so a
global weight site comes as ``(S, 1, out, in)`` against inputs ``(S, B, in)``;
a sequential ``Predictive`` conditions one draw at a time on ``(1, out, in)``.
Each is checked here against the same draws taken one at a time.
"""

from __future__ import annotations

import warnings

import pyro
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import Predictive, Trace_ELBO, TraceMeanField_ELBO

from pyrovae.build import build_model
from pyrovae.config import RunConfig
from pyrovae.infer import full_vb
from pyrovae.infer.iwae import IWAE_ELBO
from pyrovae.models.bayesian import batched_linear

D, B, S = 12, 5, 4


def _pair(data_dim=D, **config):
    """The pair ``pyrovae train --weights bayesian`` builds (one hidden layer of 8)."""
    values = dict(weights="bayesian", objective="meanfield", hidden=[8], latent_dim=2)
    cfg = RunConfig.from_dict({**values, "likelihood": "bernoulli", **config})
    return build_model(cfg, data_dim)


def _data(n=B, d=D):
    return torch.bernoulli(torch.full((n, d), 0.4))


def test_batched_linear_is_one_draw_at_a_time():
    x = torch.randn(S, B, 3)
    weight, bias = torch.randn(S, 1, 6, 3), torch.randn(S, 1, 6)
    y = batched_linear(x, weight, bias)  # Pyro's layout of a global site under a plate
    assert y.shape == (S, B, 6)
    for s in range(S):
        torch.testing.assert_close(y[s], F.linear(x[s], weight[s, 0], bias[s, 0]))
    # draws stacked without the data position, (S, out, in): the same numbers
    torch.testing.assert_close(batched_linear(x, weight[:, 0], bias[:, 0]), y)
    # one latent batch decoded at every draw: (B, in) against (S, 1, out, in)
    torch.testing.assert_close(
        batched_linear(x[0], weight, bias)[2], F.linear(x[0], weight[2, 0], bias[2, 0])
    )
    # a single draw padded to (1, out, in) is F.linear itself, bit for bit
    assert torch.equal(
        batched_linear(x[0], weight[1], bias[1]), F.linear(x[0], weight[1, 0], bias[1, 0])
    )
    # a weight per data point (the decoder called inside the data plate)
    per_point, per_bias = torch.randn(B, 6, 3), torch.randn(B, 6)
    y = batched_linear(x[0], per_point, per_bias)
    for i in range(B):
        torch.testing.assert_close(y[i], F.linear(x[0, i], per_point[i], per_bias[i]))


@pytest.mark.parametrize("parallel", [True, False])
def test_predictive_returns_replicated_images_and_the_draws(parallel):
    model, guide = _pair()
    x = _data()
    out = Predictive(poutine.uncondition(model), guide=guide, num_samples=S, parallel=parallel)(x)
    assert out["obs"].shape == (S, B, D)
    assert out["latent"].shape == (S, B, 2)
    assert out["decoder.0.weight"].shape == (S, 1, 8, 2)
    assert out["decoder.0.bias"].shape == (S, 1, 8)
    assert out["decoder.2.weight"].shape == (S, 1, D, 8)
    assert out["decoder.2.bias"].shape == (S, 1, D)
    assert set(out["obs"].unique().tolist()) <= {0.0, 1.0}
    w = out["decoder.2.weight"]
    assert not torch.equal(w[0], w[1])  # independent draws of θ ~ q(θ)
    # without uncondition Predictive returns the observed images
    observed = Predictive(model, guide=guide, num_samples=S, parallel=parallel)(x)["obs"]
    assert torch.equal(observed, x.expand(S, B, D))


def test_parallel_predictive_decodes_each_draw_with_its_own_weights():
    model, guide = _pair()
    x = _data()
    predictive = Predictive(poutine.uncondition(model), guide=guide, num_samples=S, parallel=True)
    trace = predictive.get_vectorized_trace(x)
    probs = trace.nodes["obs"]["fn"].mean  # (S, B, D)
    assert probs.shape == (S, B, D)
    names = guide.weights.site_names
    for s in range(S):
        draw = {n: trace.nodes[n]["value"][s, 0] for n in names}
        draw["latent"] = trace.nodes["latent"]["value"][s]
        one = poutine.trace(poutine.condition(model, data=draw)).get_trace(x)
        torch.testing.assert_close(probs[s], one.nodes["obs"]["fn"].mean)


def test_predictive_accepts_stacked_weight_draws():
    """Draws of q(θ) stacked as ``(S, out, in)`` (no data position) in posterior_samples."""
    model, guide = _pair()
    x = _data()
    thetas = full_vb.sample_weights(guide, S)
    samples = {n: torch.stack([t[n] for t in thetas]) for n in guide.weights.site_names}
    samples["latent"] = guide.posterior(x).sample((S,))
    for parallel in (True, False):
        predictive = Predictive(
            poutine.uncondition(model), posterior_samples=samples, parallel=parallel
        )
        assert predictive(x)["obs"].shape == (S, B, D)
    trace = Predictive(model, posterior_samples=samples).get_vectorized_trace(x)
    probs = trace.nodes["obs"]["fn"].mean
    for s in range(S):
        draw = {**thetas[s], "latent": samples["latent"][s]}
        one = poutine.trace(poutine.condition(model, data=draw)).get_trace(x)
        torch.testing.assert_close(probs[s], one.nodes["obs"]["fn"].mean)


def _sample_sites(trace):
    return {n: s["value"] for n, s in trace.nodes.items() if s["type"] == "sample"}


@pytest.mark.parametrize("elbo_class", [Trace_ELBO, TraceMeanField_ELBO])
def test_vectorised_particles_average_the_single_particle_losses(elbo_class):
    """K particles in one pass = the mean of K one-particle losses on the same draws (loss and
    gradients). The vectorised estimator's guide trace is recorded (``poutine.trace`` around
    the guide) and each particle of it replayed into the plain estimator."""
    model, guide = _pair()
    x, n, k = _data(6), 90, 4
    recorder = poutine.trace(guide)
    vectorised = elbo_class(num_particles=k, vectorize_particles=True, max_plate_nesting=1)
    with warnings.catch_warnings():  # the guide samples in the model's order: no mean-field
        warnings.simplefilter("error", UserWarning)  # warning from TraceMeanField_ELBO
        loss = vectorised.differentiable_loss(model, recorder, x, num_data=n)
    values = _sample_sites(recorder.trace)
    names = guide.weights.site_names
    assert values["latent"].shape == (k, 6, 2)
    assert values["decoder.2.weight"].shape == (k, 1, D, 8)
    single = elbo_class(max_plate_nesting=1)
    losses = []
    for i in range(k):
        one = poutine.trace(guide).get_trace(x, num_data=n)  # then its values replaced
        for name in names:
            one.nodes[name]["value"] = values[name][i, 0]  # (K, 1, out, in) → (out, in)
        one.nodes["latent"]["value"] = values["latent"][i]  # (K, B, dz) → (B, dz)
        losses.append(
            single.differentiable_loss(model, poutine.replay(guide, trace=one), x, num_data=n)
        )
    mean = torch.stack(losses).mean()
    torch.testing.assert_close(loss, mean, rtol=1e-6, atol=1e-3)
    params = list(guide.parameters())
    grads = torch.autograd.grad(loss, params, retain_graph=True)
    expected = torch.autograd.grad(mean, params)
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("elbo_class", [Trace_ELBO, TraceMeanField_ELBO])
def test_one_vectorised_particle_is_the_plain_estimator_bit_for_bit(elbo_class):
    """With L = 1 the particle plate changes no random number and no sum: vectorising a
    Bayesian decoder's particles keeps single-particle training numbers."""
    model, guide = _pair()
    x = _data(6)
    results = []
    for vectorize in (False, True):
        elbo = elbo_class(num_particles=1, vectorize_particles=vectorize, max_plate_nesting=1)
        pyro.set_rng_seed(5)
        loss = elbo.differentiable_loss(model, guide, x, num_data=90)
        results.append((loss, torch.autograd.grad(loss, list(guide.parameters()))))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))


@torch.no_grad()
def _average_loss(loss_fn, x, repeats=5):
    pyro.set_rng_seed(2)
    return sum(loss_fn(x).item() for _ in range(repeats)) / repeats


def test_training_with_vectorised_particles_reduces_the_loss(mnist_binarized):
    x = mnist_binarized.train[::100][:300].float()  # 300 binary images, every class
    for elbo_class in (Trace_ELBO, TraceMeanField_ELBO):
        pyro.set_rng_seed(1)
        model, guide = _pair(x.shape[1], hidden=[16])
        elbo = elbo_class(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
        loss_fn = elbo(model, guide)
        optimiser = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)

        before = _average_loss(loss_fn, x)
        for step in range(60):
            batch = x[(step * 50) % 300 :][:50]
            loss = loss_fn(batch, num_data=300)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        after = _average_loss(loss_fn, x)
        # measured: Trace 190 498 → 87 642, TraceMeanField 190 513 → 87 913 (≈ 635 → 292
        # nats per image, the weight KL included)
        assert after < 0.6 * before, (elbo_class.__name__, before, after)


def test_iwae_cannot_score_global_weights():
    """pyrovae's IWAE log-mean-exps per-data-point weights; a global site has none."""
    model, guide = _pair()
    with pytest.raises(ValueError, match="outside the plate named 'data'"):
        IWAE_ELBO(num_particles=3).differentiable_loss(model, guide, _data())
