"""The importance-weighted auto-encoder bound (Burda, Grosse & Salakhutdinov 2016).

    L_K(x) = E_{z_1..K ~ q(z|x)} [ log (1/K) Σ_k p(x, z_k) / q(z_k | x) ]

computed **per data point** and summed over the minibatch, scaled by the data
plate's N/B. ``L_1`` is the ELBO; ``L_K`` increases with ``K`` towards log p(x).
"""

from __future__ import annotations

import math

import torch

from pyrovae.infer.beta import unit_beta
from pyrovae.infer.importance import log_importance_weights
from pyrovae.infer.loss_elbo import VectorizedLossELBO


class IWAE_ELBO(VectorizedLossELBO):
    """Negative IWAE bound with ``num_particles = K`` importance samples per data point.

    Unlike :class:`pyro.infer.RenyiELBO` with ``alpha=0`` — which has no
    ``differentiable_loss`` and applies the data plate's subsampling scale
    *inside* the log-mean-exp — this estimator log-mean-exps the unscaled
    per-point weights and scales the sum afterwards, so a minibatch loss is an
    unbiased estimate of ``−Σ_{i=1..N} L_K(x_i)``.

    .. warning:: Requires every latent and observed site inside
        ``pyro.plate("data")`` (no global latent variables), all sites with the
        same scale, and a fully reparameterised guide.

    :param num_particles: K, the importance samples per data point.
    :param max_plate_nesting: plates nested in the model (pyrovae's models: 1).

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.guides import DiagonalGaussian
    >>> from pyrovae.infer import IWAE_ELBO
    >>> from pyrovae.models import VAE
    >>> pyro.set_rng_seed(0)
    >>> model, guide = VAE(16, latent_dim=2, hidden=[8]), DiagonalGaussian(16, 2, hidden=[8])
    >>> x = torch.bernoulli(torch.full((10, 16), 0.5))
    >>> loss = IWAE_ELBO(num_particles=5)(model, guide)(x, num_data=1000)
    >>> loss.shape, loss.requires_grad
    (torch.Size([]), True)
    """

    #: why D + βR is not defined for this objective (read by :mod:`pyrovae.infer.beta`)
    beta_unsupported = (
        "the IWAE bound log-mean-exps whole importance weights p(x, z)/q(z|x), "
        "so it has no separate rate term to weight"
    )
    needs = unit_beta(beta_unsupported)

    def __init__(self, num_particles: int = 5, max_plate_nesting: int = 1, **kwargs):
        super().__init__(num_particles, max_plate_nesting, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        log_w, scale = log_importance_weights(
            model,
            guide,
            *args,
            num_samples=self.num_particles,
            max_plate_nesting=self.max_plate_nesting,
            require_rsample=True,
            **kwargs,
        )
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.num_particles)
        return -(scale.to(bound) * bound.sum())
