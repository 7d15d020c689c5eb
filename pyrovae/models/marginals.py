r"""Learned marginals m(z): a mixture of Gaussians and the VampPrior.

Alemi et al. (2018) call the prior the *marginal* m(z): the rate
``R = E log q(z|x)/m(z)`` exceeds the mutual information ``I(X;Z)`` by
``KL(q(z) ‖ m(z))``, with ``q(z)`` the aggregate posterior, so a marginal that
can match ``q(z)`` lowers the rate at no cost in distortion and moves models
towards the ``D + R = H`` line. Both marginals here are
``pyro.distributions.MixtureSameFamily`` of ``K`` diagonal Gaussians
(:class:`~pyrovae.distributions.DiagonalNormalMixture`, whose density is two
matrix products) with
``event_shape == (latent_dim,)`` and empty batch shape, like
:class:`~pyrovae.models.priors.StandardNormal`, so they drop into
:class:`~pyrovae.models.vae.VAE` unchanged:

* :class:`MixtureOfGaussians` — learned means, scales and weights;
* :class:`VampPrior` — Tomczak & Welling (2018): the encoder's own posteriors
  at ``K`` learned pseudo-inputs, ``m(z) = (1/K) Σ_k q(z | u_k)``.

.. warning:: No closed-form ``KL(q(z|x) ‖ m(z))`` exists for a mixture. The
    analytic-KL objective ``meanfield`` (Pyro's ``TraceMeanField_ELBO``) then
    falls back, site by site, to the Monte Carlo estimate
    ``log q(z|x) − log m(z)`` at the sampled z — i.e. it silently becomes the
    ``trace`` estimator (L^A) for the rate; likewise
    :func:`pyrovae.infer.evaluation.elbo_terms` reports a Monte Carlo rate
    (``eval_samples`` samples per point) for these marginals.

References: A. Alemi et al., *Fixing a Broken ELBO*, ICML 2018; J. Tomczak and
M. Welling, *VAE with a VampPrior*, AISTATS 2018.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyrovae.distributions.diagonal_normal_mixture import DiagonalNormalMixture
from pyrovae.options import Option

PRIOR_COMPONENTS = Option(
    "prior_components",
    10,
    "Components K of the mixture / pseudo-inputs of the vamp prior.",
    low=1,
    arg="num_components",
)


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class MixtureOfGaussians(nn.Module):
    r"""``m(z) = Σ_k π_k N(z; μ_k, diag σ_k²)`` with every parameter learned.

    ``π = softmax(logits)`` (initially uniform), ``σ = softplus(r) + min_scale``
    (positive by construction, initially 1), ``μ_k ~ N(0, I)`` at
    initialisation (distinct, so the components can specialise).

    :param latent_dim: the size of z.
    :param num_components: ``K``.
    :param min_scale: added to every component scale, > 0.

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.models import MixtureOfGaussians
    >>> pyro.set_rng_seed(0)
    >>> prior = MixtureOfGaussians(latent_dim=2, num_components=3)
    >>> m = prior()
    >>> m.event_shape, m.sample((5,)).shape, m.log_prob(torch.zeros(5, 2)).shape
    (torch.Size([2]), torch.Size([5, 2]), torch.Size([5]))
    >>> bool((prior.scales > 0).all())
    True
    """

    options = (PRIOR_COMPONENTS,)

    def __init__(self, latent_dim: int, num_components: int = 10, min_scale: float = 1e-3):
        super().__init__()
        self.latent_dim = _positive_int("latent size", latent_dim)
        self.num_components = _positive_int("num_components", num_components)
        if not min_scale > 0:
            raise ValueError(f"min_scale must be positive, got {min_scale!r}")
        self.min_scale = float(min_scale)
        shape = (self.num_components, self.latent_dim)
        self.locs = nn.Parameter(torch.randn(shape))
        self.raw_scales = nn.Parameter(torch.full(shape, _inverse_softplus(1.0 - self.min_scale)))
        self.logits = nn.Parameter(torch.zeros(self.num_components))

    @property
    def scales(self) -> torch.Tensor:
        """Component standard deviations, shape ``(K, latent_dim)``, all > 0."""
        return F.softplus(self.raw_scales) + self.min_scale

    def forward(self) -> DiagonalNormalMixture:
        return DiagonalNormalMixture(dist.Categorical(logits=self.logits), self.locs, self.scales)


class VampPrior(nn.Module):
    r"""The VampPrior: ``m(z) = (1/K) Σ_k q(z | u_k)`` at learned pseudo-inputs ``u_k``.

    The marginal is the guide's own posterior family evaluated at ``K``
    pseudo-inputs of the data's shape, a learned approximation of the
    aggregate posterior ``q(z) = E_{p*(x)} q(z|x)`` that minimises the rate.
    Gradients reach the pseudo-inputs and, through them, the encoder.

    The guide is held by reference (its ``posterior`` method), not as a
    submodule: its weights stay in the guide's ``state_dict``, not the model's,
    and the trainer moves it to the device itself.

    .. warning:: Pseudo-inputs are unconstrained reals, initialised uniformly in
        ``[0, 1)`` (the range of image data here); Tomczak & Welling clip them to
        ``[0, 1]`` with a hard tanh. Memory and time grow with ``K``: the
        log-density evaluates ``K`` Gaussians per sample.

    :param latent_dim: the size of z.
    :param guide: a guide with ``posterior(x)`` returning a distribution of batch
        shape ``(B,)`` and event shape ``(latent_dim,)`` (every pyrovae guide).
    :param data_dim: D, the size of a flattened data point (= of a pseudo-input).
    :param num_components: ``K``, the number of pseudo-inputs.

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.guides import DiagonalGaussian
    >>> from pyrovae.models import VAE, VampPrior
    >>> pyro.set_rng_seed(0)
    >>> guide = DiagonalGaussian(16, latent_dim=2, hidden=[8])
    >>> prior = VampPrior(latent_dim=2, guide=guide, data_dim=16, num_components=4)
    >>> model = VAE(16, latent_dim=2, hidden=[8], prior=prior)
    >>> m = prior()
    >>> m.event_shape, m.log_prob(torch.zeros(3, 2)).shape
    (torch.Size([2]), torch.Size([3]))
    """

    options = (PRIOR_COMPONENTS,)
    #: built with the guide and ``data_dim`` (its pseudo-inputs go through the encoder)
    uses_guide = True

    def __init__(self, latent_dim: int, guide: nn.Module, data_dim: int, num_components: int = 10):
        super().__init__()
        self.latent_dim = _positive_int("latent size", latent_dim)
        self.num_components = _positive_int("num_components", num_components)
        self.data_dim = _positive_int("data_dim", data_dim)
        posterior = getattr(guide, "posterior", None)
        if not callable(posterior):
            raise ValueError(
                f"the VampPrior needs a guide with a posterior(x) method; {type(guide).__name__} "
                "has none"
            )
        self._posterior = posterior
        self.pseudo_inputs = nn.Parameter(torch.rand(self.num_components, self.data_dim))
        with torch.no_grad():
            self._check_components(self._components())

    def _components(self) -> dist.TorchDistribution:
        return self._posterior(self.pseudo_inputs)

    def _check_components(self, q: dist.TorchDistribution) -> None:
        want = ((self.num_components,), (self.latent_dim,))
        if (tuple(q.batch_shape), tuple(q.event_shape)) != want:
            raise ValueError(
                f"the guide's posterior at {self.num_components} pseudo-inputs has batch shape "
                f"{tuple(q.batch_shape)} and event shape {tuple(q.event_shape)}; the VampPrior "
                f"needs {want[0]} and {want[1]}"
            )

    def forward(self) -> dist.MixtureSameFamily:
        """The mixture; a :class:`DiagonalNormalMixture` (a faster density) when the guide's
        posteriors are diagonal Gaussians, as every pyrovae guide's but the point guide's are."""
        weights = dist.Categorical(
            logits=torch.zeros(self.num_components, device=self.pseudo_inputs.device)
        )
        q = self._components()
        normal = getattr(q, "base_dist", None)
        if isinstance(normal, dist.Normal) and q.reinterpreted_batch_ndims == 1:
            return DiagonalNormalMixture(weights, normal.loc, normal.scale)
        return dist.MixtureSameFamily(weights, q)
