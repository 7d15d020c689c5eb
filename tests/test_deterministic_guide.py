"""The deterministic guide with β = 0 is a plain auto-encoder trained on its likelihood's loss."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from click.testing import CliRunner
from conftest import small

from pyrovae.build import build_model
from pyrovae.cli import main
from pyrovae.config import ConfigError, RunConfig
from pyrovae.guides import DeterministicGuide
from pyrovae.infer.beta import BetaScaled
from pyrovae.infer.objectives import make_objective
from pyrovae.train import train

D, DZ, N = 12, 3, 80


def _autoencoder(mean_activation: str = "identity"):
    config = RunConfig.from_dict(
        {
            "guide": "deterministic",
            "likelihood": "mse",
            "mean_activation": mean_activation,
            "beta": 0.0,
            "latent_dim": DZ,
            "hidden": [8],
        }
    )
    return build_model(config, D)


def _by_hand(model, guide, x):
    """(N/B) Σ_i −log N(x_i; decode(μ_φ(x_i)), ½ I) = (N/B) Σ_i [‖x_i − x̂_i‖² + (D/2) log π]."""
    recon = model.decode(guide.encoder(x))
    nll = (x - recon).pow(2).sum(-1) + 0.5 * D * math.log(math.pi)
    return N / x.shape[0] * nll.sum()


@pytest.mark.parametrize("kind", ["trace", "meanfield"])
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("mean_activation", ["identity", "sigmoid"])
def test_beta_zero_loss_is_the_mse_loss_at_the_code(kind, fast, mean_activation):
    torch.manual_seed(0)
    model, guide = _autoencoder(mean_activation)
    model, guide = model.double(), guide.double()
    assert isinstance(guide, DeterministicGuide)
    x = torch.rand(20, D, dtype=torch.float64)
    loss_fn = BetaScaled(make_objective(kind, fast=fast), beta=0.0)(model, guide)
    params = [*model.parameters(), *guide.parameters()]
    pyro.set_rng_seed(1)
    loss = loss_fn(x, num_data=N)
    grads = torch.autograd.grad(loss, params)
    expected = _by_hand(model, guide, x)
    expected_grads = torch.autograd.grad(expected, params)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-10)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_the_posterior_is_a_point_mass_at_the_encoder_output():
    torch.manual_seed(0)
    guide = DeterministicGuide(D, DZ, hidden=[8])
    x = torch.rand(5, D)
    q = guide.posterior(x)
    assert q.batch_shape == (5,) and q.event_shape == (DZ,)
    torch.testing.assert_close(q.mean, guide.encoder(x))
    torch.testing.assert_close(q.rsample((4,)), guide.encoder(x).expand(4, 5, DZ))
    # the encoder emits means only: latent_dim outputs
    assert guide.encoder[-1].out_features == DZ


@pytest.mark.parametrize(
    "values",
    [
        {"guide": "deterministic"},  # beta 1 by default
        {"guide": "deterministic", "beta": 0.5},
        {"guide": "deterministic", "beta": 0.0, "beta_schedule": "linear"},
    ],
)
def test_the_config_asks_for_beta_zero(values):
    with pytest.raises(ConfigError, match=r"guide 'deterministic' .* pass beta 0"):
        RunConfig.from_dict(values)


def test_a_trained_autoencoder_reconstructs_real_digits_better(mnist_binarized):
    data = small(mnist_binarized, 1000, 200)
    config = {
        "dataset": "mnist-binarized",
        "guide": "deterministic",
        "likelihood": "mse",
        "mean_activation": "sigmoid",
        "beta": 0.0,
        "weight_decay": 1.0,
        "latent_dim": 5,
        "hidden": [64],
        "iw_samples": 0,
        "device": "cpu",
    }
    before = train({**config, "epochs": 0}, None, dataset=data, plots=False)
    after = train({**config, "epochs": 3}, None, dataset=data, plots=False)
    assert after.summary["test_mse"] < 0.8 * before.summary["test_mse"]
    # the training number is −(D + 0·R): the negative MSE loss per point, mean squared error
    # per pixel = (−train_beta_elbo − (D/2) log π) / D, of the same order as the test MSE
    row = after.metrics[-1]
    assert row["beta"] == 0.0 and "train_beta_elbo" in row
    train_mse = (-row["train_beta_elbo"] - 0.5 * 784 * math.log(math.pi)) / 784
    assert 0 < train_mse < 2 * before.summary["test_mse"]


def test_the_command_line_trains_an_autoencoder(tmp_path):
    out = tmp_path / "ae"
    args = ["train", "--dataset", "digits", "--guide", "deterministic", "--beta", "0"]
    args += ["--likelihood", "mse", "--latent", "3", "--hidden", "16", "--epochs", "1"]
    args += ["--weight-decay", "1", "--iw-samples", "0", "--no-progress", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (out / "summary.json").exists()
    refused = CliRunner().invoke(main, [*args[:5], "--epochs", "1", "--out", str(tmp_path / "b")])
    assert refused.exit_code != 0
    assert "guide 'deterministic'" in refused.output and "--beta 0" in refused.output
