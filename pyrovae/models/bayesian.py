r"""A Bayesian MLP decoder: weights and biases are Pyro sample sites (full variational Bayes).

Kingma & Welling (2013, appendix F) treat the decoder's parameters θ as latent
variables with a prior p(θ). With this decoder inside :class:`~pyrovae.models.VAE`,

.. math::

    θ \sim p(θ)  \quad\text{(sites "decoder.0.weight", "decoder.0.bias", ...; global)}

    z_i \sim p(z),\quad x_i \sim p(x \mid f_θ(z_i))
        \quad\text{(sites "latent", "obs"; inside plate "data")}

Every :class:`BayesianLinear` holds its weight and bias as
:class:`pyro.nn.PyroSample` attributes, so reading them inside a model call
samples (or, under ``poutine.replay``/``condition``, replays) the site once per
call. The VAE calls the decoder *between* two entries of the data plate, so
the weight sites live outside it: they are global, unscaled by the plate's
``N/B``, and the minibatch bound is

.. math::

    \frac{N}{B}\sum_{i \in \text{batch}} \big(\log p(x_i|z_i,θ) + \log p(z_i) - \log q(z_i|x_i)\big)
    + \log p(θ) - \log q(θ),

an unbiased estimate of the full-dataset bound of appendix F (eq. 19 of the
MLSALT4 report).

Site names mirror the point-estimate decoder's ``state_dict`` keys
(``decoder.0.weight`` ↔ site ``"decoder.0.weight"``), so a trained VAE's
weights can seed q(θ)'s means (:func:`pyrovae.weights.initialise_from_run`).

.. warning:: Outside any inference handler, *reading* a weight samples it from
    the prior: ``VAE.decode`` and ``VAE.sample`` of a Bayesian VAE then use prior
    weights. Decode with posterior weights under
    :func:`pyrovae.infer.full_vb.posterior_weights` (``poutine.condition`` on
    q(θ)'s means), or replay a guide trace. Called inside ``pyro.plate("data")``
    the weights would be batched per data point and the decoder fails: never
    call it there (PITFALLS).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.infer.autoguide.initialization import InitMessenger, init_to_mean
from pyro.nn import PyroModule, PyroSample
from torch import nn

from pyrovae import registry
from pyrovae.models.weight_priors import BLUNDELL_SIGMA2
from pyrovae.nets import INITS
from pyrovae.options import options_of


class BayesianLinear(PyroModule):
    """An affine map ``x ↦ x Wᵀ + b`` with ``W`` and ``b`` drawn from ``prior``.

    :param in_features: input size.
    :param out_features: output size.
    :param prior: a weight prior module (:mod:`pyrovae.models.weight_priors`):
        ``prior(shape)`` is a distribution over a tensor of that shape.
    """

    def __init__(self, in_features: int, out_features: int, prior: nn.Module):
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.prior = prior
        self.weight = PyroSample(lambda self: self.prior((self.out_features, self.in_features)))
        self.bias = PyroSample(lambda self: self.prior((self.out_features,)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"

    @torch.no_grad()
    def initial_values(self, init: str = "default") -> dict[str, torch.Tensor]:
        """Starting values for q(θ)'s means, keyed by full site name.

        ``"default"`` is torch's ``nn.Linear`` initialisation (uniform within
        ``±1/√fan_in``, what a point-estimate decoder starts from); ``"aevb"`` is
        N(0, 0.01²).
        """
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
        device = self.prior_device()
        shapes = {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}
        bound = 1 / math.sqrt(self.in_features)
        out = {}
        for attr, shape in shapes.items():
            if init == "aevb":
                value = torch.randn(shape, device=device) * 0.01
            else:
                value = torch.empty(shape, device=device).uniform_(-bound, bound)
            out[self._pyro_get_fullname(attr)] = value
        return out

    def prior_device(self) -> torch.device:
        return next(iter(self.prior.buffers()), torch.empty(0)).device


class BayesianMLP(PyroModule[nn.Sequential]):
    """An MLP ``in → hidden… → out`` of :class:`BayesianLinear` layers (tanh etc. between).

    Laid out like :func:`pyrovae.nets.mlp` (layers at even indices,
    activations between), so its sites are named like that network's
    parameters.

    :param in_features: the latent size.
    :param hidden: hidden widths, from z towards x.
    :param out_features: the likelihood head's input size.
    :param activation: a name in :data:`pyrovae.registry.ACTIVATIONS`.
    :param prior: the weight prior shared by every layer.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str,
        prior: nn.Module,
    ):
        widths = [int(in_features), *map(int, hidden), int(out_features)]
        if any(w < 1 for w in widths):
            raise ValueError(f"layer widths must be positive integers, got {widths}")
        act = registry.ACTIVATIONS.get(activation)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(BayesianLinear(a, b, prior))
            if i < len(widths) - 2:
                layers.append(act())
        super().__init__(*layers)

    @torch.no_grad()
    def _name_sites(self) -> None:
        """Run once with every site at its prior mean (no random numbers) so that Pyro
        resolves the full site names (they depend on where the module is attached)."""
        device = self.bayesian_layers()[0].prior_device()
        with poutine.block(), InitMessenger(init_to_mean):
            self(torch.zeros(1, self.bayesian_layers()[0].in_features, device=device))

    def bayesian_layers(self) -> list[BayesianLinear]:
        return [m for m in self if isinstance(m, BayesianLinear)]

    def initial_values(self, init: str = "default") -> dict[str, torch.Tensor]:
        """Starting means of every weight site, keyed by full site name (see
        :meth:`BayesianLinear.initial_values`)."""
        self._name_sites()
        out: dict[str, torch.Tensor] = {}
        for layer in self.bayesian_layers():
            out.update(layer.initial_values(init))
        return out


def bayesian_decoder(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    activation: str = "tanh",
    weight_prior: str = "normal",
    weight_prior_scale: float = 0.1,
    mixture_pi: float = 0.5,
    mixture_sigma1: float = 1.0,
    mixture_sigma2: float = BLUNDELL_SIGMA2,
) -> BayesianMLP:
    """A :class:`BayesianMLP` with the weight prior registered as ``weight_prior``
    (``"normal"``: N(0, ``weight_prior_scale``²); ``"scale-mixture"``: Blundell's
    ``mixture_pi``, ``mixture_sigma1``, ``mixture_sigma2``)."""
    values = dict(
        weight_prior_scale=weight_prior_scale,
        mixture_pi=mixture_pi,
        mixture_sigma1=mixture_sigma1,
        mixture_sigma2=mixture_sigma2,
    )
    cls = registry.WEIGHT_PRIORS.get(weight_prior)
    prior = cls(**{o.keyword: values[o.name] for o in options_of(cls)})
    return BayesianMLP(in_features, hidden, out_features, activation, prior)
