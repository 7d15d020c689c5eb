"""Training on real data: it learns, it resumes exactly, and damaged checkpoints are refused."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import small

from pyrovae.config import RunConfig
from pyrovae.run import RunError, RunFolder, load_run
from pyrovae.train import train

FAST = dict(
    dataset="mnist-binarized", latent_dim=8, hidden=[128], batch_size=50, lr=3e-3, iw_samples=0
)


@pytest.fixture(scope="module")
def mnist_slice(mnist_binarized):
    # the static binarised test split is in class order: take every 10th point for all classes
    data = small(mnist_binarized, 3000, 10_000)
    import dataclasses

    return dataclasses.replace(data, test=mnist_binarized.test[::20])


def test_training_raises_the_test_elbo_beyond_an_untrained_model(mnist_slice, tmp_path):
    untrained = train(
        {**FAST, "epochs": 0}, tmp_path / "untrained", dataset=mnist_slice, plots=False
    )
    _, model, _, _ = load_run(tmp_path / "untrained")  # zero epochs still leave a loadable run
    for a, b in zip(model.state_dict().values(), untrained.model.state_dict().values()):
        assert torch.equal(a, b)
    trained = train({**FAST, "epochs": 5}, tmp_path / "run", dataset=mnist_slice, plots=False)
    before = untrained.summary["test_elbo"]
    after = [row["test_elbo"] for row in trained.metrics]
    assert before < -500  # 784 pixels at p = 1/2 cost 543 nats
    # independent pixels with the training marginals score -206 nats on this test slice: a model
    # whose latent code carries nothing cannot beat that; measured here after 5 epochs: -148
    assert after[-1] > -170, after
    assert after[-1] > after[0] + 20


def _resume_config(epochs):
    return {**FAST, "epochs": epochs, "hidden": [32], "latent_dim": 4, "seed": 7}


def test_resume_reproduces_the_uninterrupted_run(mnist_slice, tmp_path):
    data = small(mnist_slice, 600, 200)
    full = train(_resume_config(3), tmp_path / "full", dataset=data, plots=False)
    train(_resume_config(1), tmp_path / "part", dataset=data, plots=False)
    resumed = train(_resume_config(3), tmp_path / "part", dataset=data, resume=True, plots=False)
    drop = ("seconds", "eval_seconds")
    rows = [{k: v for k, v in r.items() if k not in drop} for r in resumed.metrics]
    ref = [{k: v for k, v in r.items() if k not in drop} for r in full.metrics]
    assert rows == ref
    on_disk = RunFolder(tmp_path / "part").read_metrics()
    assert [r["epoch"] for r in on_disk] == [1, 2, 3]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_lr_milestones_divide_the_rate_and_resume_across_them_exactly(mnist_slice, tmp_path):
    data = small(mnist_slice, 600, 200)
    config = {**_resume_config(4), "lr_milestones": [2, 3], "lr_gamma": 0.5}
    full = train(config, tmp_path / "full", dataset=data, plots=False)
    assert [r["lr"] for r in full.metrics] == [3e-3, 3e-3, 1.5e-3, 7.5e-4]
    constant = train(_resume_config(4), dataset=data, plots=False)
    # before the first milestone nothing differs; after it the runs part
    assert full.metrics[1]["test_elbo"] == constant.metrics[1]["test_elbo"]
    assert full.metrics[3]["test_elbo"] != constant.metrics[3]["test_elbo"]
    train({**config, "epochs": 2}, tmp_path / "part", dataset=data, plots=False)
    resumed = train(config, tmp_path / "part", dataset=data, resume=True, plots=False)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_resume_may_extend_the_lr_schedule_but_not_rewrite_its_past(mnist_slice, tmp_path):
    data = small(mnist_slice, 600, 200)
    extended = {**_resume_config(4), "lr_milestones": [2, 3], "lr_gamma": 0.5}
    full = train(extended, tmp_path / "full", dataset=data, plots=False)
    train(
        {**extended, "epochs": 3, "lr_milestones": [2]},
        tmp_path / "part",
        dataset=data,
        plots=False,
    )
    with pytest.raises(RunError, match="different lr_milestones"):  # epoch 2 ran at the full rate
        train({**extended, "lr_milestones": [1, 3]}, tmp_path / "part", dataset=data, resume=True)
    resumed = train(extended, tmp_path / "part", dataset=data, resume=True, plots=False)
    assert [r["lr"] for r in resumed.metrics] == [3e-3, 3e-3, 1.5e-3, 7.5e-4]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    saved = RunFolder(tmp_path / "part").read_config()["config"]
    assert saved["lr_milestones"] == [2, 3]  # the folder now describes the run it holds
    # extending a finished run's schedule without new epochs leaves a loadable folder too
    train({**extended, "lr_milestones": [2, 3, 4]}, tmp_path / "part", dataset=data, resume=True)
    assert load_run(tmp_path / "part")[0].lr_milestones == [2, 3, 4]


def test_same_seed_same_numbers_and_other_seed_differs(mnist_slice):
    data = small(mnist_slice, 300, 100)
    a = train(_resume_config(1), dataset=data, plots=False).metrics[0]
    b = train(_resume_config(1), dataset=data, plots=False).metrics[0]
    c = train({**_resume_config(1), "seed": 8}, dataset=data, plots=False).metrics[0]
    assert a["test_elbo"] == b["test_elbo"] and a["train_elbo"] == b["train_elbo"]
    assert a["test_elbo"] != c["test_elbo"]


def test_truncated_checkpoint_gives_a_clear_error(mnist_slice, tmp_path):
    data = small(mnist_slice, 200, 50)
    train(_resume_config(1), tmp_path / "run", dataset=data, plots=False)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(RunError, match="not a readable pyrovae checkpoint"):
        load_run(tmp_path / "run")
    with pytest.raises(RunError, match="not a readable pyrovae checkpoint"):
        train(_resume_config(2), tmp_path / "run", dataset=data, resume=True, plots=False)


def test_foreign_checkpoint_and_mismatched_config_are_refused(mnist_slice, tmp_path):
    data = small(mnist_slice, 200, 50)
    train(_resume_config(1), tmp_path / "run", dataset=data, plots=False)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(RunError, match="not a pyrovae checkpoint"):
        load_run(tmp_path / "run")
    train(_resume_config(1), tmp_path / "run2", dataset=data, plots=False)
    cfg = json.loads((tmp_path / "run2" / "config.json").read_text())
    cfg["config"]["latent_dim"] = 5
    (tmp_path / "run2" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="belongs to another model"):
        load_run(tmp_path / "run2")
    with pytest.raises(RunError, match="different latent_dim"):
        train(
            {**_resume_config(2), "latent_dim": 6},
            tmp_path / "run",
            dataset=data,
            resume=True,
            plots=False,
        )


def test_existing_run_is_not_clobbered(mnist_slice, tmp_path):
    data = small(mnist_slice, 200, 50)
    train(_resume_config(1), tmp_path / "run", dataset=data, plots=False)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(RunError, match="already holds a run"):
        train(_resume_config(1), tmp_path / "run", dataset=data, plots=False)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_config_rejects_typos_and_bad_values():
    from pyrovae.config import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'latent_dim'"):
        RunConfig.from_dict({"latnt_dim": 3})
    with pytest.raises(ConfigError, match="latent_dim must be a positive integer"):
        RunConfig.from_dict({"latent_dim": 0})
    with pytest.raises(ConfigError, match="unknown guide 'nope'"):
        RunConfig.from_dict({"guide": "nope"})


def test_checkpoint_from_another_pyrovae_version_is_refused(mnist_slice, tmp_path):
    data = small(mnist_slice, 200, 50)
    train(_resume_config(1), tmp_path / "run", dataset=data, plots=False)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    state["pyrovae_version"] = "0.0.1"
    torch.save(state, ckpt)
    with pytest.raises(RunError, match="written by pyrovae 0.0.1"):
        load_run(tmp_path / "run")
