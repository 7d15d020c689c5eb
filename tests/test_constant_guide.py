"""The constant-variance guide (Fyffe 2019): half the encoder outputs; trains under any ELBO."""

from __future__ import annotations

import math

import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch import nn

from pyrovae.guides.constant import ConstantVariance
from pyrovae.guides.diagonal import DiagonalGaussian
from pyrovae.infer.iwae import IWAE_ELBO
from pyrovae.models.likelihoods import Bernoulli
from pyrovae.models.vae import VAE

D, LATENT, HIDDEN = 16, 3, [12, 10]

OBJECTIVES = {
    "trace": lambda: Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1),
    "meanfield": lambda: TraceMeanField_ELBO(
        num_particles=2, vectorize_particles=True, max_plate_nesting=1
    ),
    "iwae": lambda: IWAE_ELBO(num_particles=3),
}


def _linear_shapes(net: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, nn.Linear)]


def _binary_batch(n: int = 24) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, D), 0.3))


def test_encoder_has_half_the_outputs_of_the_diagonal_guide():
    constant = _linear_shapes(ConstantVariance(D, LATENT, hidden=HIDDEN).encoder)
    diagonal = _linear_shapes(DiagonalGaussian(D, LATENT, hidden=HIDDEN).encoder)
    assert constant[:-1] == diagonal[:-1]  # same hidden widths
    assert constant[-1][1] == LATENT
    assert diagonal[-1][1] == 2 * constant[-1][1]


@pytest.mark.parametrize("learn_scale, shape", [("none", ()), ("scalar", ()), ("vector", (3,))])
def test_posterior_has_one_scale_for_every_point(learn_scale, shape):
    guide = ConstantVariance(D, LATENT, hidden=HIDDEN, posterior_scale=0.5, learn_scale=learn_scale)
    assert guide.scale().shape == shape
    q = guide.posterior(_binary_batch(7))
    assert q.batch_shape == (7,) and q.event_shape == (LATENT,)
    torch.testing.assert_close(q.base_dist.scale, torch.full((7, LATENT), 0.5))
    assert q.has_rsample


def test_fixed_scale_is_a_buffer_and_learned_scale_a_parameter():
    fixed = ConstantVariance(D, LATENT, learn_scale="none")
    learned = ConstantVariance(D, LATENT, learn_scale="vector")
    assert "log_scale" in dict(fixed.named_buffers())
    assert "log_scale" not in dict(fixed.named_parameters())
    assert "log_scale" in dict(learned.named_parameters())
    # both are in the state_dict, so checkpoints restore the scale either way
    assert "log_scale" in fixed.state_dict() and "log_scale" in learned.state_dict()


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("learn_scale", ["none", "scalar", "vector"])
def test_trains_with_every_objective(objective, learn_scale):
    x = _binary_batch()
    model = VAE(D, LATENT, hidden=HIDDEN[::-1], likelihood=Bernoulli(D))
    guide = ConstantVariance(D, LATENT, hidden=HIDDEN, posterior_scale=0.7, learn_scale=learn_scale)
    loss_fn = OBJECTIVES[objective]()(model, guide)
    encoder_before = [p.detach().clone() for p in guide.encoder.parameters()]
    scale_before = guide.scale().detach().clone()
    opt = torch.optim.Adam(loss_fn.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        loss = loss_fn(x, num_data=240)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert any(not torch.equal(a, b) for a, b in zip(encoder_before, guide.encoder.parameters())), (
        "encoder weights did not move"
    )
    if learn_scale == "none":
        assert torch.equal(guide.scale(), scale_before)
    else:
        assert not torch.allclose(guide.scale(), scale_before)
        assert (guide.scale() > 0).all()


def test_input_scale_divides_the_encoder_input():
    guide = ConstantVariance(D, LATENT, hidden=HIDDEN)
    x = torch.rand(5, D)
    expected = guide.posterior(x).mean
    guide.input_scale.fill_(100.0)
    torch.testing.assert_close(guide.posterior(100.0 * x).mean, expected)


def test_data_plate_subsampling_scales_the_latent_site():
    import pyro.poutine as poutine

    guide = ConstantVariance(D, LATENT)
    trace = poutine.trace(guide).get_trace(torch.rand(5, D), num_data=50)
    assert trace.nodes["latent"]["scale"] == pytest.approx(10.0)
    assert trace.nodes["latent"]["value"].shape == (5, LATENT)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"learn_scale": "full"}, "learn_scale"),
        ({"posterior_scale": 0.0}, "posterior_scale"),
        ({"posterior_scale": -1.0}, "posterior_scale"),
    ],
)
def test_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConstantVariance(D, LATENT, **kwargs)
