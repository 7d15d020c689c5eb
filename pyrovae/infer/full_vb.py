r"""Full variational Bayes over decoder weights: handling q(θ), its draws and the plug-in model.

A guide is *full-VB* when, beside the amortised q(z|x), it fits a posterior
q(θ) over global sites (decoder weights) — pyrovae's
:class:`~pyrovae.guides.bayesian.FullVBGuide`, or any guide with the same two
attributes: ``guide.weights`` (a Pyro callable with no arguments sampling θ ~
q(θ), with ``median()``) and ``guide.weight_model`` (the same for p(θ)).
This module knows only the weights; the estimators that average over them
live in :mod:`pyrovae.infer.evaluation`, which imports this module (never the
other way round). Its primitives:

* **draws** θ_1..S ~ q(θ) (:func:`sample_weights`, :func:`weight_draws`) and
  the mean θ̄ of q(θ) (:func:`posterior_mean`);
* **a local model for one θ** (:func:`given_weights`): model and guide
  conditioned on θ with the weight sites hidden, leaving the ordinary
  per-data-point pair p(x, z | θ), q(z | x), every site inside the data plate,
  to which :func:`pyrovae.infer.log_weights.per_point_log_weights` and
  :func:`pyrovae.infer.evaluation.elbo_terms` apply;
* **the weight KL** KL(q(θ) ‖ p(θ)) (:func:`weight_kl`): closed form for the
  Gaussian prior, Monte Carlo for the scale mixture. In the per-point share of
  Kingma & Welling's full-data bound (2013, appendix F)

  .. math::

      \mathrm{ELBO}(x) = \mathbb E_{q(θ)}\mathbb E_{q(z|x)}
          [\log p(x|z,θ) + \log p(z) - \log q(z|x)] - \mathrm{KL}(q(θ)\,\|\,p(θ)) / N

  it is paid once for the N training points, 1/N per point;
* **the plug-in decoder** at θ̄ (:func:`posterior_weights`, :func:`plug_in`)
  for point summaries (reconstruction MSE, plots, samples);
* **the reconstruction spread** (:func:`reconstruction_spread`): the standard
  deviation across θ_s of E[x | z = E_q[z|x], θ_s], averaged over pixels — how
  much the weight uncertainty moves a reconstruction;
* **stacked draws** as Pyro's vectorised machinery returns them
  (:class:`pyro.infer.Predictive` with ``parallel=True``, ELBOs with
  ``vectorize_particles=True``: a weight site of shape ``(S, 1, *shape)``, the 1
  the data plate's position) split into one ``{site: tensor}`` per draw
  (:func:`unstack_weights`), and the log-densities log q(θ_s), log p(θ_s) of a
  draw (:func:`weight_log_densities`).

With them :func:`pyrovae.infer.evaluation.iw_log_likelihood` estimates, for a
full-VB guide,

.. math::

    \log \hat p(x) = \log \frac1S \sum_{s=1}^S \frac1K \sum_{k=1}^K
        \frac{p(x, z_{sk} \mid θ_s)}{q(z_{sk} \mid x)},
    \quad θ_s \sim q(θ),\; z_{sk} \sim q(z|x),

a stochastic lower bound on the log **predictive density under the
approximate posterior**, ``log ∫ p(x|θ) q(θ) dθ`` (not on the marginal
likelihood under the prior), and :func:`~pyrovae.infer.evaluation.elbo_terms`
the bound above with its rate and distortion averaged over the S draws.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

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
            "weight_model): train with weights='bayesian'"
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


def unstack_weights(guide, samples: Mapping[str, torch.Tensor]) -> list[Weights]:
    """S draws stacked along the first dim → S dicts ``{site: tensor of the site's shape}``.

    :param samples: ``{site: (S, ..., *shape)}`` for every weight site of the
        guide, e.g. what :class:`pyro.infer.Predictive` returns for a global
        site, ``(S, 1, *shape)``; other keys are ignored.
    """
    _require(guide)
    names = guide.weights.site_names
    missing = [n for n in names if n not in samples]
    if missing:
        raise ValueError(f"no draws of the weight sites {missing}")
    flat = {}
    for name in names:
        value = samples[name]
        flat[name] = value.reshape(value.shape[0], *guide.weights.loc(name).shape)
    num = {v.shape[0] for v in flat.values()}
    if len(num) != 1:
        raise ValueError(f"weight sites hold different numbers of draws: {sorted(num)}")
    return [{n: v[s] for n, v in flat.items()} for s in range(num.pop())]


@torch.no_grad()
def weight_log_densities(
    guide, weights: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log q(θ), log p(θ))`` of one draw θ, each summed over every weight site (scalars)."""
    _require(guide)
    q_trace, p_trace = _prior_and_posterior(guide, weights)
    log_q = torch.zeros(())
    log_p = torch.zeros(())
    for name, site in _sites(q_trace):
        log_q = log_q + site["fn"].log_prob(site["value"]).sum().cpu()
        log_p = log_p + p_trace.nodes[name]["fn"].log_prob(site["value"]).sum().cpu()
    return log_q, log_p


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

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.build import build_model
    >>> from pyrovae.config import RunConfig
    >>> from pyrovae.infer.full_vb import plug_in
    >>> pyro.set_rng_seed(0)
    >>> config = RunConfig(weights="bayesian", likelihood="bernoulli", latent_dim=2, hidden=[8])
    >>> model, guide = build_model(config, 16)
    >>> plugged = plug_in(model, guide)
    >>> z = torch.zeros(3, 2)
    >>> torch.equal(plugged.decode(z), plugged.decode(z))  # θ fixed at q(θ)'s mean
    True
    >>> torch.equal(model.decode(z), model.decode(z))  # θ drawn from the prior at each call
    False
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
    ``guide_θ`` only ``q(z | x)``: the per-data-point log-weights of
    :mod:`pyrovae.infer.log_weights` and the estimators of
    :mod:`pyrovae.infer.evaluation` apply.
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


def weight_draws(
    guide, num_weight_samples: int | None = None, weights: Sequence[Weights] | None = None
) -> list[Weights]:
    """The draws θ_1..S an estimator averages over: ``weights`` when given, else S fresh
    draws from q(θ) (:func:`sample_weights`), S = ``num_weight_samples`` or, by default,
    the guide's ``num_weight_samples`` (10 if it has none)."""
    if weights is not None:
        return list(weights)
    s = num_weight_samples or getattr(guide, "num_weight_samples", 10)
    return sample_weights(guide, s)


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
    draws = weight_draws(guide, num_weight_samples, weights)
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
