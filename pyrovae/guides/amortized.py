"""The base of pyrovae's guides: an encoder that emits q(z | x) for each data point.

    q(z_1..B | x_1..B) = Π_i q_φ(z_i | x_i),    site "latent", inside plate "data"

A subclass defines :meth:`AmortizedGuide.posterior`; ``forward`` samples it
inside the data plate. Objectives may rely on this shape: when a guide's
``forward`` is exactly :meth:`AmortizedGuide.forward`, the whole guide is
``posterior(x)`` (see :mod:`pyrovae.infer.fast_elbo`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from pyrovae.models.plates import data_plate
from pyrovae.nets import mlp


class AmortizedGuide(PyroModule):
    """A guide whose only sample site is ``"latent" ~ posterior(x)`` in the data plate.

    :param data_dim: D, the size of a flattened data point.
    :param latent_dim: the size of z.
    :param hidden: encoder hidden widths, from x towards z.
    :param activation: encoder nonlinearity.
    :param init: ``"default"`` or ``"aevb"``.
    :param outputs_per_latent: encoder outputs per latent dimension (2: mean and scale).

    The encoder reads ``x / input_scale``; ``input_scale`` is a buffer, 1 unless a
    scale-invariant likelihood sets it
    (:meth:`pyrovae.models.gaussian_heads.Baggins.fit_data_scale`).
    """

    #: True for a point mass q(z|x) (no density in z): an auto-encoder's encoder, whose
    #: "ELBO" is no bound; the config then requires β = 0, and VAE comparisons skip it
    point_posterior: bool = False
    #: the run-configuration options this guide reads besides the networks' (:mod:`pyrovae.options`)
    options: tuple = ()

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden: Sequence[int],
        activation: str,
        init: str,
        outputs_per_latent: int,
    ):
        super().__init__()
        self.data_dim = int(data_dim)
        self.latent_dim = int(latent_dim)
        self.encoder = mlp(
            self.data_dim, hidden, outputs_per_latent * self.latent_dim, activation, init
        )
        self.register_buffer("input_scale", torch.ones(()))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's raw outputs for a batch ``x`` (read as ``x / input_scale``)."""
        return self.encoder(x / self.input_scale)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(z | x) for a batch ``x`` of shape (B, D): batch shape (B,), event (latent_dim,)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        with data_plate(x, num_data):
            return pyro.sample("latent", self.posterior(x))
