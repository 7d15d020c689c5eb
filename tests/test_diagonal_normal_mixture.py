"""DiagonalNormalMixture: the same density and gradients as MixtureSameFamily, computed faster."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyrovae.distributions import DiagonalNormalMixture


def _parameters(k=50, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(k, d, generator=g)
    scale = 0.005 + torch.rand(k, d, generator=g)  # down to 0.005: the cancellation case
    logits = torch.randn(k, generator=g)
    return loc, scale, logits


def _reference(loc, scale, logits):
    """``MixtureSameFamily`` in float64: the exact value to compare with."""
    components = dist.Normal(loc.double(), scale.double()).to_event(1)
    return dist.MixtureSameFamily(dist.Categorical(logits=logits.double()), components)


def _points_near_and_far(loc, n=200, seed=1):
    g = torch.Generator().manual_seed(seed)
    far = 3 * torch.randn(n, loc.shape[1], generator=g)
    near = loc[: n // 4] + 0.01 * torch.randn(n // 4, loc.shape[1], generator=g)
    return torch.cat([far, near])


def test_density_equals_mixture_same_family_in_float64():
    loc, scale, logits = _parameters()
    fast = DiagonalNormalMixture(dist.Categorical(logits=logits), loc, scale)
    z = _points_near_and_far(loc)
    exact = _reference(loc, scale, logits).log_prob(z.double())
    assert exact.max() - exact.min() > 50  # the points span densities far apart
    assert torch.allclose(fast.log_prob(z).double(), exact, atol=1e-4, rtol=0)
    # sample shapes in front of the event are kept
    assert fast.log_prob(z.reshape(5, -1, loc.shape[1])).shape == (5, z.shape[0] // 5)


def test_gradients_equal_mixture_same_family():
    loc, scale, logits = _parameters(k=20, d=4)
    z = _points_near_and_far(loc, n=40)
    grads = []
    for make in (
        lambda a, b, c: DiagonalNormalMixture(dist.Categorical(logits=c), a, b),
        lambda a, b, c: _reference(a, b, c),
    ):
        leaves = [t.clone().double().requires_grad_() for t in (loc, scale, logits, z)]
        make(*leaves[:3]).log_prob(leaves[3]).sum().backward()
        grads.append([t.grad for t in leaves])
    for fast, exact in zip(*grads):
        assert torch.allclose(fast, exact, atol=1e-8, rtol=1e-8)


def test_plate_expansion_keeps_the_density_and_sampling():
    loc, scale, logits = _parameters(k=8, d=3)
    m = DiagonalNormalMixture(dist.Categorical(logits=logits), loc, scale)

    def model():
        with pyro.plate("data", 11):
            return pyro.sample("z", m)

    trace = poutine.trace(model).get_trace()
    site = trace.nodes["z"]
    assert isinstance(site["fn"], DiagonalNormalMixture) and site["fn"].batch_shape == (11,)
    assert site["value"].shape == (11, 3)
    exact = _reference(loc, scale, logits).log_prob(site["value"].double())
    assert torch.allclose(site["fn"].log_prob(site["value"]).double(), exact, atol=1e-5)
    # one point broadcast against the plate
    assert site["fn"].log_prob(site["value"][0]).shape == (11,)


def test_samples_follow_the_mixture_weights():
    loc = torch.tensor([[-10.0], [10.0]])
    m = DiagonalNormalMixture(
        dist.Categorical(probs=torch.tensor([0.2, 0.8])), loc, torch.ones(2, 1)
    )
    torch.manual_seed(0)
    share_right = (m.sample((20000,)) > 0).float().mean().item()
    assert share_right == pytest.approx(0.8, abs=0.01)


def test_parameters_that_are_not_k_by_d_are_refused():
    with pytest.raises(ValueError, match=r"shape \(K, D\)"):
        DiagonalNormalMixture(
            dist.Categorical(logits=torch.zeros(3)), torch.zeros(3), torch.ones(3)
        )
    with pytest.raises(ValueError, match=r"shape \(K, D\)"):
        DiagonalNormalMixture(
            dist.Categorical(logits=torch.zeros(3)), torch.zeros(3, 2), torch.ones(3, 1)
        )


def test_validate_args_false_reaches_the_components():
    logits, loc, bad_scale = torch.zeros(3), torch.zeros(3, 2), -torch.ones(3, 2)
    m = DiagonalNormalMixture(
        dist.Categorical(logits=logits), loc, bad_scale, validate_args=False
    )  # no check of the scale, here or in the inner Normal
    normal = m.component_distribution.base_dist
    assert not (m._validate_args or m.component_distribution._validate_args)
    assert not normal._validate_args and not m.expand((4,)).component_distribution._validate_args
    with pytest.raises(ValueError, match="scale"):
        DiagonalNormalMixture(dist.Categorical(logits=logits), loc, bad_scale, validate_args=True)
    # the default still follows the global switch
    with pyro.validation_enabled(True), pytest.raises(ValueError, match="scale"):
        DiagonalNormalMixture(dist.Categorical(logits=logits), loc, bad_scale)


def test_repr_names_the_class_and_its_parameters():
    m = DiagonalNormalMixture(
        dist.Categorical(logits=torch.zeros(3)), torch.zeros(3, 2), torch.ones(3, 2)
    )
    for text in (repr(m), repr(m.expand((4,)))):
        assert text.startswith("DiagonalNormalMixture(") and "MixtureSameFamily" not in text
        assert "Categorical" in text and "loc: torch.Size" in text and "scale: torch.Size" in text
