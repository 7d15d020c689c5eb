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
:func:`pyrovae.infer.log_weights.per_point_log_weights` (Pyro traces), or for
pyrovae's own pairs the same weights on the same random numbers computed
without traces and with less repeated work (:func:`_fast_log_weights`), in
passes whose size :func:`pass_sizes` bounds by a memory budget. Everything here
works for any model/guide pair whose sites sit in a plate named ``"data"``, not
only pyrovae's.

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

import functools
import math
from collections.abc import Callable, Sequence

import pyro
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import kl_divergence

from pyrovae.infer import full_vb
from pyrovae.infer.importance import per_point_log_prob, sample_sites, vectorized_traces
from pyrovae.infer.log_weights import per_point_log_weights, supports_fast_path
from pyrovae.models.likelihoods import Bernoulli, log_sigmoid_sum


def _batches(x: torch.Tensor, batch_size: int | None, min_size: int = 1):
    """Consecutive batches of ``batch_size`` rows; a last one of fewer than ``min_size`` rows
    joins the one before it."""
    n = x.shape[0]
    step = n if batch_size is None else int(batch_size)
    i = 0
    while i < n:
        end = n if n - (i + step) < min_size else i + step
        yield x[i:end]
        i = end


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
        pass; memory grows with ``chunk_size × batch_size``. Default: chosen with
        ``batch_size`` by :func:`pass_sizes` from K, N and D, so that a pass's
        ``chunk × batch × D`` values stay within :data:`PASS_BYTES` (2 MiB: 625 of 5000
        samples of one binarised-MNIST point). There is no need to set either.
    :param batch_size: how many data points per pass (default: :func:`pass_sizes`).
    :param num_weight_samples: S, draws θ ~ q(θ) of a full-VB guide (default: the
        guide's ``num_weight_samples``).
    :param weights: the draws θ_s to average over instead of sampling S; then the
        guide need only cover the local sites.
    :param progress: called with the number of (point, sample) pairs done after each
        pass (S · N · K in all for a full-VB guide, N · K otherwise), e.g. a progress bar.
    :returns: a tensor of shape (N,), in nats.

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.guides import DiagonalGaussian
    >>> from pyrovae.infer import elbo_terms, iw_log_likelihood
    >>> from pyrovae.models import VAE
    >>> pyro.set_rng_seed(0)
    >>> model, guide = VAE(16, latent_dim=2, hidden=[8]), DiagonalGaussian(16, 2, hidden=[8])
    >>> x = torch.bernoulli(torch.full((10, 16), 0.5))
    >>> log_px = iw_log_likelihood(model, guide, x, num_samples=500, chunk_size=100)
    >>> log_px.shape
    torch.Size([10])
    >>> bool(log_px.mean() >= elbo_terms(model, guide, x, num_samples=100)["elbo"].mean())
    True
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
    """The IW estimate for a pair whose sites all sit in the data plate.

    pyrovae's own pairs (:func:`~pyrovae.infer.log_weights.supports_fast_path`) take
    :func:`_fast_log_weights`; any other pair Pyro's traces, one call per pass.
    """
    fast = supports_fast_path(model, guide)
    min_size = 2 if _scores_batches(model) else 1
    chunk, batch = pass_sizes(
        num_samples,
        chunk_size,
        batch_size,
        num_points=x.shape[0],
        point_bytes=_row_bytes(model, x) if fast else _point_bytes(x),
        min_batch=min_size,
    )
    if fast:
        with pyro.validation_enabled(False):
            for_batch = _fast_log_weights(model, guide)
            return _log_mean_exp(for_batch, x, num_samples, chunk, batch, progress, min_size)

    def for_batch(xb: torch.Tensor) -> Callable[[int], torch.Tensor]:
        return lambda k: per_point_log_weights(model, guide, xb, k, max_plate_nesting)

    return _log_mean_exp(for_batch, x, num_samples, chunk, batch, progress, min_size)


def _row_bytes(model, x: torch.Tensor) -> int:
    """The bytes of one (sample, point) row of a pyrovae model's decoder output, or of one
    data point if that is larger: a PixelCNN's conditioning map is 8 planes of the image,
    and budgeting passes by it keeps its gated layers' maps under glibc's mmap threshold."""
    width = max(x[0].numel(), int(model.likelihood.out_features)) if x.shape[0] else 1
    return width * x.element_size()


def _scores_batches(model) -> bool:
    """Whether ``model``'s likelihood scores a point by an aggregate over the points of its
    pass (BAGGINS before :meth:`~pyrovae.models.gaussian_heads.Baggins.freeze`, or in
    training mode): it needs two points a pass at least."""
    from pyrovae.models.gaussian_heads import Baggins

    head = getattr(model, "likelihood", None)
    return isinstance(head, Baggins) and (head.training or not head.is_frozen)


def _fast_log_weights(model, guide) -> Callable[[torch.Tensor], Callable[[int], torch.Tensor]]:
    """``for_batch(xb)(k)``: log-weights ``(k, len(xb))`` of k fresh draws, without traces.

    The values of :func:`~pyrovae.infer.log_weights.fast_log_weights` on the same random
    numbers (the same ``q.sample((k,))`` calls, in the same order) with less work
    repeated: the prior p(z) is built once per evaluation (a VampPrior's is an encoder
    pass over its pseudo-inputs) and q(z | x) once per batch of points rather than once
    per chunk of samples; bit for bit the same numbers, except for a Bernoulli head on
    binary data, scored by :func:`_binary_log_likelihood` (the same up to rounding).
    """
    prior = model.prior()
    buffers: dict = {}  # kept across batches: every pass reuses the same memory

    def for_batch(xb: torch.Tensor) -> Callable[[int], torch.Tensor]:
        q = guide.posterior(xb)
        log_likelihood = _binary_log_likelihood(model, xb, buffers)
        if log_likelihood is None:

            def log_likelihood(z):
                return model.likelihood.log_prob(model.decoder(z), xb)

        def log_weights(k: int) -> torch.Tensor:
            z = q.sample((k,))
            return log_likelihood(z) + prior.log_prob(z) - q.log_prob(z)

        return log_weights

    return for_batch


#: elementwise activation modules :func:`_binary_log_likelihood` applies in place
_IN_PLACE: dict[type, Callable[[torch.Tensor, nn.Module], torch.Tensor]] = {
    nn.ReLU: lambda h, m: h.relu_(),
    nn.Tanh: lambda h, m: h.tanh_(),
    nn.Sigmoid: lambda h, m: h.sigmoid_(),
    nn.LeakyReLU: lambda h, m: F.leaky_relu_(h, m.negative_slope),
    nn.Identity: lambda h, m: h,
}


def _is_plain_mlp(net: nn.Module) -> bool:
    """An ``nn.Sequential`` of ``nn.Linear`` layers and :data:`_IN_PLACE` activations (exact
    types: a subclass may compute something else) from a linear layer to a linear layer."""
    return (
        type(net) is nn.Sequential
        and len(net) > 0
        and type(net[0]) is nn.Linear  # (an activation first would act on z in place)
        and type(net[-1]) is nn.Linear
        and all(type(m) is nn.Linear or type(m) in _IN_PLACE for m in net)
    )


def _binary_log_likelihood(
    model, xb: torch.Tensor, buffers: dict
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``z ↦ log p(xb | z)`` of a Bernoulli head on binary ``xb``, or None where it does not apply.

    The head's :meth:`~pyrovae.models.likelihoods.Bernoulli.binary_log_prob` (one
    ``sigmoid`` per pixel instead of an ``exp`` and a ``log1p``; the same value up to
    rounding). Behind a plain MLP decoder (:func:`_is_plain_mlp`, as :func:`pyrovae.nets.mlp`
    builds) the layers run into ``buffers`` reused by every pass: ``F.linear`` is
    ``addmm``, the activations are applied in place, and the logits and ``σ(|y|)`` are
    computed in two buffers, so a pass allocates nothing of size ``k × B × D`` (a fresh
    multi-megabyte tensor costs a first-touch pass of its own). With one data point a pass,
    the last layer's rows are multiplied by the signs ``2x − 1`` once per point, so that
    the product already yields ``y = (2x − 1) h`` (a sign flip: exact). Anything else —
    another head or network, grey data, a head that overrides ``log_prob`` — returns None,
    and the caller scores ``likelihood.log_prob(decoder(z), x)``.
    """
    head = model.likelihood
    if not (
        isinstance(head, Bernoulli)
        and type(head).log_prob is Bernoulli.log_prob
        and bool(((xb == 0) | (xb == 1)).all())
    ):
        return None
    net = model.decoder
    if not _is_plain_mlp(net):
        return lambda z: head.binary_log_prob(net(z), xb)
    layers, last = list(net)[:-1], net[-1]
    sign = 2 * xb - 1
    weight, bias = last.weight, last.bias
    if xb.shape[0] == 1:  # fold the signs into the last layer
        weight = weight * sign.reshape(-1, 1)
        bias = None if bias is None else bias * sign.reshape(-1)

    def buffer(name: int | str, rows: int, width: int, like: torch.Tensor) -> torch.Tensor:
        buf = buffers.get(name)
        fits = buf is not None and buf.shape[0] >= rows and buf.shape[1] == width
        if not (fits and buf.dtype == like.dtype and buf.device == like.device):
            buf = buffers[name] = like.new_empty(rows, width)
        return buf[:rows]

    def linear(i: int | str, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None):
        out = buffer(i, h.shape[0], w.shape[0], h)
        return torch.mm(h, w.t(), out=out) if b is None else torch.addmm(b, h, w.t(), out=out)

    def log_likelihood(z: torch.Tensor) -> torch.Tensor:
        h = z.reshape(-1, z.shape[-1])
        for i, m in enumerate(layers):
            h = linear(i, h, m.weight, m.bias) if type(m) is nn.Linear else _IN_PLACE[type(m)](h, m)
        y = linear("logits", h, weight, bias).view(*z.shape[:-1], -1)
        if xb.shape[0] != 1:
            y.mul_(sign)
        return log_sigmoid_sum(y, buffer("scratch", h.shape[0], y.shape[-1], h).view_as(y))

    return log_likelihood


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


#: bytes of one pass's (samples × points × D) data-sized tensors — the decoder output, the
#: log-densities' intermediates — when the caller does not choose. 2 MiB (668 rows at
#: D = 784 in float32) keeps a pass in the CPU's caches, far below glibc's mmap threshold
#: (32 MiB; larger tensors are mapped afresh every pass, ~40% slower). Measured on one
#: thread (784-400-40, K = 5000, one point a pass; interleaved, CPU time, other jobs
#: running): passes of 128, 256, 417, 625 and 1000 samples ran at 69, 73, 74, 73 and 71%
#: of a 2048² sgemm's rate (``benchmarks/roofline.py`` measures the default's)
PASS_BYTES = 2 * 2**20
#: and at most this many (sample, point) rows a pass, for narrow data and wide networks
#: (the passes of earlier versions, which this leaves unchanged where the bytes do not bind)
PASS_ROWS = 5000


def _point_bytes(x: torch.Tensor) -> int:
    """The bytes of one data point of ``x``."""
    return max(1, x[0].numel() * x.element_size()) if x.shape[0] else 1


def pass_sizes(
    num_samples: int,
    chunk_size: int | None = None,
    batch_size: int | None = None,
    *,
    num_points: int | None = None,
    point_bytes: int | None = None,
    min_batch: int = 1,
) -> tuple[int, int]:
    """``(samples, data points)`` per vectorised pass: the caller's, else from the memory budget.

    A pass scores ``chunk × batch`` (sample, point) rows. Unless the caller chooses,
    ``rows = min(PASS_ROWS, PASS_BYTES // point_bytes)``, so that every data-sized
    tensor of a pass stays within :data:`PASS_BYTES`; a decoder's wider activations scale
    with it. The K samples are split into equal chunks of at most ``rows`` (fewest
    passes), and as many points share a pass as the remaining rows allow.

    :param num_samples: K, samples per point.
    :param chunk_size: samples per pass (default: ``⌈K / ⌈K / rows⌉⌉``).
    :param batch_size: points per pass (default: ``rows // chunk``, at most ``num_points``).
    :param num_points: N, the points to evaluate (caps the default batch).
    :param point_bytes: the bytes of one data point (``D × itemsize``); without it the
        budget is :data:`PASS_ROWS` rows.
    :param min_batch: the fewest points a default pass holds (a likelihood that scores
        points by their pass's aggregate needs 2); ``num_points`` still caps it.
    :returns: ``(chunk, batch)``, both ≥ 1.
    """
    num_samples = int(num_samples)
    rows = PASS_ROWS if point_bytes is None else min(PASS_ROWS, PASS_BYTES // int(point_bytes))
    rows = max(1, rows)
    if chunk_size is None:
        points = max(int(min_batch), 1 if batch_size is None else int(batch_size))
        room = max(1, rows // points)
        chunk = -(-num_samples // -(-num_samples // room))  # equal chunks, fewest passes
    else:
        chunk = int(chunk_size)
    chunk = max(1, min(chunk, num_samples))
    if batch_size is None:
        batch_size = max(1, rows // chunk, int(min_batch))
        if num_points is not None:
            batch_size = max(1, min(batch_size, int(num_points)))
    return chunk, int(batch_size)


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
    :param chunk_size: samples per call (default: :func:`pass_sizes`; 1 is a plain loop).
    :param batch_size: data points per call (default: :func:`pass_sizes`).
    :param progress: called with ``k · len(xb)`` after each call.
    :returns: a tensor of shape (N,).
    """
    chunk, batch = pass_sizes(
        num_samples, chunk_size, batch_size, num_points=x.shape[0], point_bytes=_point_bytes(x)
    )

    def for_batch(xb: torch.Tensor) -> Callable[[int], torch.Tensor]:
        return functools.partial(log_weights, xb)

    return _log_mean_exp(for_batch, x, num_samples, chunk, batch, progress)


def _log_mean_exp(
    for_batch: Callable[[torch.Tensor], Callable[[int], torch.Tensor]],
    x: torch.Tensor,
    num_samples: int,
    chunk: int,
    batch: int,
    progress: Callable[[int], None] | None = None,
    min_size: int = 1,
) -> torch.Tensor:
    """:func:`chunked_log_mean_exp` with ``for_batch(xb)(k)`` the log-weights, so that what
    depends on the batch alone is computed once per batch (a last batch of fewer than
    ``min_size`` points joins the one before)."""
    out = []
    for xb in _batches(x, batch, min_size):
        log_weights = for_batch(xb)
        acc = torch.full((xb.shape[0],), -math.inf, device=xb.device)
        done = 0
        while done < num_samples:
            k = min(chunk, num_samples - done)
            acc = torch.logaddexp(acc, torch.logsumexp(log_weights(k), dim=0))
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

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.guides import DiagonalGaussian
    >>> from pyrovae.infer import elbo_terms
    >>> from pyrovae.models import VAE
    >>> pyro.set_rng_seed(0)
    >>> model, guide = VAE(16, latent_dim=2, hidden=[8]), DiagonalGaussian(16, 2, hidden=[8])
    >>> x = torch.bernoulli(torch.full((10, 16), 0.5))
    >>> terms = elbo_terms(model, guide, x, num_samples=4)
    >>> {k: tuple(v.shape) for k, v in terms.items()}
    {'elbo': (10,), 'rate': (10,), 'distortion': (10,)}
    >>> torch.allclose(terms["elbo"], -(terms["rate"] + terms["distortion"]))
    True
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
