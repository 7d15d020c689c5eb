"""Batch-level parts (BAGGINS, BILBO) have honest batch semantics.

A masked-out or padded point never changes another point's value; a
distribution that cannot be sampled says so the way Pyro reads it; shapes can
be inferred; BAGGINS's floor has a lower limit that no batch removes. (The
data-parallel side, statistics of the combined batch, is in
``test_distributed.py``.)
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyrovae import distributed
from pyrovae.distributions import BagginsNormal, DiagonalNormalMixture
from pyrovae.distributions.baggins import pooled_statistics, signal_variance
from pyrovae.guides.constant import ConstantVariance
from pyrovae.infer.bilbo import BILBO
from pyrovae.models.gaussian_heads import Baggins
from pyrovae.models.likelihoods import GaussianFixed
from pyrovae.models.vae import VAE

D = 6


# -- masks: the aggregate is taken over the points that count ---------------------------------


@pytest.mark.parametrize("floor_mode", ["max", "softplus"])
@pytest.mark.parametrize("info_max", [0.05, 4.0])  # floored regime, unfloored regime
def test_a_masked_row_changes_no_other_row_and_the_rest_score_as_a_smaller_batch(
    floor_mode, info_max
):
    x, loc = torch.rand(7, D), torch.rand(7, D)
    d = BagginsNormal(loc, info_max, floor_mode=floor_mode)
    keep = torch.tensor([True, True, False, True, True, False, True])
    masked = d.mask(keep).log_prob(x)
    without = BagginsNormal(loc[keep], info_max, floor_mode=floor_mode).log_prob(x[keep])
    torch.testing.assert_close(masked[keep], without)
    assert masked[~keep].eq(0).all()
    # whatever the masked rows hold, the others do not move
    other = x.clone()
    other[~keep] = 100.0 * torch.randn(2, D)
    torch.testing.assert_close(d.mask(keep).log_prob(other), masked, rtol=0, atol=0)


def test_padded_rows_may_hold_anything_and_give_no_gradient():
    x = torch.rand(5, D)
    x[3:] = torch.tensor([math.nan, math.inf, -math.inf, 0.0, 1.0, 2.0])
    loc = torch.rand(5, D, requires_grad=True)
    keep = torch.tensor([True, True, True, False, False])
    log_p = BagginsNormal(loc, 3.0, validate_args=False).mask(keep).log_prob(x)
    assert torch.isfinite(log_p).all() and log_p[3:].eq(0).all()
    log_p.sum().backward()
    assert torch.isfinite(loc.grad).all() and loc.grad[3:].eq(0).all()
    reference = BagginsNormal(loc[:3], 3.0).log_prob(x[:3])
    torch.testing.assert_close(log_p[:3], reference)


def test_masks_per_particle_broadcast_and_combine():
    x, loc = torch.rand(6, D), torch.rand(2, 6, D)
    d = BagginsNormal(loc, 3.0)
    first = torch.tensor([True, True, True, True, False, False])
    second = torch.tensor([[True] * 6, [False, True, True, True, True, True]])  # (K, B)
    both = d.mask(first).mask(second)
    assert both.batch_shape == (2, 6)
    log_p = both.log_prob(x)
    for k in range(2):
        keep = first & second[k]
        expected = BagginsNormal(loc[k][keep], 3.0).log_prob(x[keep])
        torch.testing.assert_close(log_p[k][keep], expected)
        assert log_p[k][~keep].eq(0).all()
    # a mask survives the expansion a plate applies
    expanded = d.mask(first).expand((3, 2, 6))
    torch.testing.assert_close(expanded.log_prob(x), d.mask(first).log_prob(x).expand(3, 2, 6))


def test_trivial_masks_and_too_few_points():
    x, loc = torch.rand(4, D), torch.rand(4, D)
    d = BagginsNormal(loc, 3.0)
    assert d.mask(True) is d
    assert d.mask(False).log_prob(x).eq(0).all()
    assert d.mask(torch.zeros(4, dtype=torch.bool)).log_prob(x).eq(0).all()
    with pytest.raises(ValueError, match="at least two points that count"):
        d.mask(torch.tensor([False, True, False, False])).log_prob(x)


def test_pooled_statistics_equal_the_plain_ones():
    x, loc = torch.rand(3, 9, D), torch.rand(3, 9, D)
    residual_ms, signal, count = pooled_statistics(x, loc)
    torch.testing.assert_close(residual_ms, (x - loc).pow(2).mean((-2, -1)))
    torch.testing.assert_close(signal, signal_variance(x))
    assert count.eq(9).all()


def test_a_masked_site_in_a_pyro_model_scores_as_the_batch_without_it():
    """``pyro.sample("obs", d.mask(m), obs=x)`` under Trace_ELBO: the masked points drop out."""
    x = torch.rand(8, D)
    keep = torch.rand(8) > 0.3
    keep[:2] = True

    def model(data, mask=None):
        loc = pyro.param("loc", lambda: torch.rand(data.shape[0], D))
        with pyro.plate("data", data.shape[0]):
            d = BagginsNormal(loc, 3.0)
            pyro.sample("obs", d if mask is None else d.mask(mask), obs=data)

    def guide(data, mask=None):
        pass

    pyro.clear_param_store()
    loss = Trace_ELBO().differentiable_loss(model, guide, x, keep)
    loc = pyro.param("loc").detach()
    expected = -BagginsNormal(loc[keep], 3.0).log_prob(x[keep]).sum()
    torch.testing.assert_close(loss, expected)
    pyro.clear_param_store()


# -- BILBO honours poutine.mask ---------------------------------------------------------------


def _bilbo_pair(likelihood):
    model = VAE(D, 3, hidden=[8], likelihood=likelihood)
    guide = ConstantVariance(D, 3, hidden=[8], posterior_scale=1e-9)  # z = μ(x)
    return model, guide


@pytest.mark.parametrize("head", ["gaussian", "baggins"])
def test_bilbo_leaves_masked_points_out_of_its_batch_statistics(float64, head):
    likelihood = Baggins(D) if head == "baggins" else GaussianFixed(D, sigma=0.3)
    model, guide = _bilbo_pair(likelihood)
    x = torch.rand(7, D)
    keep = torch.tensor([True, False, True, True, True, False, True])
    masked = BILBO().differentiable_loss(
        poutine.mask(model, mask=keep), poutine.mask(guide, mask=keep), x
    )
    smaller = BILBO().differentiable_loss(model, guide, x[keep])
    torch.testing.assert_close(masked, smaller, rtol=1e-7, atol=1e-7)
    # and what the masked points hold does not matter
    other = x.clone()
    other[~keep] = 5.0 * torch.randn(2, D)
    moved = BILBO().differentiable_loss(
        poutine.mask(model, mask=keep), poutine.mask(guide, mask=keep), other
    )
    torch.testing.assert_close(moved, masked, rtol=1e-7, atol=1e-7)


def test_bilbo_without_masks_or_processes_is_unchanged(float64):
    """The plain path: the floating prior's m is ``mean(μ²)`` over the batch."""
    model, guide = _bilbo_pair(GaussianFixed(D, sigma=0.3))
    x = torch.rand(5, D)
    pyro.set_rng_seed(0)
    loss = BILBO().differentiable_loss(model, guide, x)
    mu = guide.posterior(x).mean
    rate = 0.5 * torch.log1p(mu.pow(2).mean(0) / guide.scale().pow(2)).sum()
    distortion = -model.likelihood(model.decoder(mu)).log_prob(x).mean()
    torch.testing.assert_close(loss / 5, rate + distortion, rtol=1e-6, atol=1e-6)
    assert not distributed.synchronizing()


# -- sampling and shapes ----------------------------------------------------------------------


def test_an_unfrozen_site_cannot_be_sampled_and_a_frozen_one_can():
    """Pyro draws a site with ``fn()``: ``rsample`` if ``has_rsample``, else ``sample``."""
    head = Baggins(D)
    model = VAE(D, 2, hidden=[8], likelihood=head)
    unconditioned = poutine.uncondition(model)
    with pytest.raises(NotImplementedError, match="frozen_variance"):
        unconditioned(torch.rand(4, D))
    head.frozen_variance.fill_(0.01)
    model.eval()  # evaluation mode scores (and draws) with the frozen σ²
    trace = poutine.trace(unconditioned).get_trace(torch.rand(4, D))
    assert trace.nodes["obs"]["value"].shape == (4, D)
    assert trace.nodes["obs"]["fn"].has_rsample


def test_infer_shapes_gives_the_shapes_of_the_distribution():
    loc = torch.zeros(3, 5, D)
    assert BagginsNormal.infer_shapes(loc=loc.shape) == (loc.shape[:-1], loc.shape[-1:])
    d = BagginsNormal(loc, 3.0)
    assert (d.batch_shape, d.event_shape) == BagginsNormal.infer_shapes(
        loc=loc.shape, info_max=(), frozen_variance=()
    )
    mixture = DiagonalNormalMixture(
        dist.Categorical(logits=torch.zeros(4)), torch.zeros(4, D), torch.ones(4, D)
    )
    assert DiagonalNormalMixture.infer_shapes(loc=(4, D), scale=(4, D)) == (
        mixture.batch_shape,
        mixture.event_shape,
    )


# -- a floor that no batch removes -------------------------------------------------------------


def _fitted_head(train: torch.Tensor, **kwargs) -> Baggins:
    head = Baggins(train.shape[-1], **kwargs)
    head.fit_data_scale(train, ConstantVariance(train.shape[-1], 2, hidden=[4]))
    return head


def _perfect_fit(head: Baggins, batch: torch.Tensor) -> torch.Tensor:
    """Per-point log-likelihood of a decoder that reproduces ``batch`` exactly."""
    return head(batch / head.data_scale).log_prob(batch)


@pytest.mark.parametrize("floor_mode", ["max", "softplus"])
def test_a_batch_of_identical_points_is_bounded_near_an_ordinary_batch(float64, floor_mode):
    torch.manual_seed(0)
    train = torch.rand(200, D)
    head = _fitted_head(train, floor_mode=floor_mode)
    ordinary = _perfect_fit(head, train[:16])
    identical = _perfect_fit(head, train[:1].expand(16, D))
    assert torch.isfinite(identical).all()
    # the training set's bound, and at most one bit per dimension above it
    training_bound = -0.5 * D * math.log(2 * math.pi * head.train_signal.item() / math.expm1(6.0))
    assert identical.max() <= training_bound + D * math.log(2) + 1e-9
    assert identical.max() - ordinary.max() < D * math.log(2) + 0.5
    # without the lower limit (the distribution alone) the floor vanishes: +2119.7 at D = 6
    loc = train[:1].expand(16, D)
    unbounded = BagginsNormal(loc, 3.0, floor_mode=floor_mode).log_prob(loc)
    assert unbounded.min() > 2000
    # the limit is the bound the distribution reports
    bound = head(loc).log_prob_bound(loc)
    assert (identical <= bound + 1e-9).all()


def test_the_lower_limit_leaves_ordinary_batches_bit_for_bit_unchanged():
    torch.manual_seed(1)
    train = torch.rand(500, D)
    head = _fitted_head(train)
    assert head.min_signal is not None
    h, x = torch.randn(3, 20, D), train[:20]
    with_limit = head(h).log_prob(x)
    without = BagginsNormal(head.mean(h), head.info_max).log_prob(x)
    assert torch.equal(with_limit, without)


@pytest.mark.parametrize("c", [2.0**-7, 2.0**6])  # powers of two: exact in floating point
def test_the_lower_limit_scales_with_the_data(float64, c):
    torch.manual_seed(2)
    train = torch.rand(100, D)
    same = train[:1].expand(10, D)
    base = _perfect_fit(_fitted_head(train), same)
    scaled = _perfect_fit(_fitted_head(c * train), c * same)
    torch.testing.assert_close(scaled, base - D * math.log(c), rtol=1e-12, atol=1e-9)


def test_a_checkpoint_from_before_the_lower_limit_still_loads():
    train = torch.rand(50, D)
    head = _fitted_head(train)
    state = {k: v for k, v in head.state_dict().items() if k != "train_signal"}
    fresh = Baggins(D)
    fresh.load_state_dict(state)  # strict
    assert fresh.min_signal is None  # no limit until fit_data_scale runs again
    fitted = _fitted_head(train)
    fitted.load_state_dict(state)  # fitted before the load (as the trainer does): kept
    torch.testing.assert_close(fitted.train_signal, head.train_signal)
