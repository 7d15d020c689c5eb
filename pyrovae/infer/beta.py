r"""The β-weighted objective ``D + βR`` of Alemi et al. (2018), for any trace-based ELBO.

Rate and distortion split the negative ELBO (:mod:`pyrovae.infer.evaluation`):

.. math::

    -\mathrm{ELBO} = D + R, \qquad
    D = -\mathbb{E}_{q(z|x)} \log p(x \mid z), \qquad
    R = \mathbb{E}_{q(z|x)} \log \frac{q(z \mid x)}{m(z)} .

Minimising ``D + βR`` traces the rate–distortion frontier: ``β = 1`` is the
VAE, ``β < 1`` buys a higher rate (more information in z), ``β > 1`` a lower
one (Higgins et al.'s β-VAE). Every log-density of the rate lives at the
latent site(s), in the model (``log m(z)``) and in the guide (``log q(z|x)``),
so ``D + βR`` is the ordinary objective with those sites' log-densities
multiplied by β — Pyro's ``poutine.scale`` restricted to named sites, on
**both** sides:

* :class:`~pyro.infer.Trace_ELBO` (L^A) scores ``log m(z) − log q(z|x)`` with
  each side's own scale, so both must carry β;
* :class:`~pyro.infer.TraceMeanField_ELBO` (L^B) computes the analytic KL and
  multiplies it by the **guide** site's scale (a scale on the model side alone
  does nothing); where no closed-form KL exists (mixture or VampPrior
  marginals) it falls back to ``log m(z) − log q(z|x)``, again scaled.

``β = 0`` cannot be a scale (``poutine.scale`` requires ``scale > 0``), so it is
a mask: the latent sites' log-densities (and analytic KLs) become exact zeros,
while z is still drawn by the reparameterised guide, so the gradient is that of
the distortion alone.

Reference: A. Alemi, B. Poole, I. Fischer, J. Dillon, R. A. Saurous, K. Murphy,
*Fixing a Broken ELBO*, ICML 2018.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from pyro.infer import ELBO
from pyro.poutine.messenger import Messenger

from pyrovae.infer.loss_elbo import LossELBO
from pyrovae.options import Needs, Option

LATENT_SITES = ("latent",)

BETA = Option(
    "beta",
    1.0,
    "Train D + βR (Alemi et al.): β < 1 favours rate, β > 1 compression; the test ELBO "
    "stays β = 1.",
    low=0,
)


def unit_beta(reason: str) -> tuple[Needs, ...]:
    """The rules of an objective that cannot weight its rate: β = 1 and a constant schedule."""
    return (Needs("beta", (1.0,), reason), Needs("beta_schedule", ("constant",), reason))


def _check_beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise ValueError(f"beta must be a number >= 0, got {beta!r}")
    beta = float(beta)
    if not (beta >= 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    return beta


# attributes under which a wrapping objective keeps the estimator it evaluates
_WRAPPED = ("elbo", "reference")


def beta_unsupported_reason(objective: ELBO | type) -> str | None:
    """Why ``objective`` (an ELBO or its class) cannot weight its rate, or None if it can.

    An ELBO instance that wraps another (``.elbo`` as :class:`BetaScaled`, or
    ``.reference`` as :class:`~pyrovae.infer.fast_elbo.FastELBO`) is judged with it.
    """
    cls = objective if isinstance(objective, type) else type(objective)
    declared = getattr(cls, "beta_unsupported", None)  # a class states why, e.g. IWAE_ELBO
    if declared:
        return declared
    for name in _WRAPPED if not isinstance(objective, type) else ():
        inner = getattr(objective, name, None)
        if isinstance(inner, ELBO) and inner is not objective:
            reason = beta_unsupported_reason(inner)
            if reason is not None:
                return reason
    return None


def check_beta_supported(objective: ELBO | type, beta: float) -> None:
    """Raise ``ValueError`` if ``objective`` cannot train ``D + βR`` at this β.

    Every objective supports ``β = 1`` (the unweighted ELBO). An objective class
    that cannot weight its rate says why in a ``beta_unsupported`` string (IWAE,
    BILBO); those are refused for ``β ≠ 1``.
    """
    beta = _check_beta(beta)
    if beta == 1.0:
        return
    reason = beta_unsupported_reason(objective)
    if reason is not None:
        name = objective.__name__ if isinstance(objective, type) else type(objective).__name__
        raise ValueError(
            f"{name} cannot train D + βR with β = {beta:g}: {reason}; use β = 1 (constant "
            "schedule) or a trace-based objective (trace, meanfield)"
        )


class ScaleSitesMessenger(Messenger):
    """``poutine.scale`` restricted to the sample sites named in ``sites``.

    Multiplies the named sites' scale by ``scale``; ``scale = 0`` masks them
    instead (their log-densities become zeros), which ``poutine.scale`` refuses.
    Other sites (e.g. the observation ``"obs"``) are untouched.

    :param scale: the factor, a finite number >= 0.
    :param sites: names of the sites to scale.

    Example:

    >>> import pyro
    >>> import pyro.distributions as dist
    >>> from pyro import poutine
    >>> from pyrovae.infer import scale_sites
    >>> def model():
    ...     pyro.sample("latent", dist.Normal(0.0, 1.0))
    ...     pyro.sample("obs", dist.Normal(0.0, 1.0), obs=0.0)
    >>> trace = poutine.trace(scale_sites(model, 0.5)).get_trace()
    >>> trace.nodes["latent"]["scale"], trace.nodes["obs"]["scale"]
    (0.5, 1.0)
    """

    def __init__(self, scale: float, sites: Iterable[str] = LATENT_SITES):
        super().__init__()
        self.scale = _check_beta(scale)
        self.sites = frozenset(sites)

    def _process_message(self, msg) -> None:
        if msg["type"] != "sample" or msg["name"] not in self.sites:
            return
        if self.scale == 0.0:
            msg["mask"] = False
        else:
            msg["scale"] = self.scale * msg["scale"]


def scale_sites(
    fn: Callable | None = None, scale: float = 1.0, sites: Iterable[str] = LATENT_SITES
):
    """Handler form of :class:`ScaleSitesMessenger`: ``scale_sites(model, 0.5)``."""
    messenger = ScaleSitesMessenger(scale, sites)
    return messenger if fn is None else messenger(fn)


class BetaScaled(LossELBO):
    r"""``D + βR``: any trace-based ELBO with the latent sites' log-densities scaled by β.

    ::

        objective = BetaScaled(TraceMeanField_ELBO(), beta=0.5)
        loss_fn = objective(model, guide)         # an nn.Module, like any Pyro ELBO
        loss = loss_fn(x, num_data=N)             # ≈ N · (D + 0.5 R) per point
        objective.beta = 0.8                      # β is mutable (schedules)

    The wrapped model and guide run under :func:`scale_sites` with the same β,
    so the estimator inside is unchanged. At ``β = 1`` model and guide are passed
    to it untouched, so loss and gradients are bit for bit those of the wrapped
    objective (wrapping a model in any callable, even a lambda, changes the order
    of Pyro's floating-point sums in the last bit).

    .. warning:: Only the sites named in ``sites`` (default ``"latent"``) are
        scaled: a model with other latent sites keeps them at weight 1. The
        value returned is ``D + βR``, not the negative ELBO; evaluate the ELBO
        with :func:`pyrovae.infer.evaluation.elbo_terms`. Objectives built on
        importance weights (:class:`~pyrovae.infer.iwae.IWAE_ELBO`, BILBO) are
        refused for ``β ≠ 1`` (:func:`check_beta_supported`). The latent sites
        must be reparameterised (every pyrovae guide is): for a discrete site,
        ``Trace_ELBO``'s score-function term is scaled with the site, which is
        *not* the gradient of ``D + βR`` (and ``β = 0`` masks it away); enumerate
        such sites instead (``TraceEnum_ELBO``, exact: see :mod:`pyrovae.models.toy`).

    :param elbo: the objective to weight (``Trace_ELBO``, ``TraceMeanField_ELBO``, ...).
    :param beta: β >= 0.
    :param sites: the latent sites whose log-densities form the rate.

    Reference: Alemi et al., *Fixing a Broken ELBO*, ICML 2018; Higgins et al.,
    *β-VAE*, ICLR 2017.

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyro.infer import TraceMeanField_ELBO
    >>> from pyrovae.guides import DiagonalGaussian
    >>> from pyrovae.infer import BetaScaled, IWAE_ELBO
    >>> from pyrovae.models import VAE
    >>> pyro.set_rng_seed(0)
    >>> model, guide = VAE(16, latent_dim=2, hidden=[8]), DiagonalGaussian(16, 2, hidden=[8])
    >>> x = torch.bernoulli(torch.full((10, 16), 0.5))
    >>> objective = BetaScaled(TraceMeanField_ELBO(), beta=1.0)
    >>> pyro.set_rng_seed(1)
    >>> weighted = objective.loss(model, guide, x)
    >>> pyro.set_rng_seed(1)
    >>> weighted == TraceMeanField_ELBO().loss(model, guide, x)  # β = 1: the ELBO itself
    True
    >>> objective.beta = 0.5  # D + 0.5 R from the next step on
    >>> BetaScaled(IWAE_ELBO(), beta=0.5)
    Traceback (most recent call last):
        ...
    ValueError: IWAE_ELBO cannot train D + βR with β = 0.5: ...
    """

    def __init__(self, elbo: ELBO, beta: float = 1.0, sites: Iterable[str] = LATENT_SITES):
        super().__init__(
            num_particles=elbo.num_particles,
            max_plate_nesting=elbo.max_plate_nesting,
            vectorize_particles=elbo.vectorize_particles,
        )
        self.elbo = elbo
        self.sites = tuple(sites)
        self.beta = beta

    @property
    def beta(self) -> float:
        """β, the weight of the rate; settable between steps."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        check_beta_supported(self.elbo, value)
        self._beta = _check_beta(value)

    def _scaled(self, fn: Callable) -> Callable:
        # β = 1 passes ``fn`` through: any wrapper (even a lambda) reorders Pyro's float sums
        return fn if self._beta == 1.0 else scale_sites(fn, self._beta, self.sites)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        # not fast_elbo itself: it imports iwae, which imports this module
        from pyrovae.infer.log_weights import supports_fast_path

        fast_loss = getattr(self.elbo, "fast_loss", None)  # FastELBO's trace-free D + βR
        if (
            fast_loss is not None
            and self._beta != 1.0
            and len(args) == 1
            and supports_fast_path(model, guide)
        ):  # the same D + βR without traces
            return fast_loss(model, guide, args[0], kwargs.get("num_data"), self._beta)
        return self.elbo.differentiable_loss(
            self._scaled(model), self._scaled(guide), *args, **kwargs
        )
