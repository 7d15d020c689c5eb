"""Bounded Gaussian likelihoods: FlooredNormal (Mattei & Frellsen 2018) and BAGGINS (Fyffe 2019)."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro.infer import TraceMeanField_ELBO

from pyrovae.build import build_guide, build_likelihood
from pyrovae.config import RunConfig
from pyrovae.distributions import BagginsNormal, FlooredNormal
from pyrovae.guides.constant import ConstantVariance
from pyrovae.guides.diagonal import DiagonalGaussian
from pyrovae.infer.evaluation import elbo_terms
from pyrovae.models.gaussian_heads import Baggins, BoundedGaussian, GaussianShared
from pyrovae.models.likelihoods import GaussianLearned
from pyrovae.models.vae import VAE
from pyrovae.nets import mlp

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
D = 8
SETTINGS = settings(max_examples=40, deadline=None)


def _tensors(shape, lo, hi):
    n = math.prod(shape)
    floats = st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=32)
    return st.lists(floats, min_size=n, max_size=n).map(lambda v: torch.tensor(v).reshape(shape))


# -- FlooredNormal -----------------------------------------------------------------------------


@SETTINGS
@given(
    loc=_tensors((5,), -10, 10),
    scale=_tensors((5,), 0, 10),
    floor=st.floats(1e-3, 1.0),
    x=_tensors((5,), -20, 20),
)
def test_floored_normal_never_exceeds_its_density_at_the_mean_with_sigma_floor(
    loc, scale, floor, x
):
    d = FlooredNormal(loc, scale, floor)
    at_mean_with_floor = FlooredNormal(loc, torch.zeros(5), floor).log_prob(loc)
    torch.testing.assert_close(
        at_mean_with_floor, torch.full((5,), -math.log(floor) - HALF_LOG_2PI)
    )
    log_p = d.log_prob(x)
    assert torch.isfinite(log_p).all()
    assert (log_p <= at_mean_with_floor + 1e-5).all()
    assert (log_p <= d.log_prob_bound() + 1e-5).all()


def test_floored_normal_sigma_is_smooth_and_at_least_the_floor():
    scale = torch.tensor([0.0, 0.01, 0.1, 3.0], requires_grad=True)
    d = FlooredNormal(torch.zeros(4), scale, 0.1)
    torch.testing.assert_close(d.stddev, torch.hypot(scale, torch.tensor(0.1)))
    assert (d.stddev >= 0.1).all()
    (grad,) = torch.autograd.grad(d.log_prob(torch.ones(4)).sum(), scale)
    assert torch.isfinite(grad).all() and (grad[1:] != 0).all()


def test_floored_normal_rsample_is_reparameterised():
    loc = torch.zeros(3, requires_grad=True)
    d = FlooredNormal(loc, torch.ones(3), 0.5)
    sample = d.rsample((7,))
    assert sample.shape == (7, 3)
    sample.sum().backward()
    torch.testing.assert_close(loc.grad, torch.full((3,), 7.0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale": -torch.ones(3)}, r"parameter scale .*GreaterThanEq"),
        ({"floor": 0.0}, r"parameter floor .*GreaterThan\(lower_bound=0"),
        ({"floor": -0.1}, r"parameter floor .*GreaterThan\(lower_bound=0"),
        ({"scale": torch.ones(4)}, r"do not broadcast: loc \(3,\), scale \(4,\)"),
    ],
)
def test_floored_normal_validation_rejects_bad_parameters(kwargs, match):
    params = {"loc": torch.zeros(3), "scale": torch.ones(3), "floor": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        FlooredNormal(**params, validate_args=True)


def test_floored_normal_log_prob_validates_the_value_shape():
    d = FlooredNormal(torch.zeros(3), torch.ones(3), 0.1, validate_args=True)
    with pytest.raises(ValueError, match="broadcastable|shape"):
        d.log_prob(torch.zeros(4))


def test_floored_normal_expand_to_event_and_mask():
    d = FlooredNormal(torch.zeros(3), torch.ones(3), 0.1)
    x = torch.randn(2, 3)
    expanded = d.expand((2, 3))
    assert expanded.batch_shape == (2, 3)
    torch.testing.assert_close(expanded.log_prob(x), d.log_prob(x))
    event = d.expand((2, 3)).to_event(1)
    assert event.batch_shape == (2,) and event.event_shape == (3,)
    torch.testing.assert_close(event.log_prob(x), d.log_prob(x).sum(-1))
    masked = d.mask(torch.tensor([True, False, True]))
    torch.testing.assert_close(masked.log_prob(x)[:, 1], torch.zeros(2))
    torch.testing.assert_close(masked.log_prob(x)[:, 0], d.log_prob(x)[:, 0])


# -- unbounded versus bounded heads ------------------------------------------------------------


def test_gaussian_learned_is_unbounded_and_bounded_gaussian_is_not():
    x = torch.rand(1, D)
    floor = 0.01
    bound = D * (-math.log(floor) - HALF_LOG_2PI)
    learned, bounded = GaussianLearned(D), BoundedGaussian(D, floor=floor)
    learned_lp, bounded_lp = [], []
    for t in range(1, 40):  # mean = x exactly, decoder variance driven towards zero
        raw = torch.full((1, D), -2.0 * t)
        learned_lp.append(learned(torch.cat([x, raw], -1)).log_prob(x).item())
        bounded_lp.append(bounded(torch.cat([x, raw], -1)).log_prob(x).item())
    assert all(b > a for a, b in zip(learned_lp, learned_lp[1:]))  # grows without limit
    assert learned_lp[-1] > 10 * bound
    assert max(bounded_lp) <= bound + 1e-3
    assert bounded_lp[-1] == pytest.approx(bound, rel=1e-4)


@SETTINGS
@given(h=_tensors((3, 2 * D), -30, 30), floor=st.floats(1e-3, 0.5))
def test_bounded_gaussian_head_respects_its_bound(h, floor):
    head = BoundedGaussian(D, floor=floor)
    assert head.out_features == 2 * D
    x = head.mean(h)  # the best case for the likelihood: zero residual
    log_p = head(h).log_prob(x)
    assert torch.isfinite(log_p).all()
    assert (log_p <= D * (-math.log(floor) - HALF_LOG_2PI) + 1e-3).all()


def test_gaussian_shared_learns_one_sigma_whose_optimum_is_the_residual_mean_square():
    head = GaussianShared(D, sigma=0.3)
    assert head.out_features == D
    torch.testing.assert_close(head.sigma, torch.tensor(0.3))
    h, x = torch.randn(20, D), torch.randn(20, D)
    with torch.no_grad():
        head.log_sigma.fill_(0.5 * math.log((x - h).pow(2).mean().item()))
    head(h).log_prob(x).sum().backward()
    assert abs(head.log_sigma.grad.item()) < 1e-3


# -- BAGGINS ---------------------------------------------------------------------------------


def _decoder_and_batch(batch: int = 12):
    decoder = mlp(3, [6], D, "tanh")
    return decoder, torch.randn(batch, 3), torch.rand(batch, D)


@pytest.mark.parametrize("c", [0.01, 100.0])
@pytest.mark.parametrize("floor_mode", ["max", "softplus"])
@pytest.mark.parametrize("info_max", [0.05, 4.0])  # floored regime, unfloored regime
def test_baggins_rescaling_shifts_log_likelihood_by_d_log_c_and_keeps_gradients(
    float64, c, floor_mode, info_max
):
    decoder, z, x = _decoder_and_batch()
    head = Baggins(D, info_max=info_max, floor_mode=floor_mode)

    def log_lik_and_grads(scale):
        head.data_scale.fill_(scale)
        decoder.zero_grad()
        log_p = head(decoder(z)).log_prob(scale * x)
        log_p.sum().backward()
        return log_p.detach(), [p.grad.clone() for p in decoder.parameters()]

    base, base_grads = log_lik_and_grads(1.0)
    scaled, scaled_grads = log_lik_and_grads(c)
    torch.testing.assert_close(scaled, base - D * math.log(c), rtol=1e-12, atol=1e-9)
    for g, g_c in zip(base_grads, scaled_grads):
        torch.testing.assert_close(g_c, g, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("floor_mode", ["max", "softplus"])
def test_baggins_never_exceeds_its_bound_as_the_residual_vanishes(floor_mode):
    x = torch.rand(16, D)
    noise = torch.randn(16, D)
    bound = None
    previous = -math.inf
    for t in [1.0, 1e-1, 1e-2, 1e-3, 1e-5, 0.0]:
        d = BagginsNormal(x + t * noise, info_max=3.0, floor_mode=floor_mode)
        log_p, bound = d.log_prob(x), d.log_prob_bound(x)
        assert torch.isfinite(log_p).all()
        assert (log_p <= bound + 1e-4).all()
        assert log_p.sum() >= previous - 1e-3
        previous = log_p.sum().item()
    signal = x.var(0, unbiased=False).mean()
    expected = -0.5 * D * torch.log(2 * math.pi * signal / math.expm1(6.0))
    torch.testing.assert_close(bound.squeeze(), expected)
    if floor_mode == "max":  # zero residual reaches the bound exactly
        torch.testing.assert_close(log_p, bound.expand_as(log_p))


def test_baggins_variance_is_the_batch_mean_square_above_the_floor():
    x, loc = torch.rand(30, D), torch.rand(30, D)
    d = BagginsNormal(loc, info_max=5.0)
    torch.testing.assert_close(d.aggregate_variance(x).squeeze(), (x - loc).pow(2).mean())
    expected = torch.distributions.Normal(loc, (x - loc).pow(2).mean().sqrt()).log_prob(x).sum(-1)
    torch.testing.assert_close(d.log_prob(x), expected)


def test_baggins_one_variance_per_particle():
    x, loc = torch.rand(10, D), torch.rand(2, 10, D)
    log_p = BagginsNormal(loc, info_max=5.0).log_prob(x)
    assert log_p.shape == (2, 10)
    for k in range(2):
        torch.testing.assert_close(log_p[k], BagginsNormal(loc[k], info_max=5.0).log_prob(x))


def test_baggins_frozen_variance_scores_points_independently_of_the_batch():
    x, loc = torch.rand(100, D), torch.rand(100, D)
    frozen = BagginsNormal(loc, 3.0, frozen_variance=0.05).log_prob(x)
    frozen_small = BagginsNormal(loc[:10], 3.0, frozen_variance=0.05).log_prob(x[:10])
    torch.testing.assert_close(frozen_small, frozen[:10])
    expected = torch.distributions.Normal(loc, math.sqrt(0.05)).log_prob(x).sum(-1)
    torch.testing.assert_close(frozen, expected)
    # the batch aggregate, by contrast, depends on the company a point keeps
    aggregate_small = BagginsNormal(loc[:10], 3.0).log_prob(x[:10])
    aggregate = BagginsNormal(loc, 3.0).log_prob(x)
    assert not torch.allclose(aggregate_small, aggregate[:10])


def _baggins_vae(info_max: float = 3.0, posterior_scale: float = 0.5, learn_scale: str = "none"):
    head = Baggins(D, info_max=info_max)
    model = VAE(D, 2, hidden=[10], likelihood=head)
    guide = ConstantVariance(
        D, 2, hidden=[10], posterior_scale=posterior_scale, learn_scale=learn_scale
    )
    return model, guide, head


def test_freeze_sets_the_training_set_aggregate_and_evaluation_ignores_batch_size():
    x_train, x_test = torch.rand(90, D), torch.rand(40, D)
    model, guide, head = _baggins_vae(posterior_scale=1e-6)
    assert not head.is_frozen
    var = head.freeze(model, guide, x_train, batch_size=7)
    assert head.is_frozen and head.frozen_variance.item() == pytest.approx(var)
    recon = model.decode(guide.posterior(x_train).mean)
    assert var == pytest.approx((x_train - recon).pow(2).mean().item(), rel=1e-4)
    assert head.freeze(model, guide, x_train, batch_size=1000) == pytest.approx(var, rel=1e-4)

    model.eval()
    small = elbo_terms(model, guide, x_test, batch_size=5)["distortion"]
    large = elbo_terms(model, guide, x_test, batch_size=40)["distortion"]
    torch.testing.assert_close(small, large, rtol=1e-4, atol=1e-4)
    model.train()  # training mode scores each batch by its own aggregate
    small = elbo_terms(model, guide, x_test, batch_size=5)["distortion"]
    assert not torch.allclose(small, large, rtol=1e-3)


def test_sampling_needs_a_frozen_variance():
    loc = torch.rand(4, D, requires_grad=True)
    batch = BagginsNormal(loc, 3.0)
    assert not batch.has_rsample  # what Pyro reads before it samples a site
    for draw in (batch.sample, batch.rsample, batch):  # batch(): pyro.sample's call
        with pytest.raises(NotImplementedError, match="frozen_variance"):
            draw()
    with pytest.raises(NotImplementedError, match="frozen_variance"):
        _ = batch.variance
    frozen = BagginsNormal(loc, 3.0, frozen_variance=0.1)
    assert frozen.has_rsample and frozen.expand((3, 4)).has_rsample
    assert frozen.sample((2,)).shape == (2, 4, D)
    draws = frozen.rsample((2,))  # reparameterised: gradients reach loc
    draws.sum().backward()
    torch.testing.assert_close(loc.grad, torch.full((4, D), 2.0))
    assert frozen.mask(torch.tensor([True, False, True, True])).sample().shape == (4, D)


def test_whole_baggins_runs_are_invariant_to_the_data_scale(float64):
    x = torch.rand(32, D)
    c = 100.0
    runs = []
    for data in (x, c * x):
        pyro.set_rng_seed(0)
        model, guide, head = _baggins_vae(learn_scale="scalar")
        assert head.fit_data_scale(data, guide) == pytest.approx(data.abs().max().item())
        loss_fn = TraceMeanField_ELBO(vectorize_particles=True, max_plate_nesting=1)(model, guide)
        opt = torch.optim.Adam(loss_fn.parameters(), lr=0.01)
        losses = []
        for _ in range(5):
            loss = loss_fn(data, num_data=320)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        runs.append((losses, [p.detach().clone() for p in loss_fn.parameters()]))
    (losses, params), (losses_c, params_c) = runs
    shift = 320 * D * math.log(c)
    assert losses_c == pytest.approx([v + shift for v in losses], rel=1e-9)
    for p, p_c in zip(params, params_c):
        torch.testing.assert_close(p_c, p, rtol=1e-7, atol=1e-9)


def test_fit_data_scale_needs_a_guide_that_normalises_its_input():
    head = Baggins(D)

    class PlainGuide(torch.nn.Module):  # a guide that cannot normalise its input
        pass

    with pytest.raises(ValueError, match="input_scale"):
        head.fit_data_scale(torch.rand(5, D), PlainGuide())
    guide = DiagonalGaussian(D, 2)
    head.fit_data_scale(3.0 * torch.rand(50, D), guide)
    assert guide.input_scale.item() == pytest.approx(head.data_scale.item())
    assert head.data_scale.item() > 1.0
    with pytest.raises(ValueError, match="largest magnitude"):
        head.fit_data_scale(torch.zeros(5, D))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"info_max": 0.0}, "info_max"),
        ({"info_max": -1.0}, "info_max"),
        ({"floor_mode": "min"}, "floor_mode"),
        ({"frozen_variance": -1.0}, "frozen_variance"),
        ({"frozen_variance": torch.ones(2)}, "frozen_variance must be a scalar"),
    ],
)
def test_baggins_validation_rejects_bad_parameters(kwargs, match):
    params = {"loc": torch.zeros(5, D), "info_max": 3.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        BagginsNormal(**params, validate_args=True)


def test_baggins_needs_two_points_and_a_matching_value_shape():
    with pytest.raises(ValueError, match="at least two points"):
        BagginsNormal(torch.zeros(1, D), 3.0).log_prob(torch.rand(1, D))
    d = BagginsNormal(torch.zeros(5, D), 3.0, validate_args=True)
    with pytest.raises(ValueError, match="size of value|broadcastable|shape"):
        d.log_prob(torch.rand(5, D + 1))


def test_baggins_expand_to_event_and_mask():
    x, loc = torch.rand(6, D), torch.rand(6, D)
    d = BagginsNormal(loc, 3.0)
    expanded = d.expand((3, 6))
    assert expanded.batch_shape == (3, 6) and expanded.event_shape == (D,)
    torch.testing.assert_close(expanded.log_prob(x), d.log_prob(x).expand(3, 6))
    batch_total = d.to_event(1)
    assert batch_total.event_shape == (6, D)
    torch.testing.assert_close(batch_total.log_prob(x), d.log_prob(x).sum())
    mask = torch.tensor([True, False] * 3)
    masked = d.mask(mask).log_prob(x)
    torch.testing.assert_close(masked[~mask], torch.zeros(3))
    # the masked rows are out of the aggregate too: the kept rows score as a batch of three
    torch.testing.assert_close(masked[mask], BagginsNormal(loc[mask], 3.0).log_prob(x[mask]))


@SETTINGS
@given(
    x=_tensors((4, 3), -5, 5),
    loc=_tensors((4, 3), -5, 5),
    info_max=st.floats(0.01, 8.0),
    floor_mode=st.sampled_from(["max", "softplus"]),
)
def test_baggins_log_prob_is_finite_and_bounded_on_its_support(x, loc, info_max, floor_mode):
    x = x + torch.arange(4.0).unsqueeze(-1)  # a batch with some spread
    d = BagginsNormal(loc, info_max, floor_mode=floor_mode, validate_args=True)
    log_p = d.log_prob(x)
    assert log_p.shape == (4,) and torch.isfinite(log_p).all()
    assert (log_p <= d.log_prob_bound(x) + 1e-4).all()


# -- construction from a run configuration ---------------------------------------------------


def test_parts_are_built_with_the_options_they_declare():
    base = RunConfig(
        floor=0.02,
        info_max=2.5,
        floor_mode="softplus",
        posterior_scale=0.4,
        learn_scale="vector",
        mean_activation="sigmoid",
        guide="constant",
        sigma=0.3,
    )
    bounded = build_likelihood(base.replace(likelihood="bounded-gaussian"), D)
    assert isinstance(bounded, BoundedGaussian)
    assert bounded.floor == 0.02 and bounded.mean_activation == "sigmoid"
    baggins = build_likelihood(base.replace(likelihood="baggins"), D)
    assert (baggins.info_max, baggins.floor_mode) == (2.5, "softplus")
    shared = build_likelihood(base.replace(likelihood="gaussian-shared"), D)
    assert shared.sigma.item() == pytest.approx(0.3)
    guide = build_guide(base, D)
    assert isinstance(guide, ConstantVariance) and guide.learn_scale == "vector"
    torch.testing.assert_close(guide.scale(), torch.full((base.latent_dim,), 0.4))
