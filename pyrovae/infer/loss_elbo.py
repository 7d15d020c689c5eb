"""The base of pyrovae's own objectives: an ELBO defined by its differentiable loss."""

from __future__ import annotations

import torch
from pyro.infer import ELBO


class LossELBO(ELBO):
    """A :class:`pyro.infer.ELBO` whose subclasses define only ``differentiable_loss``.

    ``loss`` and ``loss_and_grads`` (what :class:`pyro.infer.SVI` calls) and the
    ``ELBOModule`` returned by ``objective(model, guide)`` (what the trainer calls)
    all go through it, so every entry point computes the same number.

    Example:

    An objective of your own defines ``differentiable_loss``; here ``−E_q[log p(x|z)]`` alone:

    >>> import pyro
    >>> import torch
    >>> from pyro import poutine
    >>> from pyrovae.guides import DiagonalGaussian
    >>> from pyrovae.infer.loss_elbo import LossELBO
    >>> from pyrovae.models import VAE
    >>> class Distortion(LossELBO):
    ...     def differentiable_loss(self, model, guide, *args, **kwargs):
    ...         guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    ...         trace = poutine.trace(poutine.replay(model, guide_trace)).get_trace(*args, **kwargs)
    ...         trace.compute_log_prob()
    ...         return -trace.nodes["obs"]["log_prob_sum"]
    >>> pyro.set_rng_seed(0)
    >>> model, guide = VAE(16, latent_dim=2, hidden=[8]), DiagonalGaussian(16, 2, hidden=[8])
    >>> x = torch.bernoulli(torch.full((10, 16), 0.5))
    >>> loss_fn = Distortion()(model, guide)
    >>> loss = loss_fn(x)
    >>> isinstance(Distortion().loss(model, guide, x), float), loss.requires_grad
    (True, True)
    """

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not use ELBO._get_trace")

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()


class VectorizedLossELBO(LossELBO):
    """A :class:`LossELBO` that always draws its particles in one vectorised pass.

    Example:

    >>> from pyrovae.infer import IWAE_ELBO
    >>> from pyrovae.infer.loss_elbo import VectorizedLossELBO
    >>> objective = IWAE_ELBO(num_particles=5, vectorize_particles=False)
    >>> isinstance(objective, VectorizedLossELBO), objective.vectorize_particles
    (True, True)
    """

    def __init__(self, num_particles: int = 1, max_plate_nesting: int = 1, **kwargs):
        kwargs.pop("vectorize_particles", None)
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=True,
            **kwargs,
        )
