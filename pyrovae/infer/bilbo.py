r"""The Batch Information Lower Bound, BILBO (Fyffe 2019).

With a constant posterior scale ``s`` — a guide ``q(z|x) = N(μ(x), diag s²)``
whose scale is the same for every data point — fit a zero-mean "floating"
prior to the batch, ``N(0, diag(m + v))`` with ``m_j`` the batch mean of
``μ_j(x)²`` and ``v_j = s_j²``. The KL of each ``N(μ(x_i), s²)`` to it,
averaged over the batch, collapses to a log term, and

.. math::

    \mathrm{BILBO}(x_{1..B}) = -\frac12 \sum_j \log\Big(1 + \frac{m_j}{v_j}\Big)
        - \frac1B \sum_i \mathbb{E}_{q(z|x_i)}\big[-\log p(x_i \mid z)\big],

the batch-averaged ELBO under the floating prior. ``½ Σ_j log(1 + m_j/v_j)``
is the capacity of a Gaussian channel with signal power ``m`` and noise ``v``:
the rate is the information the batch's codes carry.

``m`` is a statistic of the batch, so "the batch" is made precise:

* *Masking.* Points masked out of a site (``poutine.mask``, ``obs_mask``) are
  left out of ``m``, have rate 0, and are passed as a mask into an observed
  distribution whose log-probabilities are batch statistics (BAGGINS), so a
  masked or padded point changes no other point's value.
* *Data-parallel training.* Inside the forward pass of
  :func:`pyrovae.distributed.wrap` the sums behind ``m`` and the point counts are
  all-reduced over the processes (with gradients), so every process uses the
  ``m`` of the combined batch, and a ``W``-process step equals the
  single-process step (:mod:`pyrovae.distributed`).
"""

from __future__ import annotations

import torch
from torch.distributions import Normal

from pyrovae import distributed
from pyrovae.data.dataset import iter_chunks
from pyrovae.infer.beta import unit_beta
from pyrovae.infer.importance import per_point_log_prob, sample_sites, vectorized_traces
from pyrovae.infer.loss_elbo import VectorizedLossELBO
from pyrovae.models.priors import DiagonalNormal
from pyrovae.options import Needs


def _normal_of(name: str, fn) -> Normal:
    base = fn
    while not isinstance(base, Normal) and hasattr(base, "base_dist"):
        base = base.base_dist
    if not isinstance(base, Normal):
        raise ValueError(
            f"BILBO needs a Gaussian guide at site {name!r}, got {type(fn).__name__}; use the "
            "constant-variance guide (ConstantVariance, registry name 'constant')"
        )
    return base


def _data_axis(site: dict, name: str) -> int:
    """The axis of the site's (batch + event shaped) parameters that indexes data points."""
    for frame in site["cond_indep_stack"]:
        if frame.name == "data":
            return frame.dim - len(site["fn"].event_shape)
    raise ValueError(f"BILBO needs site {name!r} inside pyro.plate('data', ...)")


def _check_constant_scale(name: str, scale: torch.Tensor, axis: int) -> None:
    first = scale.narrow(axis, 0, 1)
    if not torch.equal(scale, first.expand_as(scale)):
        raise ValueError(
            f"BILBO needs a posterior scale that is the same for every data point, but guide "
            f"site {name!r} has per-point scales (e.g. the diagonal guide); use the "
            "constant-variance guide (ConstantVariance, registry name 'constant')"
        )


def _site_mask(site: dict) -> torch.Tensor | None:
    """The site's mask (``poutine.mask``) as a tensor of the site's batch shape, or None."""
    mask = site.get("mask")
    if mask is None or mask is True:
        return None
    if mask is False:
        mask = torch.zeros((), dtype=torch.bool, device=site["value"].device)
    return mask.expand(site["fn"].batch_shape)


def _batch_mean(values: torch.Tensor, axis: int, mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of ``values`` over the data axis: over the points that count, on all processes.

    One process, no mask: ``values.mean(axis)``. Otherwise sums and counts over the
    points where ``mask`` is true, all-reduced over the processes of a synchronised
    data-parallel forward pass (:func:`pyrovae.distributed.sum_over_processes`).
    """
    if mask is None and not distributed.synchronizing():
        return values.mean(axis, keepdim=True)
    if mask is None:
        total = values.sum(axis, keepdim=True)
        count = torch.full_like(total, values.shape[axis])
    else:
        keep = mask.reshape(mask.shape + (1,) * (values.dim() - mask.dim())).expand_as(values)
        total = torch.where(keep, values, 0.0).sum(axis, keepdim=True)
        count = keep.to(values.dtype).sum(axis, keepdim=True)
    total, count = distributed.sum_over_processes(torch.stack([total, count])).unbind(0)
    return total / count.clamp_min(1.0)


def _floating_prior_rate(name: str, site: dict, particle_dim: int) -> torch.Tensor:
    """``½ Σ_j log(1 + m_j / v_j)`` for one guide site, as a (K, B) per-point tensor.

    ``m_j`` is the mean of ``μ_j²`` over the points of the batch that count (not
    masked out; on every process of a synchronised data-parallel step); a masked-out
    point has rate 0.
    """
    fn = site["fn"]
    if not fn.has_rsample:
        raise ValueError(f"guide site {name!r} is not reparameterisable (no rsample)")
    normal = _normal_of(name, fn)
    shape = fn.batch_shape + fn.event_shape
    loc, scale = normal.loc.expand(shape), normal.scale.expand(shape)
    axis = _data_axis(site, name)
    _check_constant_scale(name, scale, axis)
    mask = _site_mask(site)
    m = _batch_mean(loc.pow(2), axis, mask)
    rate = 0.5 * torch.log1p(m / scale.pow(2))
    rate = rate.expand(shape).reshape(fn.batch_shape + (-1,)).sum(-1)
    if mask is not None:
        rate = torch.where(mask, rate, rate.new_zeros(()))
    return per_point_log_prob(site, name, particle_dim, log_p=rate)


def _observed_log_prob(name: str, site: dict, particle_dim: int) -> torch.Tensor:
    """The observed site's per-point log-likelihood, (K, B), its mask honoured.

    A distribution whose log-probabilities are batch statistics (``aggregates_batch``,
    e.g. BAGGINS) gets the site's mask itself, so masked points leave its aggregate.
    """
    fn, mask = site["fn"], _site_mask(site)
    if mask is None or not getattr(fn, "aggregates_batch", False):
        return per_point_log_prob(site, name, particle_dim)
    log_p = fn.mask(mask).log_prob(site["value"])
    return per_point_log_prob(site, name, particle_dim, log_p=log_p)


def _site_scale(site: dict) -> float:
    scale = site["scale"]
    return scale.item() if isinstance(scale, torch.Tensor) else float(scale)


class BILBO(VectorizedLossELBO):
    r"""Negative BILBO, scaled to the dataset: ``loss = −N · BILBO(batch)``.

    Usable like the other objectives::

        loss_fn = BILBO(num_particles=L)(model, guide)
        loss = loss_fn(x, num_data=N)      # loss / N is per data point

    The rate is computed in closed form from the guide's means and scale; the
    distortion ``−log p(x|z)`` is a Monte Carlo average over ``L`` samples
    ``z ~ q(z|x)`` per point, drawn in one vectorised pass. With a data plate of
    size ``N > B`` the batch sum is scaled by ``N / B``, as for the other
    objectives. The floating prior is an ML fit to the batch's codes, and
    gradients flow through ``m`` (it is part of the objective).

    The model's own prior at the latent sites is not used: the floating prior
    replaces it. Report the ordinary ELBO under the model's prior
    (:func:`pyrovae.infer.evaluation.elbo_terms`) beside BILBO so that runs stay
    comparable.

    .. warning:: BILBO is the ELBO under a prior fitted to the batch, **not** a
        lower bound on ``log p(x)`` under the model's fixed prior ``N(0, I)``;
        it is generally larger than that ELBO. It depends on the batch (``m`` is
        a batch statistic), so its value shifts with the batch size (under
        data-parallel training, the combined batch's size). It
        requires every latent site to be a reparameterised Gaussian inside
        ``pyro.plate("data")`` whose scale is the same for every data point
        (:class:`~pyrovae.guides.constant.ConstantVariance`); a guide with
        per-point scales raises ``ValueError`` — except on a batch of one
        point, where the check cannot tell (and ``m`` is a single ``μ²``).

    :param num_particles: L, the samples per point for the distortion.
    :param max_plate_nesting: plates nested in the model (pyrovae's models: 1).

    Reference: G. Fyffe, *There and Back Again: Unraveling the Variational
    Auto-Encoder*, arXiv:1912.10309 (2019).

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.guides import ConstantVariance, DiagonalGaussian
    >>> from pyrovae.infer import BILBO
    >>> from pyrovae.models import VAE
    >>> pyro.set_rng_seed(0)
    >>> model = VAE(16, latent_dim=2, hidden=[8])
    >>> guide = ConstantVariance(16, latent_dim=2, hidden=[8], posterior_scale=0.5)
    >>> x = torch.bernoulli(torch.full((10, 16), 0.5))
    >>> loss = BILBO(num_particles=2)(model, guide)(x, num_data=1000)
    >>> loss.shape, loss.requires_grad
    (torch.Size([]), True)
    >>> BILBO()(model, DiagonalGaussian(16, 2, hidden=[8]))(x)  # per-point scales: refused
    Traceback (most recent call last):
        ...
    ValueError: BILBO needs a posterior scale that is the same for every data point, ...
    """

    #: why D + βR is not defined for this objective (read by :mod:`pyrovae.infer.beta`)
    beta_unsupported = "BILBO requires one common scale on every site"
    needs = (
        *unit_beta(beta_unsupported),
        Needs(
            "guide",
            ("constant",),
            "its floating prior needs one posterior scale for every point (Fyffe 2019)",
        ),
    )
    #: it fits its own prior: the trainer also reports test numbers under
    #: :func:`floating_prior` frozen at the training set
    fits_prior = True

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        model_trace, guide_trace, pdim = vectorized_traces(
            model, guide, args, kwargs, self.num_particles, self.max_plate_nesting
        )
        guide_sites = dict(sample_sites(guide_trace))
        neg_bilbo, scales = 0.0, set()
        for name, site in guide_sites.items():
            neg_bilbo = neg_bilbo + _floating_prior_rate(name, site, pdim)
            scales.add(_site_scale(site))
        for name, site in sample_sites(model_trace):
            if site["is_observed"]:
                neg_bilbo = neg_bilbo - _observed_log_prob(name, site, pdim)
                scales.add(_site_scale(site))
            elif name not in guide_sites:
                raise ValueError(f"BILBO needs the guide to sample every latent site; {name!r}")
        if len(scales) != 1:
            raise ValueError(f"BILBO needs one scale on every site, got {sorted(scales)}")
        neg_bilbo = neg_bilbo.mean(0)  # average the L particles: shape (B,)
        return scales.pop() * neg_bilbo.sum()


@torch.no_grad()
def floating_prior(guide, x: torch.Tensor, batch_size: int = 1000) -> DiagonalNormal:
    r"""BILBO's floating prior fitted to a whole dataset and frozen: ``N(0, diag(m + v))``.

    ``m_j = (1/N) Σ_i μ_j(x_i)²`` and ``v_j = (1/N) Σ_i s_j(x_i)²`` (``s_j²`` for the
    constant-variance guide): the zero-mean diagonal Gaussian that minimises the average
    ``KL(q(z|x_i) ‖ p)`` over ``x``. That average is then exactly BILBO's rate
    ``½ Σ_j log(1 + m_j / v_j)`` on the whole dataset, and the model with this prior is an
    ordinary fixed-prior VAE, whose ELBO and importance-weighted log-likelihood are proper
    bounds, unlike BILBO's batch statistic (Fyffe 2019, §BILBO).

    :param guide: an amortised guide with ``posterior(x)`` (e.g. ``ConstantVariance``).
    :param x: the data to fit to, normally the training set.
    """
    device = next(guide.parameters()).device
    second, variance = 0.0, 0.0
    for xb in iter_chunks(x, batch_size):  # a tensor, or a split read from disk
        q = guide.posterior(xb.to(device))
        second = second + q.mean.pow(2).sum(0)
        variance = variance + q.variance.sum(0)
    return DiagonalNormal(((second + variance) / x.shape[0]).sqrt())
