"""The training losses ``trace``, ``meanfield``, ``iwae`` without Pyro traces, for pyrovae's pairs.

For a :class:`~pyrovae.models.vae.VAE` (unmodified ``forward``) and an
:class:`~pyrovae.guides.amortized.AmortizedGuide` (unmodified ``forward``) the
whole model is ``z ~ prior()``, ``x ~ likelihood(decoder(z))`` and the whole
guide is ``z ~ posterior(x)``, both in a data plate of size N. The estimators
then reduce to a few tensor operations, with ``z = rsample`` of L particles:

* ``trace`` (L^A):      (N/B) Σ_i (1/L) Σ_l [log p(x_i|z_il) + log p(z_il) − log q(z_il|x_i)]
* ``meanfield`` (L^B):  (N/B) Σ_i [(1/L) Σ_l log p(x_i|z_il) − KL(q(z|x_i) ‖ p(z))]
  (Monte Carlo KL where no closed form is registered, as
  :class:`pyro.infer.TraceMeanField_ELBO` does)
* ``iwae``:             (N/B) Σ_i [logsumexp_l log w_il − log L]

The L draws and the likelihood come from
:func:`pyrovae.infer.log_weights.fast_terms`, the same trace-free pass that
gives evaluation its importance weights
(:func:`pyrovae.infer.log_weights.per_point_log_weights`);
:func:`supports_fast_path` and :func:`fast_log_weights` live there and are
re-exported here.

:class:`FastELBO` computes exactly these — the same values and gradients as
:class:`pyro.infer.Trace_ELBO`, :class:`pyro.infer.TraceMeanField_ELBO` and
:class:`pyrovae.infer.iwae.IWAE_ELBO` on the same random numbers (the tests
check it) — without building Pyro traces, which costs about 20% of a training
step at batch 100 on a CPU. For any other model or guide it calls the
reference Pyro estimator, so it is always safe to use.

.. warning:: The fast path does not see Pyro effect handlers applied from
    outside (``poutine.scale``, ``condition``, ``block``...) around the
    model or guide, and skips Pyro's and torch's validation of distribution
    arguments (the trainer checks the data's support once, and every step's
    loss and gradients for non-finite values, naming the faulty site through
    the traced reference when one appears). Wrap such models
    so that their ``forward`` differs (the fast path then steps aside), or use
    the reference estimator.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro.infer import ELBO, Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import kl_divergence

from pyrovae.guides.amortized import AmortizedGuide
from pyrovae.infer.iwae import IWAE_ELBO
from pyrovae.infer.log_weights import fast_log_weights, fast_terms, supports_fast_path
from pyrovae.infer.loss_elbo import LossELBO
from pyrovae.models.vae import VAE

__all__ = ["REFERENCES", "FastELBO", "fast_log_weights", "supports_fast_path"]

REFERENCES: dict[str, type[ELBO]] = {
    "trace": Trace_ELBO,
    "meanfield": TraceMeanField_ELBO,
    "iwae": IWAE_ELBO,
}


def _analytic_kl(q, p) -> torch.Tensor | None:
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return None


class FastELBO(LossELBO):
    """One of ``trace``, ``meanfield``, ``iwae``, evaluated without Pyro traces when possible.

    :param kind: which estimator (see the module docstring).
    :param num_particles: L, samples of z per data point, drawn in one pass.
    :param kwargs: passed to the reference Pyro estimator used as fallback.

    Example:

    The same loss as Pyro's estimator on the same random numbers:

    >>> import pyro
    >>> import torch
    >>> from pyro.infer import TraceMeanField_ELBO
    >>> from pyrovae.guides import DiagonalGaussian
    >>> from pyrovae.infer.fast_elbo import FastELBO
    >>> from pyrovae.models import VAE
    >>> pyro.set_rng_seed(0)
    >>> model, guide = VAE(16, latent_dim=2, hidden=[8]), DiagonalGaussian(16, 2, hidden=[8])
    >>> x = torch.bernoulli(torch.full((10, 16), 0.5))
    >>> reference = TraceMeanField_ELBO(3, vectorize_particles=True, max_plate_nesting=1)
    >>> pyro.set_rng_seed(1)
    >>> fast = FastELBO("meanfield", num_particles=3).loss(model, guide, x, num_data=100)
    >>> pyro.set_rng_seed(1)
    >>> slow = reference.loss(model, guide, x, num_data=100)
    >>> abs(fast - slow) < 1e-4 * abs(slow)
    True
    """

    def __init__(self, kind: str = "meanfield", num_particles: int = 1, **kwargs):
        if kind not in REFERENCES:
            raise ValueError(f"FastELBO kind must be one of {', '.join(REFERENCES)}, got {kind!r}")
        kwargs.setdefault("max_plate_nesting", 1)
        kwargs.setdefault("vectorize_particles", True)
        super().__init__(num_particles=num_particles, **kwargs)
        self.kind = kind
        self.reference = REFERENCES[kind](num_particles=num_particles, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        if not (supports_fast_path(model, guide) and len(args) == 1):
            return self.reference.differentiable_loss(model, guide, *args, **kwargs)
        return self.fast_loss(model, guide, args[0], kwargs.get("num_data"))

    def fast_loss(
        self, model: VAE, guide: AmortizedGuide, x, num_data=None, beta: float = 1.0
    ) -> torch.Tensor:
        """The loss without traces; ``beta`` weights the rate terms (``D + βR``).

        With ``beta ≠ 1`` this equals :class:`pyrovae.infer.beta.BetaScaled` around the
        reference estimator (``trace`` and ``meanfield`` only; β = 0 drops the rate).
        """
        with pyro.validation_enabled(False):  # ~4% of a step; faults are caught downstream
            return self._loss(model, guide, x, num_data, beta)

    def _loss(self, model, guide, x, num_data, beta) -> torch.Tensor:
        batch = x.shape[0]
        scale = 1.0 if num_data is None else num_data / batch
        q, z, log_lik, prior = fast_terms(model, guide, x, self.num_particles, reparameterized=True)
        kl = _analytic_kl(q, prior) if self.kind == "meanfield" else None
        if kl is not None:
            per_point = log_lik.mean(0) - beta * kl
        else:  # log w with the rate weighted by β (β = 1: the weights of fast_log_weights)
            log_w = log_lik + beta * (prior.log_prob(z) - q.log_prob(z))
            if self.kind == "iwae":
                per_point = torch.logsumexp(log_w, dim=0) - math.log(self.num_particles)
            else:
                per_point = log_w.mean(0)
        return -scale * per_point.sum()
