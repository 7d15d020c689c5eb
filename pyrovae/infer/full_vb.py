r"""Evaluation of full variational Bayes models: averages over weight draws θ ~ q(θ).

A guide is *full-VB* when, beside the amortised q(z|x), it fits a posterior
q(θ) over global sites (decoder weights) — pyrovae's
:class:`~pyrovae.guides.bayesian.FullVBGuide`, or any guide with the same two
attributes: ``guide.weights`` (a Pyro callable with no arguments sampling θ ~
q(θ), with ``median()``) and ``guide.weight_model`` (the same for p(θ)).

The per-data-point machinery of :mod:`pyrovae.infer.importance` needs every
site inside the data plate. :func:`given_weights` makes that so: it
conditions model and guide on one θ and hides the weight sites, leaving the
ordinary local model p(x, z | θ) and guide q(z | x). Every estimator here
loops over S draws θ_s, applies the local estimator, and combines:

* **ELBO per point** (:func:`elbo_terms`), the per-point share of Kingma &
  Welling's full-data bound (appendix F):

  .. math::

      \mathrm{ELBO}(x) = \mathbb E_{q(θ)}\mathbb E_{q(z|x)}
          [\log p(x|z,θ) + \log p(z) - \log q(z|x)] - \mathrm{KL}(q(θ)\,\|\,p(θ)) / N,

  N the *training* set size: the weight KL is paid once for the whole
  training set, so each point carries 1/N of it. ``elbo = −(rate +
  distortion + weight_kl)`` with ``weight_kl`` that KL / N (closed form for the
  Gaussian prior, a Monte Carlo average over the S draws otherwise).

* **IW log-likelihood** (:func:`iw_log_likelihood`): for each θ_s an
  importance-weighted estimate over z with K samples, then a log-mean-exp
  over the S draws:

  .. math::

      \log \hat p(x) = \log \frac1S \sum_{s=1}^S \frac1K \sum_{k=1}^K
          \frac{p(x, z_{sk} \mid θ_s)}{q(z_{sk} \mid x)},
      \quad θ_s \sim q(θ),\; z_{sk} \sim q(z|x).

  The average inside the log is an unbiased estimate of
  ``p_q(x) = ∫ p(x|θ) q(θ) dθ``, the **predictive density of x under the
  approximate posterior** q(θ) (what a Bayesian decoder predicts for a new
  point); by Jensen the estimate is a stochastic lower bound on ``log p_q(x)``
  that tightens as S and K grow. It is *not* the marginal likelihood under the
  prior, ``log ∫ p(x|θ) p(θ) dθ``, nor a bound on it, and it is per point: the
  test set's joint predictive density ``∫ Π_i p(x_i|θ) q(θ) dθ`` is not the
  product of these.

* **Reconstruction spread** (:func:`reconstruction_spread`): the standard
  deviation across θ_s of E[x | z = E_q[z|x], θ_s], averaged over pixels — how
  much the weight uncertainty moves a reconstruction.

Point summaries (reconstruction MSE, plots, samples) use the plug-in θ̄ = the
mean of q(θ) (:func:`posterior_weights`, :func:`plug_in`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping

import pyro.poutine as poutine
import torch
from torch import nn
from torch.distributions import kl_divergence

Weights = dict[str, torch.Tensor]


def is_full_vb(guide) -> bool:
    """Whether ``guide`` fits a posterior over global weight sites (see module docstring)."""
    return callable(getattr(guide, "weights", None)) and callable(
        getattr(guide, "weight_model", None)
    )


def _require(guide) -> None:
    if not is_full_vb(guide):
        raise ValueError(
            f"{type(guide).__name__} is not a full variational Bayes guide (no weights / "
            "weight_model): train with decoder='bayesian'"
        )


def _sites(trace) -> Iterator[tuple[str, dict]]:
    return ((n, s) for n, s in trace.nodes.items() if s["type"] == "sample")


@torch.no_grad()
def sample_weights(guide, num_samples: int) -> list[Weights]:
    """``num_samples`` independent draws θ ~ q(θ), each ``{site: tensor}``."""
    _require(guide)
    draws = []
    for _ in range(int(num_samples)):
        trace = poutine.trace(guide.weights).get_trace()
        draws.append({n: s["value"].detach() for n, s in _sites(trace)})
    return draws


def posterior_mean(guide) -> Weights:
    """θ̄, the mean (= median) of q(θ): ``{site: tensor}``."""
    _require(guide)
    return guide.weights.median()


def posterior_weights(guide) -> contextlib.AbstractContextManager:
    """A context in which a full-VB model's decoder uses θ̄ = the mean of q(θ).

    ``poutine.condition`` on the weight sites: ``model.decode``, ``model.sample``
    and plots then show the plug-in decoder. For any other guide it does nothing.
    """
    if not is_full_vb(guide):
        return contextlib.nullcontext()
    return poutine.condition(data=posterior_mean(guide))


class PlugInModel(nn.Module):
    """A view of a full-VB model whose ``decode`` and ``sample`` use θ̄ = the mean of q(θ).

    For code written for point-estimate models (plots, ``pyrovae sample``):
    ``parameters()`` is non-empty (the guide's; a Bayesian decoder has none of
    its own) and ``latent_dim``/``likelihood`` are the model's.
    """

    def __init__(self, model: nn.Module, guide: nn.Module):
        super().__init__()
        self.model = model
        self.guide = guide
        self.latent_dim = model.latent_dim

    @property
    def likelihood(self) -> nn.Module:
        return self.model.likelihood

    def forward(self, *args, **kwargs):
        with posterior_weights(self.guide):
            return self.model(*args, **kwargs)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        with posterior_weights(self.guide):
            return self.model.decode(z)

    def sample(self, num_samples: int) -> torch.Tensor:
        with posterior_weights(self.guide):
            return self.model.sample(num_samples)


def plug_in(model: nn.Module, guide: nn.Module) -> nn.Module:
    """:class:`PlugInModel` for a full-VB guide; ``model`` itself otherwise."""
    return PlugInModel(model, guide) if is_full_vb(guide) else model


def given_weights(model: Callable, guide: Callable, weights: Mapping[str, torch.Tensor]):
    """``(model_θ, guide_θ)``: model and guide with the global sites fixed at ``weights``.

    The weight sites are conditioned *and hidden* (``poutine.block``), so traces
    of ``model_θ`` hold only the local sites ``p(x, z | θ)`` and those of
    ``guide_θ`` only ``q(z | x)``: every per-data-point estimator of
    :mod:`pyrovae.infer.importance` and :mod:`pyrovae.infer.evaluation` applies.
    """
    names = list(weights)
    data = dict(weights)
    model_fn = poutine.block(poutine.condition(model, data=data), hide=names)
    guide_fn = poutine.block(poutine.condition(guide, data=data), hide=names)
    return model_fn, guide_fn


def _prior_and_posterior(guide, weights: Mapping[str, torch.Tensor] | None = None):
    """Traces of q(θ) (sampled, or conditioned on ``weights``) and of p(θ) at the same values."""
    q_fn = guide.weights if weights is None else poutine.condition(guide.weights, data=weights)
    q_trace = poutine.trace(q_fn).get_trace()
    values = {n: s["value"] for n, s in _sites(q_trace)}
    p_trace = poutine.trace(poutine.condition(guide.weight_model, data=values)).get_trace()
    return q_trace, p_trace


@torch.no_grad()
def weight_kl(guide, num_samples: int = 10) -> tuple[torch.Tensor, bool]:
    """KL(q(θ) ‖ p(θ)) in nats, summed over every weight site.

    :returns: ``(kl, exact)``: closed form where ``torch.distributions`` has
        one for every site (the Gaussian prior), else a Monte Carlo average of
        ``log q(θ) − log p(θ)`` over ``num_samples`` draws (the scale mixture),
        with ``exact=False``.
    """
    _require(guide)
    q_trace, p_trace = _prior_and_posterior(guide)
    total = torch.zeros(())
    try:
        for name, q_site in _sites(q_trace):
            total = total + kl_divergence(q_site["fn"], p_trace.nodes[name]["fn"]).sum().cpu()
        return total, True
    except NotImplementedError:
        pass
    estimates = []
    for _ in range(int(num_samples)):
        q_trace, p_trace = _prior_and_posterior(guide)
        log_ratio = sum(
            (q["fn"].log_prob(q["value"]) - p_trace.nodes[n]["fn"].log_prob(q["value"])).sum()
            for n, q in _sites(q_trace)
        )
        estimates.append(log_ratio.cpu())
    return torch.stack(estimates).mean(), False


def _draws(guide, num_weight_samples: int | None, weights) -> list[Weights]:
    if weights is not None:
        return list(weights)
    s = num_weight_samples or getattr(guide, "num_weight_samples", 10)
    return sample_weights(guide, s)


@torch.no_grad()
def elbo_terms(
    model: Callable,
    guide,
    x: torch.Tensor,
    num_data: int,
    num_samples: int = 1,
    analytic_kl: bool = True,
    batch_size: int | None = None,
    max_plate_nesting: int = 1,
    num_weight_samples: int | None = None,
    weights: list[Weights] | None = None,
) -> dict[str, torch.Tensor]:
    """Per-data-point ELBO **including KL(q(θ) ‖ p(θ)) / N**, with its parts, each (n,).

    :param num_data: N, the number of *training* points q(θ) was fit to.
    :param num_weight_samples: S draws θ ~ q(θ) (default: the guide's ``num_weight_samples``).
    :param weights: the draws to use instead of sampling S.
    :returns: ``{"elbo", "rate", "distortion", "weight_kl"}`` with ``rate`` and
        ``distortion`` averaged over θ ~ q(θ), ``weight_kl`` = KL / N, and
        ``elbo = −(rate + distortion + weight_kl)``.
    """
    from pyrovae.infer import evaluation

    _require(guide)
    if not num_data or num_data < 1:
        raise ValueError(
            "a full-VB test ELBO includes KL(q(θ) ‖ p(θ)) / N: pass num_data = N, the size of "
            "the training set"
        )
    draws = _draws(guide, num_weight_samples, weights)
    rate = distortion = 0.0
    for theta in draws:
        model_fn, guide_fn = given_weights(model, guide, theta)
        terms = evaluation.elbo_terms(
            model_fn, guide_fn, x, num_samples, analytic_kl, batch_size, max_plate_nesting
        )
        rate = rate + terms["rate"] / len(draws)
        distortion = distortion + terms["distortion"] / len(draws)
    kl, _ = weight_kl(guide, num_samples=len(draws))
    kl_per_point = torch.full_like(rate, kl.item() / num_data)
    return {
        "elbo": -(rate + distortion + kl_per_point),
        "rate": rate,
        "distortion": distortion,
        "weight_kl": kl_per_point,
    }


@torch.no_grad()
def log_likelihood_draws(
    model: Callable,
    guide,
    x: torch.Tensor,
    num_samples: int,
    weights: list[Weights],
    chunk_size: int | None = None,
    batch_size: int | None = None,
    max_plate_nesting: int = 1,
) -> torch.Tensor:
    """``log p̂_K(x_i | θ_s)`` for every draw and point: shape (S, n).

    Each entry is the IW estimate over z with K = ``num_samples`` samples from
    q(z | x_i) and the decoder at θ_s: a stochastic lower bound on
    ``log p(x_i | θ_s)`` (the point's likelihood with z integrated out). These
    are the pointwise log-likelihoods that ArviZ's ``loo``/``waic`` read.
    """
    from pyrovae.infer import evaluation

    rows = []
    for theta in weights:
        model_fn, guide_fn = given_weights(model, guide, theta)
        rows.append(
            evaluation.iw_log_likelihood(
                model_fn, guide_fn, x, num_samples, chunk_size, batch_size, max_plate_nesting
            )
        )
    return torch.stack(rows)


@torch.no_grad()
def iw_log_likelihood(
    model: Callable,
    guide,
    x: torch.Tensor,
    num_samples: int,
    chunk_size: int | None = None,
    batch_size: int | None = None,
    max_plate_nesting: int = 1,
    num_weight_samples: int | None = None,
    weights: list[Weights] | None = None,
) -> torch.Tensor:
    """``log (1/S) Σ_s p̂_K(x | θ_s)`` per point, shape (n,): a stochastic lower bound on
    the log predictive density ``log ∫ p(x|θ) q(θ) dθ`` (see the module docstring).

    :param num_samples: K, importance samples of z per point and draw.
    :param num_weight_samples: S (default: the guide's ``num_weight_samples``).
    """
    draws = _draws(guide, num_weight_samples, weights)
    ll = log_likelihood_draws(
        model, guide, x, num_samples, draws, chunk_size, batch_size, max_plate_nesting
    )
    return torch.logsumexp(ll, dim=0) - math.log(len(draws))


@torch.no_grad()
def reconstruction_spread(
    model,
    guide,
    x: torch.Tensor,
    num_weight_samples: int | None = None,
    batch_size: int | None = None,
    weights: list[Weights] | None = None,
) -> torch.Tensor:
    """Per point: the standard deviation across θ_s ~ q(θ) of ``E[x | z̄, θ_s]`` (z̄ the
    mean of q(z|x)), averaged over the D pixels: shape (n,). Zero for a point estimate."""
    draws = _draws(guide, num_weight_samples, weights)
    out = []
    step = x.shape[0] if batch_size is None else int(batch_size)
    for i in range(0, x.shape[0], step):
        xb = x[i : i + step]
        z = guide.posterior(xb).mean
        recons = []
        for theta in draws:
            with poutine.condition(data=theta):
                recons.append(model.decode(z))
        out.append(torch.stack(recons).std(0, unbiased=len(draws) > 1).mean(-1))
    return torch.cat(out)


@torch.no_grad()
def initialise_from_run(model, guide, path) -> dict[str, list[str]]:
    """Seed a full-VB guide from a trained point-estimate run (MLSALT4's experiment).

    q(θ)'s means become the run's decoder weights (site ``decoder.0.weight`` ←
    parameter ``decoder.0.weight``); the local guide takes the run's encoder
    when it is the same class. σ of q(θ) keeps its initial value.

    :returns: ``{"weights": [sites set], "local": [parameters set]}``.
    :raises ConfigError: when the shapes do not match (different sizes).
    """
    from pyrovae.config import ConfigError
    from pyrovae.run import load_run

    _require(guide)
    _, point_model, point_guide, _ = load_run(path)
    if is_full_vb(point_guide):
        raise ConfigError(f"init_from {path} is a full-VB run; it needs a point-estimate run")
    device = next(iter(guide.parameters())).device
    values = {k: v.to(device) for k, v in point_model.state_dict().items()}
    try:
        names = guide.weights.set_means(values)
    except ValueError as e:
        raise ConfigError(f"init_from {path}: {e}; train it with the same sizes") from None
    if len(names) != len(guide.weights.site_names):
        missing = sorted(set(guide.weights.site_names) - set(names))
        raise ConfigError(f"init_from {path} has no decoder parameters for sites {missing}")
    local: list[str] = []
    if type(point_guide) is type(guide.local):
        state = point_guide.state_dict()
        try:
            guide.local.load_state_dict(state)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise ConfigError(f"init_from {path}: its encoder does not fit ({first})") from None
        local = list(state)
    return {"weights": names, "local": local}
