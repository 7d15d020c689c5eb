"""Training objectives by name: ``make_objective("meanfield", num_particles=L)``.

* ``trace`` — :class:`pyro.infer.Trace_ELBO`, the SGVB estimator **L^A** of
  Kingma & Welling (2013, eq. 7): Monte Carlo estimate of the whole ELBO.
* ``meanfield`` — :class:`pyro.infer.TraceMeanField_ELBO`, **L^B** (eq. 10):
  closed-form KL(q(z|x) ‖ p(z)) plus a Monte Carlo reconstruction term.
* ``iwae`` — :class:`pyrovae.infer.iwae.IWAE_ELBO`, the importance-weighted
  bound of Burda et al. (2016), per data point.

L samples per data point are drawn in one vectorised pass
(``vectorize_particles=True``); pyrovae models nest one plate. With
``fast=True`` (the default) these three are evaluated by
:class:`pyrovae.infer.fast_elbo.FastELBO`: the same numbers and gradients
without Pyro traces for pyrovae's own VAE and guides, the Pyro estimator for
anything else.
"""

from __future__ import annotations

from pyro.infer import ELBO

from pyrovae import registry
from pyrovae.infer.beta import BETA
from pyrovae.infer.fast_elbo import REFERENCES, FastELBO
from pyrovae.options import Option

PARTICLES = Option("particles", 1, "Samples per data point L.", low=1, short="-L")
#: the options every objective reads (each objective may declare more)
OPTIONS = (PARTICLES, BETA)


def make_objective(name: str, num_particles: int = 1, fast: bool = True, **kwargs) -> ELBO:
    """The ELBO estimator registered as ``name`` with ``num_particles`` samples per point.

    :param fast: use the trace-free evaluation where it applies (see module docstring).

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.guides import DiagonalGaussian
    >>> from pyrovae.infer import make_objective
    >>> from pyrovae.models import VAE
    >>> pyro.set_rng_seed(0)
    >>> model, guide = VAE(16, latent_dim=2, hidden=[8]), DiagonalGaussian(16, 2, hidden=[8])
    >>> loss_fn = make_objective("meanfield", num_particles=2)(model, guide)  # an nn.Module
    >>> optimizer = torch.optim.Adam(loss_fn.parameters(), lr=1e-3)
    >>> x = torch.bernoulli(torch.full((10, 16), 0.5))
    >>> loss = loss_fn(x, num_data=1000)  # ≈ 1000 × (−ELBO per point)
    >>> loss.backward()
    >>> optimizer.step()
    >>> loss.shape, bool(loss > 0)
    (torch.Size([]), True)
    """
    if int(num_particles) < 1:
        raise ValueError(f"particles must be a positive integer, got {num_particles}")
    cls = registry.OBJECTIVES.get(name)
    if fast and name in REFERENCES and cls is REFERENCES[name]:
        return FastELBO(name, num_particles=int(num_particles), **kwargs)
    kwargs.setdefault("max_plate_nesting", 1)
    kwargs.setdefault("vectorize_particles", True)
    return cls(num_particles=int(num_particles), **kwargs)
