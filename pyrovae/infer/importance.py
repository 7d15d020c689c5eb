"""Per-data-point importance weights ``log p(x, z_k) − log q(z_k | x)``.

For a model/guide pair whose latent and observed sites all sit in a plate
named ``"data"``, :func:`log_importance_weights` draws ``K`` samples from the
guide in one vectorised pass (an outer plate over particles), replays the
model on them and returns the matrix of log-weights of shape ``(K, B)``:
one column per data point. The IWAE objective (:mod:`pyrovae.infer.iwae`)
is built on it. Evaluation and the diagnostics take their log-weights from
:func:`pyrovae.infer.log_weights.per_point_log_weights`, which calls this
function for any pair but pyrovae's own (those take a trace-free path that
gives the same numbers on the same draws).

The log-densities are the *unscaled* ones: a data plate subsampled with scale
N/B, or any ``poutine.scale``, does not enter the weights.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import prune_subsample_sites

PARTICLE_PLATE = "iw_particles"


def _site_log_prob(site: dict) -> torch.Tensor:
    fn, mask = site["fn"], site.get("mask")
    if isinstance(mask, torch.Tensor) and getattr(fn, "aggregates_batch", False):
        # a batch-level distribution (BAGGINS) must know the mask: its aggregate is taken
        # over the rows that count, which poutine.mask alone cannot tell it
        return fn.mask(mask).log_prob(site["value"])
    log_p = fn.log_prob(site["value"])
    if mask is not None and mask is not True:
        log_p = log_p.masked_fill(~mask, 0.0) if isinstance(mask, torch.Tensor) else log_p * 0
    return log_p


def _check_guide_site(name: str, site: dict, model_trace, require_rsample: bool) -> None:
    if name not in model_trace.nodes:
        raise ValueError(f"guide site {name!r} does not appear in the model")
    if require_rsample and not getattr(site["fn"], "has_rsample", False):
        raise ValueError(f"guide site {name!r} is not reparameterisable (no rsample)")


def _data_dim(site: dict, name: str) -> int:
    for frame in site["cond_indep_stack"]:
        if frame.name == "data":
            return frame.dim
    raise ValueError(
        f"site {name!r} is outside the plate named 'data'; per-data-point importance weights "
        "need every latent and observed site inside pyro.plate('data', ...); for global sites "
        "(a Bayesian decoder's weights) condition on one draw first with "
        "pyrovae.infer.full_vb.given_weights"
    )


def _per_point(log_p: torch.Tensor, particle_dim: int, data_dim: int, rank: int) -> torch.Tensor:
    """Sum ``log_p`` over every batch dim except particles and data: shape (K, B)."""
    log_p = log_p.reshape((1,) * (rank - log_p.dim()) + log_p.shape)
    log_p = log_p.movedim((particle_dim, data_dim), (0, 1))
    return log_p.reshape(log_p.shape[0], log_p.shape[1], -1).sum(-1)


def vectorized_traces(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    num_samples: int,
    max_plate_nesting: int = 1,
):
    """Guide and replayed model traces with ``num_samples`` particles in an outer plate.

    :returns: ``(model_trace, guide_trace, particle_dim)``; subsample sites pruned.
    """
    particle_dim = -(max_plate_nesting + 1)
    plate = pyro.plate(PARTICLE_PLATE, num_samples, dim=particle_dim)
    guide_trace = poutine.trace(plate(guide)).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(plate(model), trace=guide_trace)).get_trace(
        *args, **kwargs
    )
    return prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace), particle_dim


def sample_sites(trace) -> list[tuple[str, dict]]:
    """The ``(name, site)`` pairs of a trace's sample sites."""
    return [(n, s) for n, s in trace.nodes.items() if s["type"] == "sample"]


def per_point_log_prob(
    site: dict, name: str, particle_dim: int, log_p: torch.Tensor | None = None
) -> torch.Tensor:
    """A site's unscaled, masked log-density summed to shape ``(K, B)`` (particles, data).

    :param log_p: a tensor to reduce in place of the site's log-density (e.g. a KL).
    """
    if log_p is None:
        log_p = _site_log_prob(site)
    return _per_point(log_p, particle_dim, _data_dim(site, name), -particle_dim)


def log_importance_weights(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 1,
    max_plate_nesting: int = 1,
    require_rsample: bool = False,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-weights and the plate scale for ``num_samples`` guide draws per data point.

    :param max_plate_nesting: how many plates the model nests (pyrovae's: 1);
        the particle plate sits to their left.
    :param require_rsample: raise if a guide site cannot be reparameterised
        (gradient estimators that differentiate through the samples need it).
    :returns: ``(log_w, scale)`` with ``log_w`` of shape ``(num_samples, B)``,
        ``log_w[k, i] = log p(x_i, z_ik) − log q(z_ik | x_i)``, and ``scale`` the
        common scale of the sites (N/B under a subsampled data plate).
    :raises ValueError: if a site is outside the data plate, the sites carry
        different scales, or the guide samples a site the model lacks.
    """
    model_trace, guide_trace, particle_dim = vectorized_traces(
        model, guide, args, kwargs, num_samples, max_plate_nesting
    )
    log_w = 0.0
    scales = set()
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for name, site in sample_sites(trace):
            if sign < 0:
                _check_guide_site(name, site, model_trace, require_rsample)
            scale = site["scale"]
            scales.add(float(scale) if not isinstance(scale, torch.Tensor) else scale.item())
            log_w = log_w + sign * per_point_log_prob(site, name, particle_dim)
    if len(scales) > 1:
        raise ValueError(
            f"sites carry different scales {sorted(scales)}; importance weights need one scale"
        )
    return log_w, torch.tensor(scales.pop() if scales else 1.0)
