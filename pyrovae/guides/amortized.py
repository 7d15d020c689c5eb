"""The base of pyrovae's guides: an encoder that emits q(z | x) for each data point.

    q(z_1..B | x_1..B) = Π_i q_φ(z_i | x_i),    site "latent", inside plate "data"

A subclass defines :meth:`AmortizedGuide.posterior`; ``forward`` samples it
inside the data plate. Objectives may rely on this shape: when a guide's
``forward`` is exactly :meth:`AmortizedGuide.forward`, the whole guide is
``posterior(x)`` (see :mod:`pyrovae.infer.fast_elbo`).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from pyrovae.models.plates import data_plate


class AmortizedGuide(PyroModule):
    """A guide whose only sample site is ``"latent" ~ posterior(x)`` in the data plate."""

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(z | x) for a batch ``x`` of shape (B, D): batch shape (B,), event (latent_dim,)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        with data_plate(x, num_data):
            return pyro.sample("latent", self.posterior(x))
