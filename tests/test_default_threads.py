"""The command line's default thread count: from the work of a step and the idle cores.

Torch's default of one OpenMP thread per core spins against other load; without
``--threads`` (or ``OMP_NUM_THREADS``) the command line gives a run one thread per
2·10⁸ FLOPs of a training step, at most the cores not already busy, and records the
count in the run's config.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from pyrovae import resources
from pyrovae.build import build_model
from pyrovae.cli import main
from pyrovae.config import RunConfig

README_JOB = ["train", "--latent", "2", "--iw-samples", "0", "--quiet"]


@pytest.fixture
def threads_restored(monkeypatch):
    """The test process's torch threads and OpenMP environment, put back afterwards."""
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("cores", "busy", "idle"),
    [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 6.7, 1), (8, 2.6, 5), (1, 0.0, 1)],
)
def test_idle_cores_are_the_usable_ones_not_busy_at_least_one(cores, busy, idle):
    assert resources.idle_cores(cores, busy) == idle


def test_threads_need_work_per_step_and_never_exceed_the_idle_cores():
    per = resources.FLOPS_PER_THREAD
    assert resources.choose_threads(0.0, idle=8) == 1
    assert resources.choose_threads(1.99 * per, idle=8) == 1
    assert resources.choose_threads(2.0 * per, idle=8) == 2
    assert resources.choose_threads(5.5 * per, idle=8) == 5
    assert resources.choose_threads(100 * per, idle=3) == 3
    assert resources.choose_threads(100 * per, idle=1) == 1


def _matmul_flops(config: RunConfig, shape) -> float:
    """6 × batch × (weights of every linear layer): forward and backward of an MLP VAE."""
    model, guide = build_model(config, shape)
    weights = sum(
        m.weight.numel()
        for part in (model, guide)
        for m in part.modules()
        if isinstance(m, nn.Linear)
    )
    return 6.0 * config.batch_size * weights


@pytest.mark.parametrize(
    ("options", "shape", "threads"),
    [
        ({"latent_dim": 2}, (64,), 1),  # the README's job: digits, 64-400-2, batch 100
        ({"latent_dim": 40}, (784,), 2),  # an MNIST VAE, 784-400-40, batch 100
    ],
)
def test_the_work_of_a_step_is_its_matrix_products_counted_on_the_meta_device(
    options, shape, threads
):
    config = RunConfig.from_dict(options).for_data(True)
    work = resources.step_flops(config, shape)
    assert work == pytest.approx(_matmul_flops(config, shape), rel=1e-6)
    assert resources.choose_threads(work, idle=2) == threads


def test_a_part_that_cannot_run_on_meta_is_counted_through_a_simpler_run():
    # BAGGINS reads its batch's values: the networks' work is counted without it
    config = RunConfig.from_dict({"likelihood": "baggins", "guide": "constant", "latent_dim": 2})
    work = resources.step_flops(config, (64,))
    assert work == pytest.approx(_matmul_flops(config, (64,)), rel=0.05)


def test_the_command_line_lets_openmp_sleep_and_chooses_unless_told():
    environ: dict[str, str] = {}
    undo = resources.command_line_threads(environ)
    assert environ["OMP_WAIT_POLICY"] == "PASSIVE" and resources.automatic_threads()
    undo()
    assert not resources.automatic_threads()  # the Python API keeps torch's setting
    environ = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"}
    undo = resources.command_line_threads(environ)
    assert environ["OMP_WAIT_POLICY"] == "ACTIVE" and not resources.automatic_threads()
    undo()


def test_a_command_line_run_records_the_threads_it_chose(tmp_path, threads_restored, monkeypatch):
    monkeypatch.setattr(resources, "idle_cores", lambda cores=None, busy=None: 2)
    chosen = []
    set_threads = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (chosen.append(n), set_threads(n)))
    torch.set_num_threads(2)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [*README_JOB, "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    # small work: one thread though two cores are idle, recorded for a resume to keep
    assert chosen[1:] == [1, 2]  # then the calling process's count is put back
    assert json.loads((out / "config.json").read_text())["config"]["threads"] == 1
    # the evaluation commands take the idle cores
    monkeypatch.setattr(resources, "idle_cores", lambda cores=None, busy=None: 1)
    chosen.clear()
    result = CliRunner().invoke(main, ["sample", str(out), "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    assert chosen == [1, 2] and torch.get_num_threads() == 2


def test_omp_num_threads_or_threads_are_obeyed(tmp_path, threads_restored, monkeypatch):
    monkeypatch.setattr(resources, "idle_cores", lambda cores=None, busy=None: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [*README_JOB, "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 2  # the environment's choice
    assert json.loads((out / "config.json").read_text())["config"]["threads"] is None
