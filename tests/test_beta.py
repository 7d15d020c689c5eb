"""The β objective D + βR: exact at β = 1, the rate weighted by β, distortion only at β = 0."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyrovae.build import build_model
from pyrovae.config import ConfigError, RunConfig
from pyrovae.infer.beta import (
    BetaScaled,
    ScaleSitesMessenger,
    check_beta_supported,
    scale_sites,
)
from pyrovae.infer.evaluation import elbo_terms
from pyrovae.infer.iwae import IWAE_ELBO
from pyrovae.infer.objectives import make_objective
from pyrovae.infer.schedules import Constant, Cyclical, LinearWarmup

GUIDE_FOR = {"bilbo": "constant"}  # BILBO needs a constant-variance guide


def _pair(dataset, prior="standard", guide="diagonal", latent_dim=3):
    config = RunConfig.from_dict(
        {"hidden": [32], "latent_dim": latent_dim, "prior": prior, "guide": guide}
    )
    config = config.replace(likelihood="bernoulli")
    pyro.set_rng_seed(1)
    return build_model(config, dataset.data_dim)


@pytest.fixture(scope="module")
def batch(mnist_binarized):
    return mnist_binarized, mnist_binarized.train[:64]


def _loss_and_grads(objective, model, guide, x, seed=3, num_data=None):
    loss_fn = objective(model, guide)
    for p in loss_fn.parameters():
        p.grad = None
    pyro.set_rng_seed(seed)
    loss = loss_fn(x, num_data=num_data)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in loss_fn.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("name", ["trace", "meanfield", "iwae", "bilbo"])
def test_beta_one_reproduces_every_objective_exactly(batch, name):
    data, x = batch
    model, guide = _pair(data, guide=GUIDE_FOR.get(name, "diagonal"))
    plain = make_objective(name, num_particles=2)
    loss, grads = _loss_and_grads(plain, model, guide, x, num_data=1000)
    beta_loss, beta_grads = _loss_and_grads(BetaScaled(plain, 1.0), model, guide, x, num_data=1000)
    assert torch.equal(loss, beta_loss)
    assert grads.keys() == beta_grads.keys() and len(grads) > 0
    for k in grads:
        assert torch.equal(grads[k], beta_grads[k]), k
    # the scaling path itself, at scale 1: the same loss, gradients to rounding
    for p in list(model.parameters()) + list(guide.parameters()):
        p.grad = None
    pyro.set_rng_seed(3)
    scaled = plain.differentiable_loss(scale_sites(model, 1.0), scale_sites(guide, 1.0), x, 1000)
    scaled.backward()
    assert scaled.item() == pytest.approx(loss.item(), rel=1e-6)
    named = dict(model.named_parameters(prefix="model")) | dict(
        guide.named_parameters(prefix="guide")
    )
    for k in grads:
        # float32 summation order differs between the trace-free and traced paths
        scale = grads[k].abs().max().item()
        assert torch.allclose(named[k].grad, grads[k], rtol=1e-3, atol=1e-5 * scale), k


@pytest.mark.parametrize("name,analytic", [("trace", False), ("meanfield", True)])
@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_beta_weights_the_rate_term_only(batch, name, analytic, beta):
    """loss(β) = Σ_i D_i + β R_i with D, R from the same noise (analytic R for meanfield)."""
    data, x = batch
    model, guide = _pair(data)
    objective = BetaScaled(make_objective(name), beta)
    pyro.set_rng_seed(5)
    loss = objective(model, guide)(x).item()
    pyro.set_rng_seed(5)
    terms = elbo_terms(model, guide, x, num_samples=1, analytic_kl=analytic)
    expected = (terms["distortion"] + beta * terms["rate"]).sum().item()
    assert loss == pytest.approx(expected, rel=1e-5)
    # and the rate really is weighted: β = 1 gives D + R from the same noise
    pyro.set_rng_seed(5)
    assert BetaScaled(make_objective(name), 1.0)(model, guide)(x).item() == pytest.approx(
        -terms["elbo"].sum().item(), rel=1e-5
    )


@pytest.mark.parametrize("name", ["trace", "meanfield"])
def test_beta_zero_gives_the_gradient_of_the_distortion_alone(batch, name):
    data, x = batch
    model, guide = _pair(data, prior="mixture")  # a prior with parameters of its own
    loss, grads = _loss_and_grads(BetaScaled(make_objective(name), 0.0), model, guide, x, seed=9)

    # the distortion by hand, from the same reparameterised draw z = μ + σ ε
    params = dict(model.named_parameters(prefix="model")) | dict(
        guide.named_parameters(prefix="guide")
    )
    for p in params.values():
        p.grad = None
    pyro.set_rng_seed(9)
    z = guide.posterior(x).rsample((1,))
    distortion = -model.likelihood(model.decoder(z)).log_prob(x).sum()
    distortion.backward()
    assert loss.item() == pytest.approx(distortion.item(), rel=1e-6)
    for n, p in params.items():
        if n.startswith("model.prior"):
            assert n not in grads or torch.count_nonzero(grads[n]) == 0, n
            continue
        assert torch.allclose(grads[n], p.grad, rtol=1e-5, atol=1e-6), n
    assert any(torch.count_nonzero(g) for n, g in grads.items() if n.startswith("guide"))


def test_scale_messenger_touches_only_the_named_sites(batch):
    data, x = batch
    model, guide = _pair(data)
    pyro.set_rng_seed(0)
    guide_trace = pyro.poutine.trace(guide).get_trace(x)
    with ScaleSitesMessenger(0.25):
        trace = pyro.poutine.trace(pyro.poutine.replay(model, trace=guide_trace)).get_trace(x)
    assert trace.nodes["latent"]["scale"] == 0.25 and trace.nodes["obs"]["scale"] == 1.0
    with ScaleSitesMessenger(0.0):
        trace = pyro.poutine.trace(pyro.poutine.replay(model, trace=guide_trace)).get_trace(x)
    trace.compute_log_prob()
    assert trace.nodes["latent"]["log_prob_sum"].item() == 0.0
    assert trace.nodes["obs"]["log_prob_sum"].item() < 0
    with pytest.raises(ValueError, match=">= 0"):
        ScaleSitesMessenger(-1.0)


def test_iwae_and_bilbo_refuse_a_beta_other_than_one():
    from pyrovae.infer.bilbo import BILBO

    for objective in (IWAE_ELBO(num_particles=2), BILBO(), make_objective("iwae")):
        BetaScaled(objective, 1.0)  # fine
        with pytest.raises(ValueError, match="cannot train D"):
            BetaScaled(objective, 0.5)
        wrapped = BetaScaled(objective, 1.0)
        with pytest.raises(ValueError, match="cannot train D"):
            wrapped.beta = 0.0
    check_beta_supported(Trace_ELBO(), 0.0)
    check_beta_supported(TraceMeanField_ELBO, 3.0)
    with pytest.raises(ConfigError, match="objective 'iwae' needs beta 1, got 0.5"):
        RunConfig.from_dict({"objective": "iwae", "beta": 0.5})
    with pytest.raises(
        ConfigError, match="objective 'iwae' needs beta_schedule 'constant', got 'linear'"
    ):
        RunConfig.from_dict({"objective": "iwae", "beta_schedule": "linear"})
    RunConfig.from_dict({"objective": "iwae", "beta": 1.0})
    for bad in ({"beta": -0.1}, {"beta": float("inf")}, {"beta_cycles": 0}, {"beta_warmup": -1}):
        with pytest.raises(ConfigError):
            RunConfig.from_dict(bad)


def test_schedules_are_pure_functions_of_the_training_position():
    assert [Constant(0.3)(t) for t in (0, 5.5)] == [0.3, 0.3]
    warm = LinearWarmup(beta=2.0, beta_warmup=4)
    assert [warm(t) for t in (0, 1, 2, 4, 9)] == [0.0, 0.5, 1.0, 2.0, 2.0]
    assert LinearWarmup(beta=0.7, beta_warmup=0)(0) == 0.7
    cyc = Cyclical(beta=1.0, beta_cycles=2, epochs=8)  # two cycles of 4 epochs, ramp over 2
    assert [cyc(t) for t in (0, 1, 2, 3, 4, 5, 6, 7.9)] == [0, 0.5, 1, 1, 0, 0.5, 1, 1]


def test_trainer_sets_beta_per_step_and_resumes_exactly(mnist_binarized, tmp_path):
    from conftest import small

    from pyrovae.train import train

    data = small(mnist_binarized, 300, 100)
    cfg = dict(
        dataset="mnist-binarized",
        hidden=[32],
        latent_dim=4,
        batch_size=100,
        iw_samples=0,
        beta=0.8,
        beta_schedule="linear",
        beta_warmup=2,
        objective="trace",
    )
    full = train({**cfg, "epochs": 3}, tmp_path / "full", dataset=data, plots=False).metrics
    # 3 steps an epoch: the last step of epoch e trains at 0.8 · min(1, (e − 1 + 2/3) / 2)
    expected = [0.8 * min(1.0, (e + 2 / 3) / 2) for e in range(3)]
    assert [r["beta"] for r in full] == pytest.approx(expected)
    assert "train_beta_elbo" in full[0] and "train_elbo" not in full[0]
    assert all(
        r["test_elbo"] == pytest.approx(-(r["test_rate"] + r["test_distortion"])) for r in full
    )
    train({**cfg, "epochs": 1}, tmp_path / "part", dataset=data, plots=False)
    resumed = train({**cfg, "epochs": 3}, tmp_path / "part", dataset=data, resume=True, plots=False)
    drop = ("seconds", "eval_seconds")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in drop} for r in rows]  # noqa: E731
    assert strip(resumed.metrics) == strip(full)


def test_cli_train_takes_beta_options(tmp_path):
    import json

    from click.testing import CliRunner

    from pyrovae.cli import main

    args = ["train", "--dataset", "digits", "--hidden", "16", "--latent", "2", "--epochs", "1"]
    args += ["--iw-samples", "0", "--no-progress", "--beta", "0.5", "--beta-schedule", "cyclical"]
    result = CliRunner().invoke(main, [*args, "--beta-cycles", "1", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert (config["beta"], config["beta_schedule"], config["beta_cycles"]) == (0.5, "cyclical", 1)
    bad = CliRunner().invoke(main, [*args, "--objective", "iwae", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert "objective 'iwae' needs beta 1" in bad.output
