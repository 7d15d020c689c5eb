"""Data-parallel training: 2 CPU processes under torchrun (gloo) equal one process.

The equality holds up to float summation order once the Monte Carlo noise is
taken out of the picture: the constant-variance guide with s = 1e-6 makes
z = μ(x) to float32 precision, so the two runs differ only in how each batch's
loss is split across processes (see :mod:`pyrovae.distributed`).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from pyrovae import distributed
from pyrovae.run import load_checkpoint
from pyrovae.train import train

CONFIG = dict(
    dataset="digits",
    guide="constant",
    posterior_scale=1e-6,
    latent_dim=4,
    hidden=[32],
    batch_size=64,
    iw_samples=0,
    threads=1,
    seed=3,
)


def _torchrun(out, epochs: int, *extra: str, processes: int = 2) -> subprocess.CompletedProcess:
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "pyrovae",
        "train",
        "--dataset=digits",
        "--guide=constant",
        "--posterior-scale=1e-6",
        "--latent=4",
        "--hidden=32",
        "--batch-size=64",
        "--iw-samples=0",
        "--threads=1",
        "--seed=3",
        f"--epochs={epochs}",
        f"--out={out}",
        "--no-progress",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


def _assert_same_parameters(a: dict, b: dict, atol: float) -> None:
    assert a["step"] == b["step"]
    for part in ("model", "guide"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], rtol=0, atol=atol, msg=key)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    done = _torchrun(out, epochs=2)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def test_two_processes_equal_one_process_on_the_combined_batches(two_process_run, tmp_path):
    out, _ = two_process_run
    single = train({**CONFIG, "epochs": 2}, tmp_path / "single", plots=False)
    parallel = load_checkpoint(out / "checkpoint.pt")
    reference = load_checkpoint(single.run.checkpoint_path)
    num_train = json.loads((out / "config.json").read_text())["num_train"]
    assert parallel["step"] == 2 * math.ceil(num_train / 64)  # every batch of both epochs
    _assert_same_parameters(parallel, reference, atol=1e-5)
    # the logged training ELBO is the sum over both processes' shards
    assert parallel["metrics"][-1]["train_elbo"] == pytest.approx(
        reference["metrics"][-1]["train_elbo"], rel=1e-5
    )
    # and training did move the parameters: the comparison is not between two initialisations
    assert parallel["metrics"][-1]["train_elbo"] > parallel["metrics"][0]["train_elbo"]


def test_only_rank_zero_writes_and_reports(two_process_run):
    out, done = two_process_run
    assert done.stdout.count("run written to") == 1
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        "checkpoint.pt",
        "config.json",
        "metrics.jsonl",
        "status.json",
        "summary.json",
    ]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_two_process_checkpoint_resumes_on_one_process(two_process_run, tmp_path):
    out, _ = two_process_run
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for name in ("checkpoint.pt", "config.json", "metrics.jsonl", "status.json"):
        (resumed / name).write_bytes((out / name).read_bytes())
    train({**CONFIG, "epochs": 3}, resumed, resume=True, plots=False)
    straight = train({**CONFIG, "epochs": 3}, tmp_path / "single", plots=False)
    _assert_same_parameters(
        load_checkpoint(resumed / "checkpoint.pt"),
        load_checkpoint(straight.run.checkpoint_path),
        atol=1e-5,
    )


def test_batches_too_small_to_shard_are_refused():
    context = distributed.Context(rank=0, world_size=4)
    with pytest.raises(ValueError, match="every batch needs at least 4 points"):
        distributed.check_batches(num_data=1001, batch_size=100, ctx=context)
    distributed.check_batches(num_data=1004, batch_size=100, ctx=context)


def test_shards_weight_the_loss_back_to_the_whole_batch():
    x = torch.arange(10.0).reshape(5, 2)
    parts = [distributed.Context(rank=r, world_size=2).shard(x) for r in range(2)]
    assert torch.equal(torch.cat([p for p, _ in parts]), x)
    # shard r's loss (N/B_r) Σ_r ℓ, weighted by W B_r / B and averaged over W: (N/B) Σ ℓ
    assert [w for _, w in parts] == [2 * 3 / 5, 2 * 2 / 5]
