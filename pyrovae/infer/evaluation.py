r"""Evaluation in nats per data point: ELBO, rate, distortion, IW log-likelihood, MSE.

Sign convention (pyrovae-wide): the ELBO and log p(x) are reported as they
are — negative numbers for discrete data — while rate R and distortion D are
costs, with ``ELBO = −(D + R)`` (Alemi et al. 2018); R ≥ 0 always, D ≥ 0 for
discrete data (a continuous density can exceed 1, so D < 0 on Frey Face):

    D(x) = −E_{q(z|x)} log p(x | z)          (observed sites)
    R(x) =  E_{q(z|x)} [log q(z|x) − log p(z)]  = KL(q(z|x) ‖ p(z))   (latent sites)

R is computed analytically with ``torch.distributions.kl_divergence`` where a
closed form is registered for the pair (the estimator L^B), and by Monte
Carlo otherwise (L^A). The importance-weighted log-likelihood (Burda et al.
2016) log-mean-exps the per-point log-weights of
:func:`pyrovae.infer.log_weights.per_point_log_weights` (trace-free for
pyrovae's own pairs, Pyro traces otherwise). Everything here works for any
model/guide pair whose sites sit in a plate named ``"data"``, not only
pyrovae's.

**Full variational Bayes.** A full-VB guide (:func:`pyrovae.infer.full_vb.is_full_vb`)
also fits q(θ) over global decoder weights. Each estimator then draws
θ_1..S ~ q(θ) (:func:`~pyrovae.infer.full_vb.weight_draws`), applies the
per-point estimator to the local pair at each θ_s
(:func:`~pyrovae.infer.full_vb.given_weights`), and combines:

* :func:`elbo_terms` averages rate and distortion over the S draws and adds
  ``weight_kl`` = KL(q(θ) ‖ p(θ)) / N, N the *training* set size (the weight
  KL is paid once for the whole training set; Kingma & Welling 2013,
  appendix F): ``elbo = −(rate + distortion + weight_kl)``;
* :func:`iw_log_likelihood` takes a log-mean-exp over the S draws of the
  per-draw IW estimates (:func:`log_likelihood_draws`),

  .. math::

      \log \hat p(x) = \log \frac1S \sum_{s=1}^S \frac1K \sum_{k=1}^K
          \frac{p(x, z_{sk} \mid θ_s)}{q(z_{sk} \mid x)},

  whose inside is an unbiased estimate of ``p_q(x) = ∫ p(x|θ) q(θ) dθ``, the
  predictive density of x under the approximate posterior: by Jensen a
  stochastic lower bound on ``log p_q(x)`` that tightens as S and K grow. It
  is *not* the marginal likelihood under the prior, nor a bound on it, and it
  is per point: the test set's joint predictive density
  ``∫ Π_i p(x_i|θ) q(θ) dθ`` is not the product of these;
* :func:`reconstruction_mse` decodes with the plug-in θ̄, the mean of q(θ).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch.distributions import kl_divergence

from pyrovae.infer import full_vb
from pyrovae.infer.importance import per_point_log_prob, sample_sites, vectorized_traces
from pyrovae.infer.log_weights import per_point_log_weights


def _batches(x: torch.Tensor, batch_size: int | None):
    step = x.shape[0] if batch_size is None else int(batch_size)
    for i in range(0, x.shape[0], step):
        yield x[i : i + step]


def _analytic_kl(q_site: dict, p_site: dict) -> torch.Tensor | None:
    try:
        return kl_divergence(q_site["fn"], p_site["fn"])
    except NotImplementedError:
        return None


def _uses_weight_draws(guide, weights) -> bool:
    """Whether an estimator averages over θ: a full-VB guide, or explicit draws given."""
    return weights is not None or full_vb.is_full_vb(guide)


@torch.no_grad()
def iw_log_likelihood(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int,
    chunk_size: int | None = None,
    batch_size: int | None = None,
    max_plate_nesting: int = 1,
    *,
    num_weight_samples: int | None = None,
    weights: Sequence[full_vb.Weights] | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) for each data point (Burda et al. 2016).

        log p̂(x) = log (1/K) Σ_k p(x, z_k) / q(z_k | x),   z_k ~ q(z | x)

    a stochastic lower bound on log p(x) in expectation that tightens as K grows.
    The log-weights come from :func:`~pyrovae.infer.log_weights.per_point_log_weights`.

    For a full-VB guide (or with ``weights``) the estimate is
    ``log (1/S) Σ_s p̂_K(x | θ_s)`` over S draws θ_s ~ q(θ): a stochastic lower
    bound on the log predictive density ``log ∫ p(x|θ) q(θ) dθ`` (see the
    module docstring).

    :param x: data of shape (N, D); the model and guide are called as ``fn(x)``.
    :param num_samples: K (per data point, and per draw of θ).
    :param chunk_size: how many of the K samples are drawn in one vectorised
        pass (default: ``min(K, 100)``); memory grows with ``chunk_size × batch_size``.
    :param batch_size: how many data points per pass (default: :data:`PASS_ROWS` //
        chunk). On a CPU keep ``chunk_size × batch_size × D`` floats under ~32 MB
        (e.g. 100 × 50 at D = 784): larger tensors are freshly mmapped every pass, and
        the page faults cost ~40%.
    :param num_weight_samples: S, draws θ ~ q(θ) of a full-VB guide (default: the
        guide's ``num_weight_samples``).
    :param weights: the draws θ_s to average over instead of sampling S; then the
        guide need only cover the local sites.
    :param progress: called with the number of (point, sample) pairs done after each
        pass (S · N · K in all for a full-VB guide, N · K otherwise), e.g. a progress bar.
    :returns: a tensor of shape (N,), in nats.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if _uses_weight_draws(guide, weights):  # global weights: log-mean-exp over θ_s as well
        draws = full_vb.weight_draws(guide, num_weight_samples, weights)
        ll = log_likelihood_draws(
            model,
            guide,
            x,
            num_samples,
            draws,
            chunk_size,
            batch_size,
            max_plate_nesting,
            progress=progress,
        )
        return torch.logsumexp(ll, dim=0) - math.log(len(draws))
    return _local_iw_log_likelihood(
        model, guide, x, num_samples, chunk_size, batch_size, max_plate_nesting, progress
    )


def _local_iw_log_likelihood(
    model, guide, x, num_samples, chunk_size, batch_size, max_plate_nesting, progress=None
) -> torch.Tensor:
    """The IW estimate for a pair whose sites all sit in the data plate."""

    def log_weights(xb, k):
        return per_point_log_weights(model, guide, xb, k, max_plate_nesting)

    return chunked_log_mean_exp(log_weights, x, num_samples, chunk_size, batch_size, progress)


@torch.no_grad()
def log_likelihood_draws(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int,
    weights: Sequence[full_vb.Weights],
    chunk_size: int | None = None,
    batch_size: int | None = None,
    max_plate_nesting: int = 1,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``log p̂_K(x_i | θ_s)`` for every draw θ_s of ``weights`` and every point: shape (S, n).

    Each entry is the IW estimate over z with K = ``num_samples`` samples from
    q(z | x_i) and the decoder at θ_s (:func:`pyrovae.infer.full_vb.given_weights`):
    a stochastic lower bound on ``log p(x_i | θ_s)``, the point's likelihood with
    z integrated out. These are the pointwise log-likelihoods that ArviZ's
    ``loo``/``waic`` read (:func:`pyrovae.diagnostics.vi_inference_data`), and
    :func:`iw_log_likelihood` log-mean-exps them over the draws.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    rows = []
    for theta in weights:
        model_fn, guide_fn = full_vb.given_weights(model, guide, theta)
        rows.append(
            _local_iw_log_likelihood(
                model_fn,
                guide_fn,
                x,
                num_samples,
                chunk_size,
                batch_size,
                max_plate_nesting,
                progress,
            )
        )
    return torch.stack(rows)


#: importance samples × data points per vectorised pass when the caller does not choose:
#: 5000 rows of D = 784 floats are 16 MB, under glibc's 32 MB mmap threshold, beyond which
#: every pass maps fresh pages (~40% slower on a CPU); memory stays bounded by the pass
PASS_ROWS = 5_000
#: importance samples per pass when the caller does not choose
PASS_SAMPLES = 100


def pass_sizes(
    num_samples: int, chunk_size: int | None = None, batch_size: int | None = None
) -> tuple[int, int | None]:
    """``(samples, data points)`` per vectorised pass: the caller's, else bounded defaults.

    Measured on one thread (500 binarised-MNIST points, K = 1000, 784-400-40): all K and
    all points in one pass took 15.3 s, passes of 100 × 50 rows 11.7 s.
    """
    chunk = min(num_samples, PASS_SAMPLES) if chunk_size is None else int(chunk_size)
    chunk = max(1, min(chunk, num_samples))
    if batch_size is None:
        batch_size = max(1, PASS_ROWS // chunk)
    return chunk, batch_size


@torch.no_grad()
def chunked_log_mean_exp(
    log_weights: Callable[[torch.Tensor, int], torch.Tensor],
    x: torch.Tensor,
    num_samples: int,
    chunk_size: int | None = None,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``log (1/K) Σ_k w_k`` per data point, the K log-weights drawn a chunk at a time.

    :param log_weights: ``log_weights(xb, k)`` → tensor ``(k, len(xb))`` of ``log w``
        for ``k`` fresh samples per point of the batch ``xb``.
    :param chunk_size: samples per call (default: ``min(K, 100)``; 1 is a plain loop).
    :param batch_size: data points per call (default: :data:`PASS_ROWS` // chunk).
    :param progress: called with ``k · len(xb)`` after each call.
    :returns: a tensor of shape (N,).
    """
    chunk, batch_size = pass_sizes(num_samples, chunk_size, batch_size)
    out = []
    for xb in _batches(x, batch_size):
        acc = torch.full((xb.shape[0],), -math.inf, device=xb.device)
        done = 0
        while done < num_samples:
            k = min(chunk, num_samples - done)
            acc = torch.logaddexp(acc, torch.logsumexp(log_weights(xb, k), dim=0))
            done += k
            if progress is not None:
                progress(k * xb.shape[0])
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
    *,
    num_weight_samples: int | None = None,
    weights: Sequence[full_vb.Weights] | None = None,
) -> dict[str, torch.Tensor]:
    """Per-data-point ELBO, rate and distortion, each of shape (N,).

    :param num_samples: Monte Carlo samples per point for the expectations.
    :param analytic_kl: use closed-form KLs where registered (L^B); else L^A.
    :param num_data: the training set size N; needed (and only used) by full-VB
        guides, whose ELBO includes KL(q(θ) ‖ p(θ)) / N.
    :param num_weight_samples: S, draws θ ~ q(θ) of a full-VB guide (default: the
        guide's ``num_weight_samples``).
    :param weights: the draws θ_s to use instead of sampling S (full-VB guides).
    :returns: ``{"elbo", "rate", "distortion"}`` with ``elbo = −(rate + distortion)``;
        for a full-VB guide also ``"weight_kl"`` (KL(q(θ) ‖ p(θ)) / N per point),
        rate and distortion averaged over the S draws, and
        ``elbo = −(rate + distortion + weight_kl)``.
    """
    if not _uses_weight_draws(guide, weights):
        return _local_elbo_terms(
            model, guide, x, num_samples, analytic_kl, batch_size, max_plate_nesting
        )
    full_vb._require(guide)
    if not num_data or num_data < 1:
        raise ValueError(
            "a full-VB test ELBO includes KL(q(θ) ‖ p(θ)) / N: pass num_data = N, the size of "
            "the training set"
        )
    draws = full_vb.weight_draws(guide, num_weight_samples, weights)
    rate = distortion = 0.0
    for theta in draws:
        model_fn, guide_fn = full_vb.given_weights(model, guide, theta)
        terms = _local_elbo_terms(
            model_fn, guide_fn, x, num_samples, analytic_kl, batch_size, max_plate_nesting
        )
        rate = rate + terms["rate"] / len(draws)
        distortion = distortion + terms["distortion"] / len(draws)
    kl, _ = full_vb.weight_kl(guide, num_samples=len(draws))
    kl_per_point = torch.full_like(rate, kl.item() / num_data)
    return {
        "elbo": -(rate + distortion + kl_per_point),
        "rate": rate,
        "distortion": distortion,
        "weight_kl": kl_per_point,
    }


def _local_elbo_terms(
    model, guide, x, num_samples, analytic_kl, batch_size, max_plate_nesting
) -> dict[str, torch.Tensor]:
    """:func:`elbo_terms` for a pair whose sites all sit in the data plate (Pyro traces)."""
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
    full-VB model decodes with θ̄, the mean of q(θ)
    (:func:`pyrovae.infer.full_vb.posterior_weights`).
    """
    out = []
    with full_vb.posterior_weights(guide):
        for xb in _batches(x, batch_size):
            recon = model.decode(guide.posterior(xb).mean)
            out.append((recon - xb).pow(2).mean(-1))
    return torch.cat(out)
