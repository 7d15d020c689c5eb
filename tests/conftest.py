"""Shared fixtures: the real data folder (``../shared/data`` or ``PYROVAE_DATA``)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

# One intra-op thread: the suite's networks are small, and two OpenMP threads
# spin against each other whenever anything else runs on a 2-core machine.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("PYROVAE_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of real dataset files in their publishers' formats."""
    path = _shared_data_dir()
    if not (path / "mnist").is_dir():
        pytest.fail(f"real data not found at {path}; set PYROVAE_DATA to ../shared/data")
    return path


@pytest.fixture(scope="session")
def mnist_binarized(data_dir):
    """Static binarised MNIST from the real files (loaded once per session)."""
    from pyrovae.data import load_dataset

    return load_dataset("mnist-binarized", data_dir=data_dir, download=False)


def small(dataset, n_train: int, n_test: int):
    """A slice of a real dataset: the first ``n_train`` / ``n_test`` points."""
    import dataclasses

    def head(labels, n):
        return None if labels is None else labels[:n]

    return dataclasses.replace(
        dataset,
        train=dataset.train[:n_train],
        valid=dataset.valid[:n_test],
        test=dataset.test[:n_test],
        train_labels=head(dataset.train_labels, n_train),
        valid_labels=head(dataset.valid_labels, n_test),
        test_labels=head(dataset.test_labels, n_test),
    )


def numbers(obj):
    """Every int or float (not bool) in a JSON-like ``obj``, however deeply nested."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


def all_finite(obj) -> bool:
    """True when every number in the JSON-like ``obj`` is finite."""
    return all(math.isfinite(v) for v in numbers(obj))


def assert_png(path: Path, max_bytes: int = 300_000) -> None:
    """``path`` exists, is a PNG and is smaller than ``max_bytes``."""
    assert path.exists(), path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size < max_bytes


@pytest.fixture
def float64():
    """Torch's default dtype is float64 for the test (exact comparisons of estimators)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(autouse=True)
def _seed_and_clear():
    """Every test starts from a fixed seed and an empty Pyro param store."""
    import pyro

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
