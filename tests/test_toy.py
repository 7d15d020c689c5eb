"""The discrete toy model: exact H, I, R, D; the bounds; the β sweep; ELBO vs a target rate."""

from __future__ import annotations

import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from pyrovae.infer.beta import BetaScaled
from pyrovae.infer.evaluation import information_bounds
from pyrovae.models.toy import ToyModel, entropy, fit_toy, toy_data, toy_sweep

BETAS = [0.25, 0.5, 1.0, 2.0]


@pytest.fixture(scope="module")
def data():
    return toy_data(num_values=30, p_one=0.7, information=0.5)


@pytest.fixture(scope="module")
def frontier(data):
    """A β sweep with the restricted (Gaussian) decoder and K_z = 2: the true model's family."""
    return toy_sweep(BETAS, data=data, num_latent=2, decoder="gaussian", steps=1000, lr=0.1)


def test_the_data_distribution_is_exact(data):
    assert data.p_x.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert data.true_information == pytest.approx(0.5, abs=1e-9)
    assert data.entropy == pytest.approx(entropy(data.p_x).item())
    assert 0.5 < data.entropy < torch.log(torch.tensor(30.0)).item()


def test_bounds_hold_at_every_beta_with_the_exact_information_between(frontier):
    for row in frontier:
        lower, upper = information_bounds(row["entropy"], row["rate"], row["distortion"])
        assert lower - 1e-9 <= row["information"] <= upper + 1e-9, row
        assert row["elbo"] <= -row["entropy"] + 1e-9  # ELBO ≤ log-likelihood ≤ −H on average


def test_rate_falls_and_distortion_rises_with_beta(frontier):
    rates = [r["rate"] for r in frontier]
    distortions = [r["distortion"] for r in frontier]
    assert all(a >= b - 1e-3 for a, b in zip(rates, rates[1:])), rates
    assert all(a <= b + 1e-3 for a, b in zip(distortions, distortions[1:])), distortions
    assert rates[0] > 0.5 and rates[-1] < 0.01  # from using the latent to ignoring it
    # β = 1 maximises the ELBO, so it has the best ELBO of the sweep; in the true model's
    # family it recovers the generating latent: R ≈ I(x; z*) = 0.5 (0.474 after 1000 steps)
    best = max(frontier, key=lambda r: r["elbo"])
    assert best["beta"] == 1.0
    assert best["rate"] == pytest.approx(0.5, abs=0.05)


def test_elbo_cannot_tell_an_autodecoder_from_a_model_that_uses_its_latent(data):
    """Alemi et al. section 4.1, with the powerful table decoder.

    Maximising the ELBO from a near-uniform start gives the autodecoder: ELBO = −H
    (the model is the data distribution) with rate and information ≈ 0. A fixed target
    rate (D + |R − 0.5|) or β = 0.5 gives the same ELBO with a latent that carries
    0.5 nats or most of H.
    """
    fits = {}
    for name, options in {
        "elbo": {"beta": 1.0},
        "target": {"target_rate": 0.5},
        "beta 0.5": {"beta": 0.5},
    }.items():
        torch.manual_seed(0)
        fits[name] = fit_toy(ToyModel(data.p_x), steps=500, lr=0.1, **options).terms()
    h = data.entropy
    for name, t in fits.items():
        assert t["elbo"] == pytest.approx(-h, abs=1e-3), name
        assert t["kl_data_model"] < 1e-3, name
    assert fits["elbo"]["rate"] < 0.02 and fits["elbo"]["information"] < 0.02
    assert fits["target"]["rate"] > 0.49 and fits["target"]["information"] > 0.49
    assert fits["beta 0.5"]["information"] > 0.8 * h


@pytest.mark.parametrize("decoder", ["table", "gaussian"])
@pytest.mark.parametrize("beta", [1.0, 0.5, 0.0])
def test_beta_scaled_trace_enum_elbo_is_the_exact_objective(data, decoder, beta):
    """The toy's D + βR is what BetaScaled trains, value and gradients, with z enumerated."""
    torch.manual_seed(1)
    model = ToyModel(data.p_x, num_latent=4, decoder=decoder, init_scale=1.0)
    x = torch.arange(data.p_x.shape[0])
    objective = BetaScaled(TraceEnum_ELBO(max_plate_nesting=1), beta)
    loss = objective.differentiable_loss(model.model, model.guide, x)
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    exact = model.objective(beta)
    exact_grads = torch.autograd.grad(exact, params, allow_unused=True)
    assert loss.item() == pytest.approx(exact.item(), rel=1e-10)
    for g, e in zip(grads, exact_grads):
        if g is None or e is None:  # β = 0: the marginal takes no part
            assert beta == 0.0 and (g is None or g.abs().max() == 0)
            continue
        assert torch.allclose(g, e, rtol=1e-8, atol=1e-12)
