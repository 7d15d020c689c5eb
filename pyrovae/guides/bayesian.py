r"""The full variational Bayes guide: amortised q(z|x) beside a mean-field Gaussian q(θ).

Kingma & Welling (2013, appendix F) fit

.. math::

    q(z_{1..N}, θ \mid x_{1..N}) = q_φ(θ) \prod_i q_φ(z_i \mid x_i),
    \qquad q_φ(θ) = \prod_j \mathcal N(θ_j; μ_j, σ_j^2),

with the local part any pyrovae guide (:class:`~pyrovae.guides.DiagonalGaussian`,
:class:`~pyrovae.guides.ConstantVariance`, ...) and the global part
:class:`MeanFieldWeights` over every weight site of a
:class:`~pyrovae.models.bayesian.BayesianMLP` decoder.

Blundell et al. (2015) parameterise each standard deviation as
``σ = softplus(ρ) = log(1 + exp ρ)``: positive by construction, so the
"negative variances" that stopped the MLSALT4 replication cannot occur.

**Why not** ``AutoNormal(poutine.block(model, hide=["latent"]))``? It fits, and
was tried first; three things favour the small hand-written guide:

* ``AutoNormal`` samples an auxiliary ``*_unconstrained`` site and a ``Delta``
  at the weight site, so :class:`~pyro.infer.TraceMeanField_ELBO` cannot use
  the closed-form KL(q(θ) ‖ p(θ)) under the Gaussian prior and estimates it by
  Monte Carlo, summed over ~10⁵ weights;
* its parameters are ``PyroParam``\ s, which Pyro syncs through the *global*
  param store by name: two such guides in one process (an untrained and a
  trained run, a resumed run) silently swap each other's tensors unless the
  store is cleared or ``module_local_params`` is set;
* it creates parameters lazily on the first call, after a torch optimiser
  built on ``.parameters()`` has already missed them.

:class:`MeanFieldWeights` discovers the sites the same way (one traced pass of
the decoder, with every site at its initial value, drawing no random numbers),
holds plain ``nn.Parameter``\ s created in ``__init__``, and emits
``Normal(μ, σ).to_event(k)`` at each weight site.

The guide samples ``"latent"`` *before* the weights, the order in which the
model samples them, so ``TraceMeanField_ELBO``'s mean-field check passes.

References: D. P. Kingma, M. Welling, *Auto-Encoding Variational Bayes*,
appendix F (2013); C. Blundell et al., *Weight Uncertainty in Neural
Networks*, ICML 2015.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.infer.autoguide.initialization import InitMessenger, init_to_mean, init_to_value
from pyro.nn import PyroModule
from torch import nn


def _key(site: str) -> str:
    """A parameter name for a site name (``nn.ParameterDict`` keys may not contain dots)."""
    return site.replace(".", "/")


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class DecoderPrior:
    """The prior p(θ) over a Bayesian decoder's weights, as a Pyro callable with no arguments.

    Calling it runs the decoder once on a single zero latent point, which reads
    (so samples) every weight site and nothing else. Not an ``nn.Module``: the
    guide keeps it without adopting the model's buffers.

    Example:

    >>> import pyro
    >>> from pyro import poutine
    >>> from pyrovae.guides.bayesian import DecoderPrior
    >>> from pyrovae.models import BayesianMLP
    >>> from pyrovae.models.weight_priors import NormalWeightPrior
    >>> pyro.set_rng_seed(0)
    >>> prior = DecoderPrior(BayesianMLP(2, [8], 16, "tanh", NormalWeightPrior(0.1)), latent_dim=2)
    >>> list(poutine.trace(prior).get_trace().stochastic_nodes)
    ['0.weight', '0.bias', '2.weight', '2.bias']
    """

    def __init__(self, decoder: nn.Module, latent_dim: int):
        self.decoder = decoder
        self.latent_dim = int(latent_dim)

    def __call__(self) -> None:
        device = next(iter(self.decoder.buffers()), torch.empty(0)).device
        self.decoder(torch.zeros(1, self.latent_dim, device=device))


class MeanFieldWeights(PyroModule):
    r"""``q(θ) = Π_j N(θ_j; μ_j, softplus(ρ_j)²)`` over every sample site of ``weight_model``.

    :param weight_model: a Pyro callable with no arguments sampling the global
        sites (e.g. :class:`DecoderPrior`).
    :param init_values: initial means by site name; sites not given start at
        their prior mean.
    :param init_scale: the initial σ of every weight (small: 0.01–0.1).
    :param min_scale: added to every σ to keep it positive in floating point.

    Example:

    >>> import pyro
    >>> import pyro.distributions as dist
    >>> import torch
    >>> from pyrovae.guides import MeanFieldWeights
    >>> def weight_model():
    ...     pyro.sample("w", dist.Normal(torch.zeros(3), 1.0).to_event(1))
    >>> q = MeanFieldWeights(weight_model, init_scale=0.05)
    >>> q.site_names, q.median()["w"]  # starts at the prior mean
    (['w'], tensor([0., 0., 0.]))
    >>> q.scale("w")
    tensor([0.0500, 0.0500, 0.0500], grad_fn=<AddBackward0>)
    """

    def __init__(
        self,
        weight_model: Callable[[], object],
        init_values: Mapping[str, torch.Tensor] | None = None,
        init_scale: float = 0.03,
        min_scale: float = 1e-8,
    ):
        super().__init__()
        if not init_scale > min_scale:
            raise ValueError(f"init_scale must be > {min_scale}, got {init_scale}")
        init_fn = init_to_value(values=dict(init_values or {}), fallback=init_to_mean)
        with poutine.block():
            trace = poutine.trace(InitMessenger(init_fn)(weight_model)).get_trace()
        self.site_names: list[str] = []
        self._event_dims: dict[str, int] = {}
        self.locs = nn.ParameterDict()
        self.rhos = nn.ParameterDict()
        rho = _inverse_softplus(init_scale - min_scale)
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            value = site["value"].detach()
            self.site_names.append(name)
            self._event_dims[name] = site["fn"].event_dim
            self.locs[_key(name)] = nn.Parameter(value.clone())
            self.rhos[_key(name)] = nn.Parameter(torch.full_like(value, rho))
        if not self.site_names:
            raise ValueError("weight_model samples no sites: nothing for q(θ) to cover")
        self.min_scale = float(min_scale)

    def loc(self, name: str) -> torch.Tensor:
        return self.locs[_key(name)]

    def scale(self, name: str) -> torch.Tensor:
        return F.softplus(self.rhos[_key(name)]) + self.min_scale

    def distribution(self, name: str) -> dist.TorchDistribution:
        """q(θ) at one site: ``Normal(μ, σ)`` with the site's whole shape as event."""
        return dist.Normal(self.loc(name), self.scale(name)).to_event(self._event_dims[name])

    def forward(self) -> dict[str, torch.Tensor]:
        """Sample every weight site from q(θ); returns ``{site: value}``."""
        return {name: pyro.sample(name, self.distribution(name)) for name in self.site_names}

    @torch.no_grad()
    def median(self) -> dict[str, torch.Tensor]:
        """The means μ (= medians) of q(θ), detached: ``{site: tensor}``."""
        return {name: self.loc(name).detach().clone() for name in self.site_names}

    @torch.no_grad()
    def set_means(self, values: Mapping[str, torch.Tensor]) -> list[str]:
        """Overwrite the means of the sites named in ``values``; returns the names set."""
        done = []
        for name, value in values.items():
            if name not in self._event_dims:
                continue
            loc = self.loc(name)
            if loc.shape != value.shape:
                raise ValueError(
                    f"site {name!r} has shape {tuple(loc.shape)}, value {tuple(value.shape)}"
                )
            loc.copy_(value.to(loc))
            done.append(name)
        return done


class FullVBGuide(PyroModule):
    r"""``q(z|x) q(θ)``: a local pyrovae guide and :class:`MeanFieldWeights` over the decoder.

    Built by :func:`pyrovae.build.build_model` when ``weights="bayesian"``; the
    ``guide`` option then names the local part. ``posterior(x)`` is the local
    part's (q(z|x) does not depend on θ).

    :param local: the amortised guide of site ``"latent"``.
    :param model: the :class:`~pyrovae.models.VAE` whose ``decoder`` is a
        :class:`~pyrovae.models.bayesian.BayesianMLP` (used to find the sites
        and their shapes; not adopted as a submodule).
    :param weight_init_scale: initial σ of q(θ).
    :param init: initial μ of q(θ): ``"default"`` (torch's ``nn.Linear`` init) or ``"aevb"``.
    :param weight_samples: S, the draws θ ~ q(θ) that evaluation averages over.

    The weight sites are global (outside the data plate). Pyro's vectorised
    tools apply to the whole model: :class:`pyro.infer.Predictive` (both
    ``parallel`` settings; a weight site comes back as ``(S, 1, *shape)``) and
    ``Trace_ELBO``/``TraceMeanField_ELBO`` with ``vectorize_particles=True``
    (the decoder broadcasts over the particle dim,
    :func:`pyrovae.models.bayesian.batched_linear`).

    .. warning:: Per-data-point importance weights (IWAE, BILBO, PSIS k̂ of
        q(z|x), IW log-likelihoods) do not apply to a global site: a single
        θ is shared by every point, so log p(θ) − log q(θ) cannot be split
        among them. Evaluate through :mod:`pyrovae.infer.full_vb`, which
        conditions on one θ at a time.

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyro import poutine
    >>> from pyrovae.build import build_model
    >>> from pyrovae.config import RunConfig
    >>> pyro.set_rng_seed(0)
    >>> config = RunConfig(weights="bayesian", likelihood="bernoulli", latent_dim=2, hidden=[8])
    >>> model, guide = build_model(config, 16)
    >>> trace = poutine.trace(guide).get_trace(torch.zeros(5, 16))
    >>> list(trace.stochastic_nodes)  # the data plate, q(z|x) inside it, then q(θ), global
    ['data', 'latent', 'decoder.0.weight', 'decoder.0.bias', 'decoder.2.weight', 'decoder.2.bias']
    """

    def __init__(
        self,
        local: nn.Module,
        model: nn.Module,
        weight_init_scale: float = 0.03,
        init: str = "default",
        weight_samples: int = 10,
    ):
        super().__init__()
        decoder = model.decoder
        if not hasattr(decoder, "initial_values"):
            raise ValueError("FullVBGuide needs a model with a Bayesian decoder (BayesianMLP)")
        self.local = local
        self.latent_dim = int(model.latent_dim)
        self.data_dim = int(model.data_dim)
        self.weight_model = DecoderPrior(decoder, self.latent_dim)
        self.weights = MeanFieldWeights(
            self.weight_model, decoder.initial_values(init), init_scale=weight_init_scale
        )
        self.num_weight_samples = int(weight_samples)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        return self.local.posterior(x)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        z = self.local(x, num_data)
        self.weights()
        return z
