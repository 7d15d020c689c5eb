"""Polyak averaging: the recursion, what evaluation sees, and exact resumes."""

from __future__ import annotations

import pytest
import torch
from conftest import small
from torch import nn

from pyrovae.averaging import WeightAverage
from pyrovae.config import ConfigError, RunConfig
from pyrovae.infer.evaluation import reconstruction_mse
from pyrovae.run import load_run
from pyrovae.train import train

CONFIG = dict(
    dataset="mnist-binarized",
    latent_dim=4,
    hidden=[32],
    batch_size=50,
    lr=3e-3,
    iw_samples=0,
    seed=3,
    ema_decay=0.9,
)


def test_the_average_is_the_closed_form_exponential_average_of_the_iterates():
    net = nn.Linear(3, 2)
    initial = net.weight.detach().clone()
    # d = 0.1 never exceeds the warm-up (1 + t) / (10 + t): a plain exponential average
    average = WeightAverage({"net": net}, decay=0.1)
    iterates = []
    for _ in range(6):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        iterates.append(net.weight.detach().clone())
        average.update()
    # θ̄_T = d^T θ_0 + Σ_{t=1..T} (1 − d) d^(T−t) θ_t, from the initial weights θ_0
    d, T = 0.1, len(iterates)
    expected = d**T * initial + sum(
        (1 - d) * d ** (T - t) * iterates[t - 1] for t in range(1, T + 1)
    )
    with average.applied():
        torch.testing.assert_close(net.weight, expected)
    torch.testing.assert_close(net.weight, iterates[-1])  # the raw parameters come back
    state = average.state_dict()
    torch.testing.assert_close(state["net"]["weight"], expected)
    assert state["updates"] == T


def test_the_warm_up_forgets_the_initial_weights():
    net = nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.zero_()
    average = WeightAverage({"net": net}, decay=0.99)
    with torch.no_grad():
        net.weight.fill_(1.0)
    for _ in range(5):
        average.update()
    # what is left of θ_0 = 0 is Π_{t<5} d_t = (1·2·3·4·5) / (10·11·12·13·14), not 0.99^5
    left = 120 / (10 * 11 * 12 * 13 * 14)
    torch.testing.assert_close(average.state_dict()["net"]["weight"], torch.full((1, 2), 1 - left))


@pytest.fixture(scope="module")
def data(mnist_binarized):
    import dataclasses

    return dataclasses.replace(small(mnist_binarized, 600, 200), test=mnist_binarized.test[::50])


def test_evaluation_and_load_run_see_the_average_and_training_steps_the_raw_weights(data, tmp_path):
    averaged = train({**CONFIG, "epochs": 2}, tmp_path / "avg", dataset=data)  # plots too
    plain = train({**CONFIG, "epochs": 2, "ema_decay": 0.0}, tmp_path / "raw", dataset=data)
    # averaging changes what is evaluated, never what is trained: the raw parameters agree
    state = torch.load(tmp_path / "avg" / "checkpoint.pt", weights_only=True)
    raw = torch.load(tmp_path / "raw" / "checkpoint.pt", weights_only=True)
    for part in ("model", "guide"):
        for name, value in raw[part].items():
            assert torch.equal(state[part][name], value), name
    assert averaged.metrics[-1]["train_elbo"] == plain.metrics[-1]["train_elbo"]
    assert averaged.metrics[-1]["test_elbo"] != plain.metrics[-1]["test_elbo"]
    # train() returns, and load_run loads, the average: the model the run's numbers are of
    _, model, guide, _ = load_run(tmp_path / "avg")
    for trained in (model, averaged.model):
        torch.testing.assert_close(
            trained.decoder[0].weight, state["average"]["model"]["decoder.0.weight"]
        )
        assert not torch.equal(trained.decoder[0].weight, state["model"]["decoder.0.weight"])
    mse = reconstruction_mse(model, guide, data.test).mean().item()
    assert mse == pytest.approx(averaged.summary["test_mse"], rel=1e-6)
    assert mse != pytest.approx(plain.summary["test_mse"], rel=1e-3)


def test_a_resumed_averaged_run_repeats_the_uninterrupted_one(data, tmp_path):
    full = train({**CONFIG, "epochs": 3}, tmp_path / "full", dataset=data, plots=False)
    train({**CONFIG, "epochs": 1}, tmp_path / "part", dataset=data, plots=False)
    resumed = train(
        {**CONFIG, "epochs": 3}, tmp_path / "part", dataset=data, resume=True, plots=False
    )
    assert [r["test_elbo"] for r in resumed.metrics] == [r["test_elbo"] for r in full.metrics]
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["average"]
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["average"]
    assert a["updates"] == b["updates"] == 3 * 600 // 50
    for part in ("model", "guide"):
        for name, value in a[part].items():
            assert torch.equal(value, b[part][name]), (part, name)


@pytest.mark.parametrize("decay", [1.0, -0.1, True])
def test_an_average_outside_0_to_1_is_refused(decay):
    with pytest.raises(ConfigError, match=r"ema_decay must be a number in \[0, 1\)"):
        RunConfig.from_dict({"ema_decay": decay})
