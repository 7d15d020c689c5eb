"""Property tests (hypothesis) for every registered likelihood head and objective.

For random valid parameters the log-densities are finite on the support, data
off the support is refused with a clear error, the bounded heads never exceed
their bounds, and every objective gives a finite loss whose IWAE value is no
larger than the ELBO's on the same data.
"""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrovae import registry
from pyrovae.build import build_likelihood, build_model
from pyrovae.config import RunConfig

D = 6
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _head(name: str, **options):
    return build_likelihood(RunConfig(likelihood=name, **options), D)


def _data(draw_grey: list[float], binary: bool) -> torch.Tensor:
    x = torch.tensor(draw_grey, dtype=torch.float32).reshape(-1, D)
    return (x > 0.5).float() if binary else x


outputs = st.lists(st.floats(-8, 8, allow_nan=False), min_size=4 * 2 * D, max_size=4 * 2 * D)
pixels = st.lists(st.floats(0, 1, allow_nan=False), min_size=4 * D, max_size=4 * D)


@pytest.mark.parametrize("name", registry.LIKELIHOODS.names())
@SETTINGS
@given(h=outputs, x=pixels)
def test_log_prob_is_finite_on_the_support(name, h, x):
    head = _head(name)
    data = _data(x, binary=head.requires_binary)
    h = torch.tensor(h).reshape(4, 2 * D)[:, : head.out_features]
    head.check_data(data)
    log_p = head(h).log_prob(data)
    assert log_p.shape == (4,)
    assert torch.isfinite(log_p).all()


@pytest.mark.parametrize("name", registry.LIKELIHOODS.names())
def test_data_off_the_support_is_refused(name):
    head = _head(name)
    with pytest.raises(ValueError, match="NaN"):
        head.check_data(torch.full((2, D), math.nan))
    with pytest.raises(ValueError, match="dimensions"):
        head.check_data(torch.zeros(2, D + 1))
    if head.requires_binary:
        with pytest.raises(ValueError, match="binary"):
            head.check_data(torch.full((2, D), 0.5))


@SETTINGS
@given(h=outputs, x=pixels, floor=st.floats(1e-3, 1.0))
def test_bounded_gaussian_never_exceeds_its_bound(h, x, floor):
    head = _head("bounded-gaussian", floor=floor)
    h = torch.tensor(h).reshape(4, 2 * D)
    data = _data(x, binary=False)
    bound = -D * (0.5 * math.log(2 * math.pi) + math.log(floor))
    assert (head(h).log_prob(data) <= bound + 1e-4).all()
    # the bound is attained when the mean hits the data and the raw scale vanishes
    at_data = torch.cat([data, torch.full_like(data, -30.0)], dim=-1)
    torch.testing.assert_close(head(at_data).log_prob(data), torch.full((4,), bound))


@pytest.mark.parametrize("objective", ["trace", "meanfield", "iwae"])
@SETTINGS
@given(x=pixels, seed=st.integers(0, 2**16))
def test_objectives_are_finite_and_iwae_is_tighter(objective, x, seed):
    from pyrovae.infer import make_objective

    pyro.set_rng_seed(seed)
    model, guide = build_model(RunConfig(likelihood="bernoulli", latent_dim=2, hidden=[4]), D)
    data = _data(x, binary=True)
    loss = make_objective(objective, num_particles=4).loss(model, guide, data, num_data=40)
    assert math.isfinite(loss)
    # E[log-mean-exp of K weights] >= E[mean of log weights]: compare many-particle estimates
    pyro.set_rng_seed(seed)
    elbo = make_objective("trace", num_particles=2000).loss(model, guide, data)
    pyro.set_rng_seed(seed)
    iwae = make_objective("iwae", num_particles=2000).loss(model, guide, data)
    assert iwae <= elbo + 1e-3
