"""Evaluation in nats per data point: ELBO, rate, distortion, IW log-likelihood, MSE.

Sign convention (pyrovae-wide): the ELBO and log p(x) are reported as they
are — negative numbers for discrete data — while rate R and distortion D are
costs, with ``ELBO = −(D + R)`` (Alemi et al. 2018); R ≥ 0 always, D ≥ 0 for
discrete data (a continuous density can exceed 1, so D < 0 on Frey Face):

    D(x) = −E_{q(z|x)} log p(x | z)          (observed sites)
    R(x) =  E_{q(z|x)} [log q(z|x) − log p(z)]  = KL(q(z|x) ‖ p(z))   (latent sites)

R is computed analytically with ``torch.distributions.kl_divergence`` where a
closed form is registered for the pair (the estimator L^B), and by Monte
Carlo otherwise (L^A). Everything here works for any model/guide pair whose
sites sit in a plate named ``"data"``, not only pyrovae's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.distributions import kl_divergence

from pyrovae.infer import full_vb
from pyrovae.infer.fast_elbo import fast_log_weights, supports_fast_path
from pyrovae.infer.importance import (
    log_importance_weights,
    per_point_log_prob,
    sample_sites,
    vectorized_traces,
)


def _batches(x: torch.Tensor, batch_size: int | None):
    step = x.shape[0] if batch_size is None else int(batch_size)
    for i in range(0, x.shape[0], step):
        yield x[i : i + step]


def _analytic_kl(q_site: dict, p_site: dict) -> torch.Tensor | None:
    try:
        return kl_divergence(q_site["fn"], p_site["fn"])
    except NotImplementedError:
        return None


@torch.no_grad()
def iw_log_likelihood(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int,
    chunk_size: int | None = None,
    batch_size: int | None = None,
    max_plate_nesting: int = 1,
) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) for each data point (Burda et al. 2016).

        log p̂(x) = log (1/K) Σ_k p(x, z_k) / q(z_k | x),   z_k ~ q(z | x)

    a stochastic lower bound on log p(x) in expectation that tightens as K grows.

    :param x: data of shape (N, D); the model and guide are called as ``fn(x)``.
    :param num_samples: K.
    :param chunk_size: how many of the K samples are drawn in one vectorised
        pass (default: all); memory grows with ``chunk_size × batch_size``.
    :param batch_size: how many data points per pass (default: all). On a CPU keep
        ``chunk_size × batch_size × D`` floats under ~32 MB (e.g. 100 × 50 at D = 784):
        larger tensors are freshly mmapped every pass, and the page faults cost ~40%.
    :returns: a tensor of shape (N,), in nats.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if full_vb.is_full_vb(guide):  # global weights: log-mean-exp over θ ~ q(θ) as well
        return full_vb.iw_log_likelihood(
            model, guide, x, num_samples, chunk_size, batch_size, max_plate_nesting
        )
    if supports_fast_path(model, guide):  # pyrovae's own pairs: no Pyro traces (same numbers)

        def log_weights(xb, k):
            return fast_log_weights(model, guide, xb, k)
    else:

        def log_weights(xb, k):
            return log_importance_weights(
                model, guide, xb, num_samples=k, max_plate_nesting=max_plate_nesting
            )[0]

    return chunked_log_mean_exp(log_weights, x, num_samples, chunk_size, batch_size)


@torch.no_grad()
def chunked_log_mean_exp(
    log_weights: Callable[[torch.Tensor, int], torch.Tensor],
    x: torch.Tensor,
    num_samples: int,
    chunk_size: int | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """``log (1/K) Σ_k w_k`` per data point, the K log-weights drawn a chunk at a time.

    :param log_weights: ``log_weights(xb, k)`` → tensor ``(k, len(xb))`` of ``log w``
        for ``k`` fresh samples per point of the batch ``xb``.
    :param chunk_size: samples per call (default: all K; 1 is a plain loop over k).
    :param batch_size: data points per call (default: all).
    :returns: a tensor of shape (N,).
    """
    chunk = num_samples if chunk_size is None else max(1, min(int(chunk_size), num_samples))
    out = []
    for xb in _batches(x, batch_size):
        acc = torch.full((xb.shape[0],), -math.inf, device=xb.device)
        done = 0
        while done < num_samples:
            k = min(chunk, num_samples - done)
            acc = torch.logaddexp(acc, torch.logsumexp(log_weights(xb, k), dim=0))
            done += k
        out.append(acc - math.log(num_samples))
    return torch.cat(out)


@torch.no_grad()
def elbo_terms(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int = 1,
    analytic_kl: bool = True,
    batch_size: int | None = None,
    max_plate_nesting: int = 1,
    num_data: int | None = None,
) -> dict[str, torch.Tensor]:
    """Per-data-point ELBO, rate and distortion, each of shape (N,).

    :param num_samples: Monte Carlo samples per point for the expectations.
    :param analytic_kl: use closed-form KLs where registered (L^B); else L^A.
    :param num_data: the training set size; needed (and only used) by full-VB
        guides, whose ELBO includes KL(q(θ) ‖ p(θ)) / N
        (:func:`pyrovae.infer.full_vb.elbo_terms`, which adds ``"weight_kl"``).
    :returns: ``{"elbo", "rate", "distortion"}`` with ``elbo = −(rate + distortion)``.
    """
    if full_vb.is_full_vb(guide):
        return full_vb.elbo_terms(
            model, guide, x, num_data, num_samples, analytic_kl, batch_size, max_plate_nesting
        )
    rates, distortions = [], []
    for xb in _batches(x, batch_size):
        model_trace, guide_trace, pdim = vectorized_traces(
            model, guide, (xb,), {}, num_samples, max_plate_nesting
        )
        rate = torch.zeros(num_samples, xb.shape[0], device=xb.device)
        for name, q_site in sample_sites(guide_trace):
            p_site = model_trace.nodes[name]
            kl = _analytic_kl(q_site, p_site) if analytic_kl else None
            if kl is None:
                rate = rate + per_point_log_prob(q_site, name, pdim)
                rate = rate - per_point_log_prob(p_site, name, pdim)
            else:
                rate = rate + per_point_log_prob(q_site, name, pdim, log_p=kl)
        distortion = torch.zeros_like(rate)
        for name, site in sample_sites(model_trace):
            if site["is_observed"]:
                distortion = distortion - per_point_log_prob(site, name, pdim)
        rates.append(rate.mean(0))
        distortions.append(distortion.mean(0))
    rate, distortion = torch.cat(rates), torch.cat(distortions)
    return {"elbo": -(rate + distortion), "rate": rate, "distortion": distortion}


def information_bounds(
    entropy: float, rate: torch.Tensor | float, distortion: torch.Tensor | float
) -> tuple[float, float]:
    """Alemi et al. (2018), eq. 2: ``H − D ≤ I(X; Z) ≤ R``, as ``(H − D, R)`` in nats.

    ``I(X; Z)`` is the mutual information of the encoder's joint
    ``p*(x) q(z|x)``; ``R`` exceeds it by ``KL(q(z) ‖ m(z))`` and ``H − D`` falls
    short by the decoder's expected error ``E_{q(z)} KL(q(x|z) ‖ p(x|z))``.
    Per-point ``rate`` and ``distortion`` (e.g. from :func:`elbo_terms`) are
    averaged over the points.

    .. warning:: Needs the entropy ``H`` of the true data distribution, known
        only for synthetic data (:mod:`pyrovae.models.toy`); for image datasets
        ``H`` is unknown. The bounds hold for the expectations under ``p*``: on a
        finite sample they hold only up to sampling error.
    """
    rate = torch.as_tensor(rate, dtype=torch.float64).mean().item()
    distortion = torch.as_tensor(distortion, dtype=torch.float64).mean().item()
    return float(entropy) - distortion, rate


@torch.no_grad()
def reconstruction_mse(model, guide, x: torch.Tensor, batch_size: int | None = None):
    """Mean squared error per pixel of ``E[x | z = E_q[z | x]]`` for each point: shape (N,).

    Needs a pyrovae guide (``guide.posterior``) and model (``model.decode``). A
    full-VB model decodes with the mean of q(θ) (:func:`full_vb.posterior_weights`).
    """
    out = []
    with full_vb.posterior_weights(guide):
        for xb in _batches(x, batch_size):
            recon = model.decode(guide.posterior(xb).mean)
            out.append((recon - xb).pow(2).mean(-1))
    return torch.cat(out)
