"""The base of pyrovae's own objectives: an ELBO defined by its differentiable loss."""

from __future__ import annotations

import torch
from pyro.infer import ELBO


class LossELBO(ELBO):
    """A :class:`pyro.infer.ELBO` whose subclasses define only ``differentiable_loss``.

    ``loss`` and ``loss_and_grads`` (what :class:`pyro.infer.SVI` calls) and the
    ``ELBOModule`` returned by ``objective(model, guide)`` (what the trainer calls)
    all go through it, so every entry point computes the same number.
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
    """A :class:`LossELBO` that always draws its particles in one vectorised pass."""

    def __init__(self, num_particles: int = 1, max_plate_nesting: int = 1, **kwargs):
        kwargs.pop("vectorize_particles", None)
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=True,
            **kwargs,
        )
