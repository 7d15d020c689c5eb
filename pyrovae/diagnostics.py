r"""Posterior diagnostics with ArviZ: InferenceData, summaries, LOO/WAIC, PSIS k̂, plots, netCDF.

Three questions, three tools:

* **Did the sampler/approximation produce usable draws of θ?** Draws of
  chosen weight sites go into an :class:`arviz.InferenceData` ``posterior``
  group with explicit ``chain``/``draw`` dimensions (:func:`inference_data`,
  built with ``az.from_dict``, so it carries over to ArviZ 1.x), and
  ``az.summary`` reports mean, sd, HDI, bulk/tail ESS and R-hat. For NUTS
  (:func:`mcmc_inference_data`) chains are real and R-hat/ESS test mixing.
  For VI (:func:`vi_inference_data`) the "chains" are independent batches of
  draws from q(θ): R-hat ≈ 1 and ESS ≈ the number of draws *by construction*;
  they check only the Monte Carlo sample, never the approximation.
* **How well does the model predict each point?** A ``log_likelihood`` group
  holds ``log p(x_i | θ_s)`` per image and draw, read by ``az.loo`` (PSIS-LOO,
  Vehtari, Gelman & Gabry 2017), ``az.waic`` and ``az.compare``.
* **Does the fitted model reproduce the data?** A ``posterior_predictive``
  group holds replicated images x̃ ~ p(x | z, θ_s), z ~ q(z | x_i), drawn by
  :class:`pyro.infer.Predictive` (``parallel=True``) from the model and the
  guide, beside the ``observed_data``; ``az.plot_ppc`` compares them
  (``ppc.png``).
* **Is the amortised guide a good proposal for each point's posterior?** The
  PSIS diagnostic of Yao, Vehtari, Simpson & Gelman (2018): with K draws
  z_k ~ q(z|x) and log ratios ``log p(x, z_k) − log q(z_k | x)``
  (:func:`pyrovae.infer.log_weights.per_point_log_weights`, the same weights
  the IW log-likelihood log-mean-exps), fit a generalised
  Pareto distribution to the largest ratios; its shape k̂ (``az.psislw``)
  says how heavy the ratios' tail is. k̂ < 0.5: q covers the posterior and
  importance sampling (and the IW log-likelihood) is reliable; 0.5–0.7: usable
  but slow; **k̂ > 0.7: q misses mass the posterior has** and IW estimates
  from it are unreliable (Vehtari et al. 2024). This works for every guide
  (:func:`guide_khat`); for a full-VB guide the ratios are taken at θ̄, the
  mean of q(θ).

Weight tensors are large (784 × 500), so only a subset of entries enters the
posterior group: by default the first ``entries`` entries (row-major) of every
weight site, labelled by their index (``decoder.0.weight[0,3]``).

The groups follow ArviZ's InferenceData schema; for a full-VB run
(:func:`vi_inference_data`, n images of D pixels, C × S draws of θ):

====================  ========  ===========================  ===============================
group                 variable  dims                         what
====================  ========  ===========================  ===============================
posterior             SITE      (chain, draw, SITE_entry)    entries of θ_cs ~ q(θ)
log_likelihood        obs       (chain, draw, image)         log p̂_K(x_i | θ_cs)
posterior_predictive  obs       (chain, draw, image, pixel)  x̃_i ~ p(x | z, θ_cs)
observed_data         obs       (image, pixel)               x_i
sample_stats          lp        (chain, draw)                log p(θ_cs) + Σ_i log p̂_K(x_i|θ_cs)
sample_stats          log_q     (chain, draw)                log q(θ_cs)
====================  ========  ===========================  ===============================

An observation is a whole image: its log-likelihood is one number per image
(the multivariate case of the schema: ``log_likelihood.obs`` lacks the
``pixel`` dim of ``observed_data.obs``), so PSIS-LOO leaves out one image at a
time and ``az.loo(..., pointwise=True).loo_i`` is indexed by ``image``. The
replicated draws of a draw (c, s) use the same θ_cs as its posterior entries
and log-likelihoods. Integer-valued data (binary pixels) are stored as
``int8``, so ``az.plot_ppc`` treats them as discrete.

ArviZ is imported on first use (it is slow to import, and 0.23 warns once a day
that it is being refactored; that warning is filtered here).

References: Y. Yao, A. Vehtari, D. Simpson, A. Gelman, *Yes, but Did It Work?:
Evaluating Variational Inference*, ICML 2018; A. Vehtari, D. Simpson, A.
Gelman, Y. Yao, J. Gabry, *Pareto Smoothed Importance Sampling*, JMLR 2024;
A. Vehtari, A. Gelman, J. Gabry, *Practical Bayesian model evaluation using
leave-one-out cross-validation and WAIC*, Statistics and Computing 2017.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyro.poutine as poutine
import torch
from pyro.infer import Predictive

from pyrovae.infer import evaluation, full_vb
from pyrovae.infer.log_weights import per_point_log_weights
from pyrovae.progress import Reporter, duration

DEFAULT_ENTRIES = 4
KHAT_GOOD, KHAT_BAD = 0.5, 0.7
FLAT_RATIOS = 1e-3  # nats: log ratios that vary less than this are constant
PSIS_ROWS = 25_000  # samples × points per vectorised pass of the guide k̂
PREDICTIVE_ELEMENTS = 4_000_000  # per Predictive pass: draws × max(n × D, weights)
POINT_DIM, FEATURE_DIM = "image", "pixel"  # the dims of a data point and of its values


def _az():
    """ArviZ, imported lazily, without its daily refactor notice."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ArviZ is undergoing", category=FutureWarning)
        import arviz as az
    return az


def _numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = (value.double() if value.is_floating_point() else value).numpy()
    return np.asarray(value)


def _data(value) -> np.ndarray:
    """Observed or replicated data as stored: ``int8`` when every value is an integer in
    [-128, 127] (binary pixels: ArviZ then plots them as discrete), else ``float32``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype == np.int8:
        return arr
    if arr.size and np.all(np.mod(arr, 1) == 0) and arr.min() >= -128 and arr.max() <= 127:
        return arr.astype(np.int8)
    return arr.astype(np.float32)


def _join(chunks: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate :func:`_data` chunks along the draws; all ``float32`` if any chunk is."""
    if len({c.dtype for c in chunks}) > 1:
        chunks = [c.astype(np.float32) for c in chunks]
    return np.concatenate(chunks)


# -- InferenceData -----------------------------------------------------------------------


def _labels(shape: tuple[int, ...], k: int) -> list[str]:
    """Row-major index labels ("i,j") of the first ``k`` entries of a tensor of ``shape``."""
    return [",".join(str(int(i)) for i in np.unravel_index(j, shape)) for j in range(k)]


def select_entries(
    name: str, value, entries: int | None = DEFAULT_ENTRIES
) -> tuple[np.ndarray, list[str] | None]:
    """Draws ``(chain, draw, *shape)`` of one site → ``(chain, draw, k)`` of its first
    ``entries`` entries (row-major; all if None) and their labels ("i,j"). A scalar
    site stays ``(chain, draw)`` with labels None."""
    arr = _numpy(value)
    if arr.ndim < 2:
        raise ValueError(f"draws of {name!r} need (chain, draw, ...) dimensions, got {arr.shape}")
    shape = arr.shape[2:]
    if not shape:
        return arr, None
    flat = arr.reshape(arr.shape[0], arr.shape[1], -1)
    k = flat.shape[-1] if entries is None else min(int(entries), flat.shape[-1])
    return flat[..., :k], _labels(shape, k)


def inference_data(
    posterior: Mapping[str, Any],
    log_likelihood: Mapping[str, Any] | None = None,
    observed_data: Mapping[str, Any] | None = None,
    sample_stats: Mapping[str, Any] | None = None,
    entries: int | None = DEFAULT_ENTRIES,
    posterior_predictive: Mapping[str, Any] | None = None,
):
    """An :class:`arviz.InferenceData` from arrays with explicit ``(chain, draw, ...)`` dims.

    :param posterior: ``{site: (chain, draw, *shape)}``; each site is cut to
        its first ``entries`` entries (:func:`select_entries`).
    :param log_likelihood: ``{site: (chain, draw, n)}``, one column per data point
        (dim ``image``).
    :param observed_data: ``{site: (n, ...)}`` (dims ``image``, ``pixel``).
    :param sample_stats: ``{stat: (chain, draw)}`` (e.g. ``diverging``, ``lp``).
    :param posterior_predictive: ``{site: (chain, draw, n, ...)}``, replicated
        ``observed_data`` (dims ``chain, draw, image, pixel``).
    """
    cut = {name: select_entries(name, value, entries) for name, value in posterior.items()}
    return _assemble(
        {n: a for n, (a, _) in cut.items()},
        {n: lab for n, (_, lab) in cut.items()},
        log_likelihood,
        observed_data,
        sample_stats,
        posterior_predictive,
    )


def _data_dims(extra: int) -> list[str]:
    """``image`` and the names of a point's own dims: ``pixel`` (or ``pixel_0``, ``pixel_1``…)."""
    own = [FEATURE_DIM] if extra == 1 else [f"{FEATURE_DIM}_{i}" for i in range(extra)]
    return [POINT_DIM, *own]


def _assemble(
    posterior, labels, log_likelihood, observed_data, sample_stats, posterior_predictive=None
):
    """``az.from_dict`` with named dims: ``SITE_entry`` for weight entries; ``image`` for the
    data points and ``pixel`` for their values, shared by ``log_likelihood``,
    ``observed_data`` and ``posterior_predictive``."""
    az = _az()
    coords: dict[str, Any] = {}
    dims: dict[str, list[str]] = {}
    for name, lab in labels.items():
        if lab is not None:
            dims[name] = [f"{name}_entry"]
            coords[f"{name}_entry"] = lab
    groups: dict[str, Any] = {"posterior": {k: _numpy(v) for k, v in posterior.items()}}
    data_groups = (  # (group, arrays, leading sample dims)
        ("log_likelihood", {k: _numpy(v) for k, v in (log_likelihood or {}).items()}, 2),
        ("observed_data", {k: _data(v) for k, v in (observed_data or {}).items()}, 0),
        ("posterior_predictive", {k: _data(v) for k, v in (posterior_predictive or {}).items()}, 2),
    )
    group_dims: dict[str, dict[str, list[str]]] = {}
    for group, arrays, lead in data_groups:
        if not arrays:
            continue
        groups[group] = arrays
        group_dims[group] = {}
        for name, value in arrays.items():
            names = _data_dims(value.ndim - lead - 1)
            group_dims[group][name] = names
            for dim, size in zip(names, value.shape[lead:]):
                coords.setdefault(dim, np.arange(size))
    if sample_stats:
        groups["sample_stats"] = {k: _numpy(v) for k, v in sample_stats.items()}
    # a site named in several groups (``obs``) gets each group's dims: from_dict takes one
    # ``dims`` mapping for all groups, so the groups are converted one at a time and merged
    idata = az.from_dict(
        **{k: groups[k] for k in ("posterior", "sample_stats") if k in groups},
        coords=coords,
        dims=dims,
    )
    for group, names in group_dims.items():
        part = az.from_dict(**{group: groups[group]}, coords=coords, dims=names)
        idata.extend(part)
    return idata


def _default_sites(names: Sequence[str], sites: Sequence[str] | None) -> list[str]:
    if sites is None:
        return list(names)
    unknown = [s for s in sites if s not in names]
    if unknown:
        raise ValueError(f"unknown sites {unknown}; choose from {', '.join(names)}")
    return list(sites)


@torch.no_grad()
def posterior_predictive(
    model: Callable,
    guide: Callable,
    x: torch.Tensor,
    num_samples: int,
    return_sites: Sequence[str] = ("obs",),
    parallel: bool = True,
    max_elements: int = PREDICTIVE_ELEMENTS,
) -> Iterator[dict[str, torch.Tensor]]:
    """Posterior predictive draws for ``x``, a chunk of draws at a time.

    :class:`pyro.infer.Predictive` of ``poutine.uncondition(model)`` with
    ``guide``: each draw samples the guide's sites (z_i ~ q(z | x_i) and, for
    a full-VB guide, θ ~ q(θ)), then the model on them, so ``"obs"`` is a
    replicated data set x̃ of the shape of ``x`` (for the observed values
    instead, leave the model conditioned). With ``parallel=True`` (the
    default) a chunk is one vectorised pass (a plate of draws at dim −2; a
    Bayesian decoder broadcasts over it,
    :func:`pyrovae.models.bayesian.batched_linear`).

    :param return_sites: the sites to return (a global site comes as
        ``(S, 1, *shape)``).
    :param max_elements: the size of a chunk: draws × max(elements of ``x``,
        elements of the weights).
    :returns: an iterator of ``{site: (s, ...)}``, the draws split into chunks of
        ``s``, ``num_samples`` in all.
    """
    size = x.numel()
    if full_vb.is_full_vb(guide):
        size = max(size, sum(guide.weights.loc(n).numel() for n in guide.weights.site_names))
    step = max(1, int(max_elements) // max(1, size))
    for start in range(0, int(num_samples), step):
        predictive = Predictive(
            poutine.uncondition(model),
            guide=guide,
            num_samples=min(step, int(num_samples) - start),
            return_sites=list(return_sites),
            parallel=parallel,
        )
        yield predictive(x)


@torch.no_grad()
def vi_inference_data(
    model: Callable,
    guide,
    x: torch.Tensor,
    sites: Sequence[str] | None = None,
    entries: int | None = DEFAULT_ENTRIES,
    num_chains: int = 2,
    num_draws: int = 100,
    iw_samples: int = 10,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
):
    """InferenceData of a full-VB guide: independent draws θ ~ q(θ) split into chains.

    The C × S draws come from :func:`posterior_predictive` (Pyro's
    ``Predictive``, vectorised over draws), which also replicates the data at
    each θ_cs; every group of draw (c, s) uses that θ_cs:

    * ``posterior``: the chosen weight sites (default: all, first ``entries``
      entries each);
    * ``log_likelihood["obs"][c, s, i] = log p̂(x_i | θ_cs)`` (dims chain, draw,
      image), an IW estimate over z with ``iw_samples`` samples from q(z|x_i)
      (a stochastic lower bound on the image's likelihood with z integrated out);
    * ``posterior_predictive["obs"][c, s, i]``: x̃_i ~ p(x | z, θ_cs) with
      z ~ q(z | x_i) (dims chain, draw, image, pixel);
    * ``observed_data["obs"]`` is ``x`` (dims image, pixel);
    * ``sample_stats``: ``lp`` = log p(θ_cs) + Σ_i log p̂(x_i | θ_cs), the log
      joint of the draw and the diagnosed images (ArviZ's "unnormalised log
      probability of the sample", for the posterior given these images), and
      ``log_q`` = log q(θ_cs). ``lp − log_q`` is the draw's log importance
      ratio; its mean over draws is a lower bound on log p(x_1..n).

    .. warning:: The IW estimates are noisy, and ``az.loo``/``az.waic`` read that
        noise as posterior variance of the log-likelihood: ``p_loo``/``p_waic`` come
        out too large and the elpd too low, more so for small ``iw_samples``.
        On held-out points the direct estimate of the log predictive density is
        :func:`pyrovae.infer.evaluation.iw_log_likelihood`; LOO there measures how much
        each point's likelihood moves with θ.

    :param progress: called with the (point, sample) pairs of the log-likelihoods done
        after each pass, ``num_chains · num_draws · n · iw_samples`` in all.
    """
    full_vb._require(guide)
    names = guide.weights.site_names
    chosen = _default_sites(names, sites)
    draws: dict[str, list[np.ndarray]] = {s: [] for s in chosen}
    rows, replicated, log_q, log_p = [], [], [], []
    chunks = posterior_predictive(model, guide, x, num_chains * num_draws, ("obs", *names))
    for chunk in chunks:
        replicated.append(_data(chunk["obs"]))
        thetas = full_vb.unstack_weights(guide, chunk)
        for theta in thetas:
            for s in chosen:
                value = _numpy(theta[s]).reshape(-1)
                draws[s].append(value if entries is None else value[:entries])
            q, p = full_vb.weight_log_densities(guide, theta)
            log_q.append(q)
            log_p.append(p)
        rows.append(
            evaluation.log_likelihood_draws(
                model, guide, x, iw_samples, thetas, batch_size=batch_size, progress=progress
            ).cpu()
        )
    posterior, labels = {}, {}
    for s in chosen:
        shape = tuple(guide.weights.loc(s).shape)
        posterior[s] = np.stack(draws[s]).reshape(num_chains, num_draws, -1)
        labels[s] = _labels(shape, posterior[s].shape[-1])
    ll = torch.cat(rows).double()
    stats = {
        "lp": (torch.stack(log_p).double() + ll.sum(-1)).reshape(num_chains, num_draws),
        "log_q": torch.stack(log_q).reshape(num_chains, num_draws),
    }
    pp = _join(replicated)
    return _assemble(
        posterior,
        labels,
        {"obs": ll.reshape(num_chains, num_draws, -1)},
        {"obs": x},
        stats,
        {"obs": pp.reshape(num_chains, num_draws, *pp.shape[1:])},
    )


@torch.no_grad()
def pointwise_log_likelihood(
    model: Callable,
    samples: Mapping[str, torch.Tensor],
    *args,
    obs_site: str = "obs",
    **kwargs,
) -> torch.Tensor:
    """``log p(obs_i | draw)`` for every draw of ``samples`` (``(chain, draw, ...)``): shape
    ``(chain, draw, n)``. The model is traced once per draw, conditioned on it (all its
    latent sites, local ones included), so the model need not vectorise."""
    first = next(iter(samples.values()))
    num_chains, num_draws = first.shape[:2]
    rows = []
    for c in range(num_chains):
        for d in range(num_draws):
            draw = {k: v[c, d] for k, v in samples.items()}
            trace = poutine.trace(poutine.condition(model, data=draw)).get_trace(*args, **kwargs)
            site = trace.nodes[obs_site]
            rows.append(site["fn"].log_prob(site["value"]).reshape(-1).double())
    return torch.stack(rows).reshape(num_chains, num_draws, -1)


def mcmc_inference_data(
    samples,
    model: Callable | None = None,
    *args,
    sites: Sequence[str] | None = None,
    exclude: Sequence[str] = ("latent",),
    entries: int | None = DEFAULT_ENTRIES,
    obs_site: str = "obs",
    sample_stats: Mapping[str, Any] | None = None,
    predictive: bool = True,
    **kwargs,
):
    """InferenceData of MCMC draws (a :class:`pyro.infer.MCMC` or ``{site: (chain, draw, ...)}``
    as from :func:`pyrovae.infer.nuts.nuts_chains`).

    With ``model`` (and its ``*args``), adds the pointwise log-likelihood of
    ``obs_site`` per draw, the observed values and (``predictive=True``) the
    posterior predictive draws of ``obs_site``, one per MCMC draw
    (:class:`pyro.infer.Predictive` of the unconditioned model on the draws,
    sequentially, so any model applies). For a VAE the log-likelihood is
    ``log p(x_i | z_i, θ)`` at the sampled z_i (z is a chain variable here),
    and a replicated x̃_i is drawn at the same z_i.

    :param sites: sites for the posterior group (default: all but ``exclude``).
    """
    if hasattr(samples, "get_samples"):
        samples = samples.get_samples(group_by_chain=True)
    names = [n for n in samples if n not in exclude]
    chosen = _default_sites(names, sites)
    posterior = {s: samples[s] for s in chosen}
    log_likelihood = observed = replicated = None
    if model is not None:
        ll = pointwise_log_likelihood(model, samples, *args, obs_site=obs_site, **kwargs)
        log_likelihood = {obs_site: ll}
        trace = poutine.trace(model).get_trace(*args, **kwargs)
        observed = {obs_site: trace.nodes[obs_site]["value"]}
        if predictive:
            replicated = {obs_site: _mcmc_predictive(model, samples, obs_site, args, kwargs)}
    return inference_data(
        posterior, log_likelihood, observed, sample_stats, entries, posterior_predictive=replicated
    )


@torch.no_grad()
def _mcmc_predictive(model, samples, obs_site: str, args, kwargs) -> torch.Tensor:
    """``obs_site`` replicated at every draw of ``samples`` (``(chain, draw, ...)``)."""
    first = next(iter(samples.values()))
    chains, draws = first.shape[:2]
    flat = {k: torch.as_tensor(v).reshape(chains * draws, *v.shape[2:]) for k, v in samples.items()}
    predictive = Predictive(
        poutine.uncondition(model), posterior_samples=flat, return_sites=[obs_site]
    )
    value = predictive(*args, **kwargs)[obs_site]
    return value.reshape(chains, draws, *value.shape[1:])


# -- PSIS k̂ of an amortised guide ------------------------------------------------------


@torch.no_grad()
def guide_log_ratios(
    model: Callable,
    guide,
    x: torch.Tensor,
    num_samples: int = 500,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``log p(x_i, z_ik) − log q(z_ik | x_i)`` for K draws z_ik ~ q(z | x_i): shape (n, K).

    The transpose of :func:`pyrovae.infer.log_weights.per_point_log_weights`
    (trace-free for pyrovae's own pairs, Pyro traces otherwise), in batches of
    about ``PSIS_ROWS`` samples × points. A full-VB guide is evaluated at θ̄, the
    mean of q(θ) (:func:`pyrovae.infer.full_vb.given_weights`). ``progress`` is called
    with the points done after each batch.
    """
    if full_vb.is_full_vb(guide):
        model, guide = full_vb.given_weights(model, guide, full_vb.posterior_mean(guide))
    step = batch_size or max(1, PSIS_ROWS // int(num_samples))
    rows = []
    for i in range(0, x.shape[0], step):
        rows.append(per_point_log_weights(model, guide, x[i : i + step], num_samples).T)
        if progress is not None:
            progress(rows[-1].shape[0])
    return torch.cat(rows)


def psis_khat(log_ratios) -> np.ndarray:
    """Pareto k̂ per row of ``log_ratios`` (n, K) (ArviZ's ``psislw``, r_eff = 1 for
    independent draws). A row whose ratios agree to ``FLAT_RATIOS`` nats (q equal to
    the posterior up to the rounding of float32 densities) has no tail to fit and gets
    k̂ = −inf: importance sampling with it is exact."""
    az = _az()
    lw = _numpy(log_ratios).astype(np.float64)
    if lw.ndim != 2:
        raise ValueError(f"log_ratios must be (points, samples), got shape {lw.shape}")
    flat = np.ptp(lw, axis=1) < FLAT_RATIOS
    k = np.full(lw.shape[0], -np.inf)
    if (~flat).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _, k_rest = az.psislw(lw[~flat], reff=1.0)
        k[~flat] = np.asarray(k_rest, dtype=np.float64)
    return k


def guide_khat(
    model: Callable,
    guide,
    x: torch.Tensor,
    num_samples: int = 500,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """PSIS k̂ of the amortised guide for every point of ``x`` (Yao et al. 2018): shape (n,)."""
    return psis_khat(guide_log_ratios(model, guide, x, num_samples, batch_size, progress))


def khat_summary(khat) -> dict[str, float]:
    """Fractions of points above 0.5, 0.7 and 1, and the median / max k̂."""
    k = _numpy(khat).astype(np.float64)
    finite = k[np.isfinite(k)]
    return {
        "points": int(k.size),
        "median": float(np.median(k)) if k.size else math.nan,
        "max": float(np.max(k)) if k.size else math.nan,
        "mean_finite": float(finite.mean()) if finite.size else math.nan,
        "frac_above_0.5": float(np.mean(k > KHAT_GOOD)),
        "frac_above_0.7": float(np.mean(k > KHAT_BAD)),
        "frac_above_1": float(np.mean(k > 1.0)),
    }


# -- summary, LOO / WAIC, plots, files --------------------------------------------------


@dataclass
class Diagnosis:
    """What :func:`diagnose` found, and the files it wrote.

    :ivar summary: ``az.summary`` of the posterior group (a pandas DataFrame), or None.
    :ivar loo: PSIS-LOO's numbers (``elpd_loo``, ``p_loo``, ...), or None without a
        ``log_likelihood`` group.
    :ivar waic: WAIC's numbers likewise.
    :ivar khat: the guide's PSIS k̂ per point, if it was given.
    :ivar posterior_predictive: :func:`predictive_check`'s numbers, or None.
    :ivar notes: ArviZ's warnings, one line each.
    :ivar paths: the files written, by kind.

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.build import build_model
    >>> from pyrovae.config import RunConfig
    >>> from pyrovae.diagnostics import diagnose, guide_khat, vi_inference_data
    >>> pyro.set_rng_seed(0)
    >>> config = RunConfig(weights="bayesian", likelihood="bernoulli", latent_dim=2, hidden=[4])
    >>> model, guide = build_model(config, 16)
    >>> x = torch.bernoulli(torch.full((8, 16), 0.5))
    >>> idata = vi_inference_data(model, guide, x, entries=2, num_chains=2, num_draws=20)
    >>> sorted(idata.groups())
    ['log_likelihood', 'observed_data', 'posterior', 'posterior_predictive', 'sample_stats']
    >>> result = diagnose(idata, khat=guide_khat(model, guide, x, num_samples=50))
    >>> sorted(result.to_dict())
    ['files', 'guide_khat', 'loo', 'max_r_hat', 'min_ess_bulk', 'notes',
     'posterior_predictive', 'waic']
    >>> result.khat.shape, result.loo["elpd_loo"] < 0
    ((8,), True)
    """

    summary: Any = None  # pandas.DataFrame from az.summary
    loo: dict | None = None
    waic: dict | None = None
    khat: np.ndarray | None = None
    posterior_predictive: dict | None = None
    notes: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loo": self.loo, "waic": self.waic, "notes": self.notes}
        if self.posterior_predictive is not None:
            out["posterior_predictive"] = self.posterior_predictive
        if self.summary is not None:
            out["max_r_hat"] = _finite(self.summary["r_hat"].max())
            out["min_ess_bulk"] = _finite(self.summary["ess_bulk"].min())
        if self.khat is not None:
            out["guide_khat"] = khat_summary(self.khat)
        out["files"] = dict(self.paths)
        return out


def _finite(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _elpd(result, kind: str) -> dict[str, Any]:
    """The numbers of an ``az.loo`` / ``az.waic`` result as plain floats."""
    out = {
        f"elpd_{kind}": float(result[f"elpd_{kind}"]),
        "se": float(result["se"]),
        f"p_{kind}": float(result[f"p_{kind}"]),
        "points": int(result["n_data_points"]),
        "warning": bool(result["warning"]),
    }
    out[f"elpd_{kind}_per_point"] = out[f"elpd_{kind}"] / out["points"]
    if kind == "loo" and "pareto_k" in result:
        k = np.asarray(result["pareto_k"])
        out["frac_pareto_k_above_0.7"] = float(np.mean(k > KHAT_BAD))
    return out


def _predictive_pairs(idata) -> list[str]:
    """Variables in both ``posterior_predictive`` and ``observed_data``."""
    if not {"posterior_predictive", "observed_data"} <= set(idata.groups()):
        return []
    observed = idata.observed_data.data_vars
    return [v for v in idata.posterior_predictive.data_vars if v in observed]


def _image_statistic(array, lead: int) -> np.ndarray:
    """T = the mean of each image's values: ``(*lead dims, image)``."""
    values = np.asarray(array, dtype=np.float64)
    return values.reshape(*values.shape[: lead + 1], -1).mean(-1)


def predictive_check(idata, var_name: str = "obs") -> dict[str, Any]:
    """A posterior predictive check of the mean value of each image (the ink of a digit).

    With T(x) the mean over an image's pixels, per image i the posterior
    predictive p-value ``p_i = P(T(x̃_i) > T(x_i)) + ½ P(T(x̃_i) = T(x_i))`` over the
    draws of ``posterior_predictive[var_name]``; near 0 or 1 the model does not
    reproduce that image's statistic.

    :returns: ``{"variable", "statistic", "observed", "replicated", "p_value_median",
        "frac_outside_95"}``: mean T of the data and of the replications, the median
        p-value, and the fraction of images with p outside [0.025, 0.975].
    """
    observed = _image_statistic(idata.observed_data[var_name].values, 0)
    replicated = _image_statistic(idata.posterior_predictive[var_name].values, 2)
    replicated = replicated.reshape(-1, observed.shape[0])
    p = (replicated > observed).mean(0) + 0.5 * (replicated == observed).mean(0)
    return {
        "variable": var_name,
        "statistic": "mean value per image",
        "observed": float(observed.mean()),
        "replicated": float(replicated.mean()),
        "p_value_median": float(np.median(p)),
        "frac_outside_95": float(np.mean((p < 0.025) | (p > 0.975))),
    }


def diagnose(
    idata,
    out: str | Path | None = None,
    var_names: Sequence[str] | None = None,
    hdi_prob: float = 0.94,
    khat: np.ndarray | None = None,
    plots: bool = True,
) -> Diagnosis:
    """Summarise an InferenceData; with ``out``, write its files there.

    * ``az.summary`` (mean, sd, HDI, MCSE, ESS bulk/tail, R-hat) → ``summary.csv``;
    * ``az.loo`` and ``az.waic`` when there is a ``log_likelihood`` group;
    * ``trace.png`` (``az.plot_trace``) and ``posterior.png`` (``az.plot_posterior``);
    * with a ``posterior_predictive`` group: ``ppc.png`` (``az.plot_ppc`` of the
      values, and of the mean value per image) and :func:`predictive_check`;
    * ``inference_data.nc`` (netCDF via h5netcdf);
    * with ``khat`` (the guide's PSIS k̂ per point): ``khat.png``, a histogram
      with a line at 0.7;
    * ``diagnostics.json``: everything above as numbers. ArviZ's warnings
      (e.g. high Pareto k in LOO) are kept in ``notes``.
    """
    az = _az()
    result = Diagnosis(khat=None if khat is None else _numpy(khat))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if "posterior" in idata.groups():
            result.summary = az.summary(idata, var_names=var_names, hdi_prob=hdi_prob)
        if "log_likelihood" in idata.groups():
            result.loo = _elpd(az.loo(idata, pointwise=True), "loo")
            result.waic = _elpd(az.waic(idata), "waic")
        if "obs" in _predictive_pairs(idata):
            result.posterior_predictive = predictive_check(idata, "obs")
    result.notes = sorted(
        {str(w.message).splitlines()[0] for w in caught if w.category is not FutureWarning}
    )
    if out is not None:
        _write(result, idata, Path(out), var_names, plots)
    return result


def _write(result: Diagnosis, idata, out: Path, var_names, plots: bool) -> None:
    from pyrovae.run import write_json

    out.mkdir(parents=True, exist_ok=True)
    if result.summary is not None:
        path = out / "summary.csv"
        result.summary.to_csv(path)
        result.paths["summary"] = str(path)
    path = out / "inference_data.nc"
    idata.to_netcdf(str(path))
    result.paths["inference_data"] = str(path)
    if plots:
        result.paths.update(_plot(idata, out, var_names, result.khat))
    path = out / "diagnostics.json"
    result.paths["diagnostics"] = str(path)
    write_json(path, _json_safe(result.to_dict()))


def _plot(idata, out: Path, var_names, khat) -> dict[str, str]:
    paths = {}
    if "posterior" in idata.groups():
        paths.update(_plot_posterior(idata, out, var_names))
    pairs = _predictive_pairs(idata)
    if pairs:
        paths["ppc"] = _plot_ppc(idata, pairs, out / "ppc.png")
    if khat is not None:
        paths["khat"] = _plot_khat(khat, out / "khat.png")
    return paths


def _plot_posterior(idata, out: Path, var_names) -> dict[str, str]:
    """``trace.png`` (az.plot_trace, compact) and ``posterior.png`` (az.plot_posterior)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    az = _az()
    paths = {}
    with warnings.catch_warnings():  # ArviZ 0.23 under matplotlib 3.11 warns per artist
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        for name, plot in (("trace", az.plot_trace), ("posterior", az.plot_posterior)):
            kwargs = {"compact": True} if name == "trace" else {}
            axes = plot(idata, var_names=var_names, **kwargs)
            fig = np.ravel(axes)[0].figure
            fig.tight_layout()
            fig.savefig(out / f"{name}.png", dpi=80)
            plt.close(fig)
            paths[name] = str(out / f"{name}.png")
    return paths


def _plot_ppc(idata, var_names: Sequence[str], path: Path, num_pp_samples: int = 50) -> str:
    """``az.plot_ppc`` per variable: its values pooled over images and pixels (left), and,
    for a variable with per-image values, the mean value per image (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    az = _az()
    panels = []
    for name in var_names:
        pooled = idata.observed_data[name].ndim > 1
        panels.append((f"{name}: values, all images" if pooled else name, idata, name))
        if pooled:
            stat = az.from_dict(
                posterior_predictive={
                    f"{name}_mean": _image_statistic(idata.posterior_predictive[name].values, 2)
                },
                observed_data={
                    f"{name}_mean": _image_statistic(idata.observed_data[name].values, 0)
                },
                dims={f"{name}_mean": [POINT_DIM]},
            )
            panels.append((f"{name}: mean value per image", stat, f"{name}_mean"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    draws = idata.posterior_predictive.sizes["chain"] * idata.posterior_predictive.sizes["draw"]
    with warnings.catch_warnings():  # ArviZ 0.23 under matplotlib 3.11 warns per artist
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        for ax, (title, data, var) in zip(axes[0], panels):
            az.plot_ppc(
                data,
                var_names=[var],
                ax=ax,
                num_pp_samples=min(num_pp_samples, draws),
                random_seed=0,
            )
            ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


def _plot_khat(khat, path: Path) -> str:
    """Histogram of the guide's k̂ per point, with a line at 0.7."""
    from pyrovae.plots import plot_histogram

    s = khat_summary(khat)
    title = (
        f"PSIS k̂ of q(z|x) per point: {100 * s['frac_above_0.7']:.1f}% above 0.7 "
        f"(n = {s['points']})"
    )
    return str(plot_histogram(khat, path, xlabel="Pareto k̂", title=title, vlines=(KHAT_BAD,)))


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def compare_posteriors(a, b, var_names: Sequence[str] | None = None, labels=("a", "b")):
    """Side-by-side means and sds of two InferenceData objects on their shared variables
    (e.g. VI against a NUTS reference): a ``pandas.DataFrame`` with ``sd_ratio`` = sd_b / sd_a
    and ``z`` = (mean_b − mean_a) / sd_a."""
    az = _az()
    names = var_names or [v for v in a.posterior.data_vars if v in b.posterior.data_vars]
    sa = az.summary(a, var_names=list(names), kind="stats")
    sb = az.summary(b, var_names=list(names), kind="stats")
    la, lb = labels
    table = sa[["mean", "sd"]].add_suffix(f"_{la}").join(sb[["mean", "sd"]].add_suffix(f"_{lb}"))
    table["sd_ratio"] = table[f"sd_{lb}"] / table[f"sd_{la}"]
    table["z"] = (table[f"mean_{lb}"] - table[f"mean_{la}"]) / table[f"sd_{la}"]
    return table


# -- a run folder ---------------------------------------------------------------------


def diagnose_run(
    run_dir: str | Path,
    x: torch.Tensor | None = None,
    out: str | Path | None = None,
    split: str = "test",
    limit: int | None = 200,
    data_dir: str | None = None,
    psis_samples: int = 500,
    num_chains: int = 2,
    num_draws: int = 100,
    iw_samples: int = 10,
    sites: Sequence[str] | None = None,
    entries: int | None = DEFAULT_ENTRIES,
    seed: int = 0,
    device: str = "cpu",
    plots: bool = True,
    progress: bool | Reporter | None = None,
) -> Diagnosis:
    """Diagnose a trained run; files go to ``out`` (default ``RUN/diagnostics``).

    For every run: the guide's PSIS k̂ on ``x`` (default: the first ``limit``
    points of ``split``). For a full-VB run also the weight posterior
    (:func:`vi_inference_data`: ``num_chains`` × ``num_draws`` draws from
    q(θ), pointwise IW log-likelihoods) and everything :func:`diagnose` does.

    :param progress: a :class:`~pyrovae.progress.Reporter` (or True: a bar on a terminal,
        a line per phase off it); default: nothing.
    """
    import pyro

    from pyrovae.run import RunFolder, load_run

    reporter = progress if isinstance(progress, Reporter) else Reporter(bool(progress))

    config, model, guide, info = load_run(run_dir, device=device)
    if x is None:
        from pyrovae.data import load_configured

        data = load_configured(config.replace(data_dir=data_dir) if data_dir else config)
        x = data.split(split)[:limit]
    dev = next(guide.parameters()).device
    x = x.to(dev)
    out = Path(out) if out is not None else RunFolder(run_dir).path / "diagnostics"
    pyro.set_rng_seed(seed)
    points = f"{x.shape[0]} points"
    with reporter.task("PSIS k̂ of the guide", x.shape[0], heartbeat=True) as task:
        khat = guide_khat(model, guide, x, num_samples=psis_samples, progress=task.advance)
        task.done(f"{points} x {psis_samples} draws, {duration(task.elapsed)}")
    if full_vb.is_full_vb(guide):
        draws = num_chains * num_draws
        total = draws * x.shape[0] * iw_samples
        with reporter.task("weight draws and log-likelihoods", total, heartbeat=True) as task:
            idata = vi_inference_data(
                model,
                guide,
                x,
                sites,
                entries,
                num_chains,
                num_draws,
                iw_samples,
                progress=task.advance,
            )
            task.done(f"{draws} draws of θ x {points}, {duration(task.elapsed)}")
        with reporter.task("ArviZ summary, LOO, WAIC, plots and files") as task:
            result = diagnose(idata, out, khat=khat, plots=plots)
            task.done(duration(task.elapsed))
        return result
    result = Diagnosis(khat=khat)
    result.notes.append(
        "point-estimate decoder: no weight posterior to summarise; only the guide's PSIS k̂"
    )
    _write_khat_only(result, out, plots)
    return result


def _write_khat_only(result: Diagnosis, out: Path, plots: bool) -> None:
    from pyrovae.run import write_json

    out.mkdir(parents=True, exist_ok=True)
    if plots:
        result.paths["khat"] = _plot_khat(result.khat, out / "khat.png")
    result.paths["diagnostics"] = str(out / "diagnostics.json")
    write_json(out / "diagnostics.json", _json_safe(result.to_dict()))
