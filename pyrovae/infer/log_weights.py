r"""Per-data-point log importance weights: the one place that computes them.

For a model p(x, z) and a guide q(z | x) whose sites all sit in a plate named
``"data"``, :func:`per_point_log_weights` draws K samples per data point,
:math:`z_{ik} \sim q(z \mid x_i)`, and returns

.. math::

    \log w_{ki} = \log p(x_i, z_{ik}) - \log q(z_{ik} \mid x_i),

a tensor of shape ``(K, B)``: one column per data point. These are the
*unscaled* log-densities (a subsampled data plate's N/B, or any
``poutine.scale``, does not enter), so each column is the input of a
per-point importance-weighted estimate (Burda, Grosse & Salakhutdinov 2016)
or of the PSIS diagnostic of the guide (Yao et al. 2018). This differs from
:func:`pyro.infer.importance.vectorized_importance_weights`, which sums the
log-densities over the data plate.

Two ways to compute them, with the same values on the same random numbers
(``tests/test_fast_elbo.py`` checks every registered likelihood head and guide):

* **trace-free** (:func:`fast_log_weights`), for pyrovae's own pairs
  (:func:`supports_fast_path`): the model is ``z ~ prior()``,
  ``x ~ likelihood(decoder(z))`` and the guide ``z ~ posterior(x)``, so the
  weights are a few tensor operations (:func:`fast_terms`, shared with the
  training loss :class:`~pyrovae.infer.fast_elbo.FastELBO`);
* **Pyro traces** (:func:`pyrovae.infer.importance.log_importance_weights`),
  for any other model/guide pair: the guide traced in a vectorised particle
  plate, the model replayed on its samples.

:func:`per_point_log_weights` picks the first where it applies and the second
otherwise. Models with global latent sites (a Bayesian decoder's weights θ)
need every site inside the data plate: condition on one draw of θ first
(:func:`pyrovae.infer.full_vb.given_weights`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pyro
import torch
from torch.distributions import Distribution

from pyrovae.guides.amortized import AmortizedGuide
from pyrovae.infer.importance import log_importance_weights
from pyrovae.models.vae import VAE


def supports_fast_path(model, guide) -> bool:
    """True when ``model`` and ``guide`` are pyrovae's VAE and an unmodified amortised guide.

    The trace-free path reads the model as ``prior()``, ``decoder`` and
    ``likelihood`` and the guide as ``posterior(x)``, which is exact only when
    neither ``forward`` is overridden. It does not see Pyro effect handlers
    applied from outside (``poutine.scale``, ``condition``, ``block``...): such
    a wrapped model is no longer a :class:`~pyrovae.models.vae.VAE` instance,
    so the traced path takes it.
    """
    return (
        isinstance(model, VAE)
        and type(model).forward is VAE.forward
        and isinstance(guide, AmortizedGuide)
        and type(guide).forward is AmortizedGuide.forward
    )


class FastTerms(NamedTuple):
    """The pieces of ``log w`` for K draws per point, computed without traces.

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.guides import DiagonalGaussian
    >>> from pyrovae.infer.log_weights import fast_terms
    >>> from pyrovae.models import VAE
    >>> pyro.set_rng_seed(0)
    >>> model, guide = VAE(16, latent_dim=2, hidden=[8]), DiagonalGaussian(16, 2, hidden=[8])
    >>> terms = fast_terms(model, guide, torch.zeros(10, 16), num_samples=3, reparameterized=True)
    >>> terms.z.shape, terms.log_likelihood.shape, terms.posterior.batch_shape
    (torch.Size([3, 10, 2]), torch.Size([3, 10]), torch.Size([10]))
    """

    #: q(z | x), batch shape (B,)
    posterior: Distribution
    #: the draws z ~ q(z | x), shape (K, B, latent_dim)
    z: torch.Tensor
    #: log p(x_i | z_ik), event-summed, shape (K, B)
    log_likelihood: torch.Tensor
    #: p(z)
    prior: Distribution


def fast_terms(
    model: VAE, guide: AmortizedGuide, x: torch.Tensor, num_samples: int, reparameterized: bool
) -> FastTerms:
    """Draw K = ``num_samples`` values of z per point of ``x`` and score the model's likelihood.

    The one trace-free pass over a pyrovae model/guide pair (see
    :func:`supports_fast_path`) that both :func:`fast_log_weights` and the
    training loss :class:`~pyrovae.infer.fast_elbo.FastELBO` build on:
    ``q = posterior(x)``, ``z ~ q`` (``rsample`` when ``reparameterized``, for
    pathwise gradients; ``sample`` otherwise — the same random numbers),
    ``log p(x | z)`` from the likelihood head, and the prior p(z).

    Validation of distribution arguments follows the caller's setting.
    """
    q = guide.posterior(x)
    z = q.rsample((num_samples,)) if reparameterized else q.sample((num_samples,))
    log_lik = model.likelihood.log_prob(model.decoder(z), x)  # (K, B)
    return FastTerms(q, z, log_lik, model.prior())


def fast_log_weights(
    model: VAE, guide: AmortizedGuide, x: torch.Tensor, num_samples: int
) -> torch.Tensor:
    """``log w[k, i] = log p(x_i, z_ik) − log q(z_ik | x_i)`` for ``num_samples`` draws, no traces.

    Requires :func:`supports_fast_path`; the same values, on the same random
    numbers, as :func:`pyrovae.infer.importance.log_importance_weights`.
    Argument validation is off, as in training; a non-finite weight still
    shows in the estimate it feeds. The draws are not reparameterised (no
    gradient flows through z).

    :returns: a tensor of shape ``(num_samples, B)``.
    """
    with pyro.validation_enabled(False):
        q, z, log_lik, prior = fast_terms(model, guide, x, num_samples, reparameterized=False)
        return log_lik + prior.log_prob(z) - q.log_prob(z)


def per_point_log_weights(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int,
    max_plate_nesting: int = 1,
) -> torch.Tensor:
    """``log p(x_i, z_ik) − log q(z_ik | x_i)`` for K fresh draws z_ik ~ q(z | x_i): shape (K, B).

    Trace-free (:func:`fast_log_weights`) when :func:`supports_fast_path`,
    through Pyro traces (:func:`~pyrovae.infer.importance.log_importance_weights`)
    otherwise; both give the same numbers on the same random numbers. The
    model and guide are called as ``fn(x)``.

    :param x: a batch of data, shape (B, ...).
    :param num_samples: K, draws per data point, in one vectorised pass.
    :param max_plate_nesting: plates nested in the model (traced path only;
        pyrovae's models: 1).
    :raises ValueError: (traced path) if a site is outside the data plate, the
        sites carry different scales, or the guide samples a site the model lacks.
    """
    if supports_fast_path(model, guide):
        return fast_log_weights(model, guide, x, num_samples)
    log_w, _ = log_importance_weights(
        model, guide, x, num_samples=num_samples, max_plate_nesting=max_plate_nesting
    )
    return log_w
