"""Priors (marginals) p(z) over the latent code.

A prior is an ``nn.Module`` whose call returns a distribution with
``event_shape == (latent_dim,)`` and empty batch shape; the data plate
broadcasts it over the batch. Tensors live in buffers so that the prior
follows ``.to(device)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pyro.distributions as dist
import torch
from torch import nn


class StandardNormal(nn.Module):
    """``p(z) = N(0, I)``, the prior of Kingma & Welling (2013).

    Example:

    >>> from pyrovae.models import StandardNormal
    >>> p = StandardNormal(2)()
    >>> p.batch_shape, p.event_shape
    (torch.Size([]), torch.Size([2]))
    """

    def __init__(self, latent_dim: int):
        super().__init__()
        if int(latent_dim) <= 0:
            raise ValueError(f"latent size must be a positive integer, got {latent_dim}")
        self.latent_dim = int(latent_dim)
        self.register_buffer("loc", torch.zeros(self.latent_dim))
        self.register_buffer("scale", torch.ones(self.latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


class DiagonalNormal(StandardNormal):
    """``p(z) = N(0, diag σ²)`` with a fixed ``σ``, e.g. BILBO's floating prior frozen at
    the training set (:func:`pyrovae.infer.bilbo.floating_prior`).

    Example:

    >>> import torch
    >>> from pyrovae.models.priors import DiagonalNormal
    >>> DiagonalNormal(torch.tensor([0.5, 2.0]))().stddev
    tensor([0.5000, 2.0000])
    """

    def __init__(self, scale: torch.Tensor):
        super().__init__(scale.numel())
        if not bool((scale > 0).all()):
            raise ValueError("a prior scale must be positive in every dimension")
        self.scale.copy_(scale.reshape(-1))


@contextlib.contextmanager
def prior_replaced(model: nn.Module, prior: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``model`` scores and samples under ``prior`` instead of its own."""
    own = model.prior
    model.prior = prior.to(next(model.parameters()).device)
    try:
        yield model
    finally:
        model.prior = own
