"""The base of pyrovae's guides: an encoder that emits q(z | x) for each data point.

    q(z_1..B | x_1..B) = Π_i q_φ(z_i | x_i),    site "latent", inside plate "data"

A subclass defines :meth:`AmortizedGuide.posterior`; ``forward`` samples it
inside the data plate. Objectives may rely on this shape: when a guide's
``forward`` is exactly :meth:`AmortizedGuide.forward`, the whole guide is
``posterior(x)`` (see :mod:`pyrovae.infer.fast_elbo`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from pyrovae.models.plates import data_plate
from pyrovae.nets import mlp

#: what a guide's ``encoder`` argument may be: a network mapping flat rows (..., D) to
#: (..., outputs_per_latent · latent_dim), or a function of that output size returning one
Encoder = nn.Module | Callable[[int], nn.Module]


class AmortizedGuide(PyroModule):
    """A guide whose only sample site is ``"latent" ~ posterior(x)`` in the data plate.

    :param data_dim: D, the size of a flattened data point.
    :param latent_dim: the size of z.
    :param hidden: encoder hidden widths, from x towards z.
    :param activation: encoder nonlinearity.
    :param init: ``"default"`` or ``"aevb"``.
    :param outputs_per_latent: encoder outputs per latent dimension (2: mean and scale).
    :param encoder: the network, instead of an MLP of ``hidden`` widths: an ``nn.Module``
        mapping flat rows ``(..., D)`` to ``(..., outputs_per_latent · latent_dim)``, or a
        function of that size returning one (a network part, :mod:`pyrovae.networks`).

    The encoder reads ``x / input_scale``; ``input_scale`` is a buffer, 1 unless a
    scale-invariant likelihood sets it
    (:meth:`pyrovae.models.gaussian_heads.Baggins.fit_data_scale`).

    Example:

    A guide of your own defines ``posterior``; here a Laplace posterior:

    >>> import pyro
    >>> import pyro.distributions as dist
    >>> import torch
    >>> from pyrovae.guides import AmortizedGuide
    >>> class LaplaceGuide(AmortizedGuide):
    ...     def __init__(self, data_dim, latent_dim, hidden=(16,)):
    ...         super().__init__(data_dim, latent_dim, hidden, "tanh", "default", 2)
    ...     def posterior(self, x):
    ...         loc, raw = self.encode(x).split(self.latent_dim, dim=-1)
    ...         return dist.Laplace(loc, torch.nn.functional.softplus(raw)).to_event(1)
    >>> pyro.set_rng_seed(0)
    >>> guide = LaplaceGuide(16, latent_dim=2)
    >>> guide(torch.zeros(5, 16)).shape  # samples site "latent" in the data plate
    torch.Size([5, 2])
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
        encoder: Encoder | None = None,
    ):
        super().__init__()
        self.data_dim = int(data_dim)
        self.latent_dim = int(latent_dim)
        out_features = outputs_per_latent * self.latent_dim
        if encoder is None:
            encoder = mlp(self.data_dim, hidden, out_features, activation, init)
        elif not isinstance(encoder, nn.Module):
            encoder = encoder(out_features)
        self.encoder = encoder
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
