"""One likelihood head of each registered kind, for the tests that run every one of them."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from pyrovae.models import (
    MSE,
    Baggins,
    Bernoulli,
    BoundedGaussian,
    GaussianFixed,
    GaussianLearned,
    GaussianShared,
)


def every_head(d: int) -> dict[str, Callable[[], nn.Module]]:
    """Registry name → a factory of that head on ``d``-dimensional data (fixed σ 0.3, shared σ
    0.5, a 0.05 variance floor, BAGGINS' information cap 2)."""
    return {
        "bernoulli": lambda: Bernoulli(d),
        "gaussian-fixed": lambda: GaussianFixed(d, sigma=0.3),
        "mse": lambda: MSE(d),
        "gaussian-learned": lambda: GaussianLearned(d),
        "gaussian-shared": lambda: GaussianShared(d, sigma=0.5),
        "bounded-gaussian": lambda: BoundedGaussian(d, floor=0.05),
        "baggins": lambda: Baggins(d, info_max=2.0),
    }
