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
  holds ``log p(x_i | θ_s)`` per point and draw, read by ``az.loo`` (PSIS-LOO,
  Vehtari, Gelman & Gabry 2017) and ``az.waic``.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyro.poutine as poutine
import torch

from pyrovae.infer import evaluation, full_vb
from pyrovae.infer.log_weights import per_point_log_weights

DEFAULT_ENTRIES = 4
KHAT_GOOD, KHAT_BAD = 0.5, 0.7
FLAT_RATIOS = 1e-3  # nats: log ratios that vary less than this are constant
PSIS_ROWS = 25_000  # samples × points per vectorised pass of the guide k̂


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
):
    """An :class:`arviz.InferenceData` from arrays with explicit ``(chain, draw, ...)`` dims.

    :param posterior: ``{site: (chain, draw, *shape)}``; each site is cut to
        its first ``entries`` entries (:func:`select_entries`).
    :param log_likelihood: ``{site: (chain, draw, n)}``, one column per data point.
    :param observed_data: ``{site: (n, ...)}``.
    :param sample_stats: ``{stat: (chain, draw)}`` (e.g. ``diverging``).
    """
    cut = {name: select_entries(name, value, entries) for name, value in posterior.items()}
    return _assemble(
        {n: a for n, (a, _) in cut.items()},
        {n: lab for n, (_, lab) in cut.items()},
        log_likelihood,
        observed_data,
        sample_stats,
    )


def _assemble(posterior, labels, log_likelihood, observed_data, sample_stats):
    """``az.from_dict`` with named dims: ``SITE_entry`` for weight entries, ``point`` for data."""
    az = _az()
    coords: dict[str, Any] = {}
    dims: dict[str, list[str]] = {}
    for name, lab in labels.items():
        if lab is not None:
            dims[name] = [f"{name}_entry"]
            coords[f"{name}_entry"] = lab
    groups: dict[str, Any] = {"posterior": {k: _numpy(v) for k, v in posterior.items()}}
    if log_likelihood:
        groups["log_likelihood"] = {k: _numpy(v) for k, v in log_likelihood.items()}
        for name, value in groups["log_likelihood"].items():
            dims[name] = ["point"] + [f"{name}_dim_{i}" for i in range(value.ndim - 3)]
            coords["point"] = np.arange(value.shape[2])
    if observed_data:
        groups["observed_data"] = {k: _numpy(v) for k, v in observed_data.items()}
        for name, value in groups["observed_data"].items():
            dims[name] = ["point"] + [f"{name}_dim_{i}" for i in range(value.ndim - 1)]
            coords["point"] = np.arange(value.shape[0])
    if sample_stats:
        groups["sample_stats"] = {k: _numpy(v) for k, v in sample_stats.items()}
    return az.from_dict(**groups, coords=coords, dims=dims)


def _default_sites(names: Sequence[str], sites: Sequence[str] | None) -> list[str]:
    if sites is None:
        return list(names)
    unknown = [s for s in sites if s not in names]
    if unknown:
        raise ValueError(f"unknown sites {unknown}; choose from {', '.join(names)}")
    return list(sites)


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
):
    """InferenceData of a full-VB guide: independent draws θ ~ q(θ) split into chains.

    ``posterior``: the chosen weight sites (default: all, first ``entries``
    entries each). ``log_likelihood["obs"][c, s, i] = log p̂(x_i | θ_cs)``, an IW
    estimate over z with ``iw_samples`` samples from q(z|x_i) (a stochastic
    lower bound on the point's likelihood with z integrated out).
    ``observed_data["obs"]`` is ``x``.

    .. warning:: The IW estimates are noisy, and ``az.loo``/``az.waic`` read that
        noise as posterior variance of the log-likelihood: ``p_loo``/``p_waic`` come
        out too large and the elpd too low, more so for small ``iw_samples``.
        On held-out points the direct estimate of the log predictive density is
        :func:`pyrovae.infer.evaluation.iw_log_likelihood`; LOO there measures how much
        each point's likelihood moves with θ.
    """
    full_vb._require(guide)
    chosen = _default_sites(guide.weights.site_names, sites)
    draws: dict[str, list[np.ndarray]] = {s: [] for s in chosen}
    rows = []
    for _ in range(num_chains * num_draws):
        theta = full_vb.sample_weights(guide, 1)[0]
        for s in chosen:
            value = _numpy(theta[s]).reshape(-1)
            draws[s].append(value if entries is None else value[:entries])
        rows.append(
            evaluation.log_likelihood_draws(
                model, guide, x, iw_samples, [theta], batch_size=batch_size
            )[0]
        )
    posterior, labels = {}, {}
    for s in chosen:
        shape = tuple(guide.weights.loc(s).shape)
        posterior[s] = np.stack(draws[s]).reshape(num_chains, num_draws, -1)
        labels[s] = _labels(shape, posterior[s].shape[-1])
    ll = torch.stack(rows).reshape(num_chains, num_draws, -1)
    return _assemble(posterior, labels, {"obs": ll}, {"obs": x}, None)


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
    **kwargs,
):
    """InferenceData of MCMC draws (a :class:`pyro.infer.MCMC` or ``{site: (chain, draw, ...)}``
    as from :func:`pyrovae.infer.nuts.nuts_chains`).

    With ``model`` (and its ``*args``), adds the pointwise log-likelihood of
    ``obs_site`` per draw and the observed values. For a VAE that is
    ``log p(x_i | z_i, θ)`` at the sampled z_i (z is a chain variable here).

    :param sites: sites for the posterior group (default: all but ``exclude``).
    """
    if hasattr(samples, "get_samples"):
        samples = samples.get_samples(group_by_chain=True)
    names = [n for n in samples if n not in exclude]
    chosen = _default_sites(names, sites)
    posterior = {s: samples[s] for s in chosen}
    log_likelihood = observed = None
    if model is not None:
        ll = pointwise_log_likelihood(model, samples, *args, obs_site=obs_site, **kwargs)
        log_likelihood = {obs_site: ll}
        trace = poutine.trace(model).get_trace(*args, **kwargs)
        observed = {obs_site: trace.nodes[obs_site]["value"]}
    return inference_data(posterior, log_likelihood, observed, sample_stats, entries=entries)


# -- PSIS k̂ of an amortised guide ------------------------------------------------------


@torch.no_grad()
def guide_log_ratios(
    model: Callable,
    guide,
    x: torch.Tensor,
    num_samples: int = 500,
    batch_size: int | None = None,
) -> torch.Tensor:
    """``log p(x_i, z_ik) − log q(z_ik | x_i)`` for K draws z_ik ~ q(z | x_i): shape (n, K).

    The transpose of :func:`pyrovae.infer.log_weights.per_point_log_weights`
    (trace-free for pyrovae's own pairs, Pyro traces otherwise), in batches of
    about ``PSIS_ROWS`` samples × points. A full-VB guide is evaluated at θ̄, the
    mean of q(θ) (:func:`pyrovae.infer.full_vb.given_weights`).
    """
    if full_vb.is_full_vb(guide):
        model, guide = full_vb.given_weights(model, guide, full_vb.posterior_mean(guide))
    step = batch_size or max(1, PSIS_ROWS // int(num_samples))
    rows = []
    for i in range(0, x.shape[0], step):
        rows.append(per_point_log_weights(model, guide, x[i : i + step], num_samples).T)
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
) -> np.ndarray:
    """PSIS k̂ of the amortised guide for every point of ``x`` (Yao et al. 2018): shape (n,)."""
    return psis_khat(guide_log_ratios(model, guide, x, num_samples, batch_size))


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
    """What :func:`diagnose` found, and the files it wrote."""

    summary: Any = None  # pandas.DataFrame from az.summary
    loo: dict | None = None
    waic: dict | None = None
    khat: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loo": self.loo, "waic": self.waic, "notes": self.notes}
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
) -> Diagnosis:
    """Diagnose a trained run; files go to ``out`` (default ``RUN/diagnostics``).

    For every run: the guide's PSIS k̂ on ``x`` (default: the first ``limit``
    points of ``split``). For a full-VB run also the weight posterior
    (:func:`vi_inference_data`: ``num_chains`` × ``num_draws`` draws from
    q(θ), pointwise IW log-likelihoods) and everything :func:`diagnose` does.
    """
    import pyro

    from pyrovae.run import RunFolder, load_run

    config, model, guide, info = load_run(run_dir, device=device)
    if x is None:
        from pyrovae.data import load_dataset

        data = load_dataset(config.dataset, data_dir=data_dir or config.data_dir)
        x = data.split(split)[:limit]
    dev = next(guide.parameters()).device
    x = x.to(dev)
    out = Path(out) if out is not None else RunFolder(run_dir).path / "diagnostics"
    pyro.set_rng_seed(seed)
    khat = guide_khat(model, guide, x, num_samples=psis_samples)
    if full_vb.is_full_vb(guide):
        idata = vi_inference_data(
            model, guide, x, sites, entries, num_chains, num_draws, iw_samples
        )
        return diagnose(idata, out, khat=khat, plots=plots)
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
