"""The amortised diagonal-Gaussian guide of Kingma & Welling (2013).

    q(z | x) = N(μ_φ(x), diag σ_φ²(x)),    site "latent", inside plate "data"

An MLP encoder emits ``2 · latent_dim`` numbers per data point: the means and
raw scales. The raw output ``r`` becomes a standard deviation by
``σ = softplus(r)`` (default; linear growth, no overflow) or ``σ = exp(r / 2)``
(``r = log σ²`` as in AEVB eq. 13). A small ``min_scale`` is added to keep
``σ > 0`` in floating point.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
import torch.nn.functional as F

from pyrovae.guides.amortized import AmortizedGuide, Encoder
from pyrovae.options import Option

SCALE_TRANSFORMS = ("softplus", "exp")

SCALE_TRANSFORM = Option(
    "scale_transform",
    "softplus",
    "Diagonal guide: σ = softplus(r), or σ = exp(r/2) with r = log σ² as in AEVB eq. 13 "
    "(and pythae).",
    choices=SCALE_TRANSFORMS,
)


class DiagonalGaussian(AmortizedGuide):
    """Amortised mean-field Gaussian guide over site ``"latent"``.

    :param data_dim: D, the size of a flattened data point.
    :param latent_dim: the size of z.
    :param hidden: encoder hidden widths, from x towards z.
    :param activation: encoder nonlinearity.
    :param scale_transform: ``"softplus"`` or ``"exp"`` (see module docstring).
    :param init: ``"default"`` or ``"aevb"``.
    :param encoder: a network instead of the MLP (see :class:`AmortizedGuide`).
    :param min_scale: added to every posterior standard deviation.

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.guides import DiagonalGaussian
    >>> pyro.set_rng_seed(0)
    >>> guide = DiagonalGaussian(16, latent_dim=2, hidden=[8])
    >>> q = guide.posterior(torch.zeros(5, 16))
    >>> q.batch_shape, q.event_shape, bool((q.base_dist.scale > 0).all())
    (torch.Size([5]), torch.Size([2]), True)
    >>> guide(torch.zeros(5, 16), num_data=100).shape  # a minibatch of 5 from 100 points
    torch.Size([5, 2])
    """

    options = (SCALE_TRANSFORM,)

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden: Sequence[int] = (400,),
        activation: str = "tanh",
        scale_transform: str = "softplus",
        init: str = "default",
        min_scale: float = 1e-5,
        encoder: Encoder | None = None,
    ):
        if scale_transform not in SCALE_TRANSFORMS:
            raise ValueError(f"scale_transform must be one of {SCALE_TRANSFORMS}")
        super().__init__(
            data_dim, latent_dim, hidden, activation, init, outputs_per_latent=2, encoder=encoder
        )
        self.scale_transform = scale_transform
        self.min_scale = float(min_scale)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(z | x) for a batch ``x`` of shape (B, D): batch shape (B,), event (latent_dim,)."""
        loc, raw = self.encode(x).split(self.latent_dim, dim=-1)
        scale = F.softplus(raw) if self.scale_transform == "softplus" else torch.exp(0.5 * raw)
        return dist.Normal(loc, scale + self.min_scale).to_event(1)
