"""The constant-variance guide of Fyffe (2019): the encoder emits means only.

    q(z | x) = N(μ_φ(x), diag s²),    site "latent", inside plate "data"

with ``s`` the same for every data point: fixed, one learned number, or one
learned number per latent dimension. Fyffe proves that the ELBO admits
non-trivial optima with constant posterior variances, so the encoder needs
only ``latent_dim`` outputs — half those of
:class:`~pyrovae.guides.diagonal.DiagonalGaussian` with the same hidden widths.
A learned scale is ``s = exp(u)`` of an unconstrained parameter ``u``, positive
by construction.

Reference: G. Fyffe, *There and Back Again: Unraveling the Variational
Auto-Encoder*, arXiv:1912.10309 (2019).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import nn

from pyrovae.guides.amortized import AmortizedGuide, Encoder
from pyrovae.options import Option

LEARN_SCALE = ("none", "scalar", "vector")

POSTERIOR_SCALE = Option(
    "posterior_scale", 1.0, "Posterior σ of the constant guide (initial value if learned).", above=0
)
LEARN_SCALE_OPTION = Option(
    "learn_scale",
    "none",
    "Constant guide: keep σ fixed, or learn one scalar / one per dimension.",
    choices=LEARN_SCALE,
)


class ConstantVariance(AmortizedGuide):
    """Amortised Gaussian guide over site ``"latent"`` with a data-independent scale.

    .. warning:: Under the fixed prior ``N(0, I)`` (objectives ``trace``,
        ``meanfield``, ``iwae``) a *fixed* ``s`` is a real restriction: the
        aggregate posterior has variance ``m + s²`` per dimension, which cannot
        match the prior's 1 unless ``s < 1``; learn it (``learn_scale="scalar"``).
        Under :class:`~pyrovae.infer.bilbo.BILBO` the prior floats to the batch
        and a fixed ``s`` loses nothing (the decoder absorbs the scale of z).

    :param data_dim: D, the size of a flattened data point.
    :param latent_dim: the size of z.
    :param hidden: encoder hidden widths, from x towards z.
    :param activation: encoder nonlinearity.
    :param init: ``"default"`` or ``"aevb"``.
    :param encoder: a network instead of the MLP (see :class:`AmortizedGuide`).
    :param posterior_scale: ``s``, fixed or initial, > 0.
    :param learn_scale: ``"none"`` (``s`` fixed; a buffer), ``"scalar"`` (one
        learned ``s``) or ``"vector"`` (one learned ``s_j`` per latent dimension).

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.guides import ConstantVariance
    >>> pyro.set_rng_seed(0)
    >>> guide = ConstantVariance(16, latent_dim=2, hidden=[8], posterior_scale=0.5)
    >>> q = guide.posterior(torch.rand(5, 16))
    >>> q.base_dist.scale.unique()  # one s for every point and dimension
    tensor([0.5000])
    >>> guide.encoder[-1].out_features  # means only: latent_dim outputs
    2
    """

    options = (POSTERIOR_SCALE, LEARN_SCALE_OPTION)

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden: Sequence[int] = (400,),
        activation: str = "tanh",
        init: str = "default",
        posterior_scale: float = 1.0,
        learn_scale: str = "none",
        encoder: Encoder | None = None,
    ):
        if learn_scale not in LEARN_SCALE:
            raise ValueError(f"learn_scale must be one of {LEARN_SCALE}, got {learn_scale!r}")
        if not (isinstance(posterior_scale, (int, float)) and 0 < posterior_scale < math.inf):
            raise ValueError(f"posterior_scale must be a positive number, got {posterior_scale!r}")
        super().__init__(
            data_dim, latent_dim, hidden, activation, init, outputs_per_latent=1, encoder=encoder
        )
        self.learn_scale = learn_scale
        shape = (self.latent_dim,) if learn_scale == "vector" else ()
        log_scale = torch.full(shape, math.log(posterior_scale))
        if learn_scale == "none":
            self.register_buffer("log_scale", log_scale)
        else:
            self.log_scale = nn.Parameter(log_scale)

    def scale(self) -> torch.Tensor:
        """The posterior standard deviation ``s``: shape () or (latent_dim,)."""
        return self.log_scale.exp()

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(z | x) for a batch ``x`` of shape (B, D): batch shape (B,), event (latent_dim,)."""
        loc = self.encode(x)
        return dist.Normal(loc, self.scale().expand_as(loc)).to_event(1)
