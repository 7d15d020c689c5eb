"""The variational auto-encoder's generative model (Kingma & Welling 2013).

    z ~ p(z)                      site "latent", inside plate "data"
    x ~ p(x | z) = L(f_θ(z))      site "obs",    inside plate "data"

with ``f_θ`` a decoder network (an MLP by default; any network of
:mod:`pyrovae.networks`) and ``L`` a likelihood head
(:mod:`pyrovae.models.likelihoods`). The model is a plain Pyro callable:
``pyro.infer`` ELBOs, ``Predictive`` and ``poutine`` handlers apply unchanged.
The decoder is called *between* two entries of the same data plate, never
inside it, so that a decoder with sampled (Bayesian) weights is not batched
over data points.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import torch
from pyro.nn import PyroModule
from torch import nn

from pyrovae import nets
from pyrovae.models.likelihoods import Bernoulli, Likelihood
from pyrovae.models.plates import data_plate
from pyrovae.models.priors import StandardNormal
from pyrovae.nets import mlp
from pyrovae.options import Option

LATENT_DIM = Option(
    "latent_dim", 10, "Latent size: the dimension of z.", low=1, aliases=("latent",)
)
#: the model's own options, and those of its networks
OPTIONS = (LATENT_DIM, *nets.OPTIONS)


class VAE(PyroModule):
    """A VAE model ``p(z) p(x|z)`` with a decoder network (default: an MLP).

    :param data_dim: D, the size of a flattened data point.
    :param latent_dim: the size of z.
    :param hidden: hidden widths of the decoder, from z towards x.
    :param activation: decoder nonlinearity (a name in :data:`pyrovae.registry.ACTIVATIONS`).
    :param likelihood: a :class:`~pyrovae.models.likelihoods.Likelihood`; default Bernoulli.
    :param prior: a prior module (default :class:`~pyrovae.models.priors.StandardNormal`).
    :param init: ``"default"`` or ``"aevb"`` (N(0, 0.01²)).
    :param decoder: a ready network mapping ``(..., latent_dim)`` to
        ``(..., likelihood.out_features)``, instead of building an MLP of ``hidden``
        widths (:mod:`pyrovae.networks`; for images, the outputs are k blocks of one
        flat ``(C, H, W)`` image each).

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyro import poutine
    >>> from pyrovae.models import VAE, Bernoulli
    >>> pyro.set_rng_seed(0)
    >>> model = VAE(64, latent_dim=2, hidden=[16], likelihood=Bernoulli(64))
    >>> x = torch.bernoulli(torch.full((5, 64), 0.5))
    >>> trace = poutine.trace(model).get_trace(x)
    >>> trace.nodes["latent"]["value"].shape, trace.nodes["obs"]["value"].shape
    (torch.Size([5, 2]), torch.Size([5, 64]))
    >>> model.decode(torch.zeros(3, 2)).shape  # E[x | z], here Bernoulli means
    torch.Size([3, 64])
    >>> model.sample(4).shape
    torch.Size([4, 64])
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden: Sequence[int] = (400,),
        activation: str = "tanh",
        likelihood: Likelihood | None = None,
        prior: nn.Module | None = None,
        init: str = "default",
        decoder: nn.Module | None = None,
    ):
        super().__init__()
        self.data_dim = int(data_dim)
        self.latent_dim = int(latent_dim)
        self.likelihood = likelihood if likelihood is not None else Bernoulli(self.data_dim)
        if self.likelihood.data_dim != self.data_dim:
            raise ValueError(
                f"likelihood is for {self.likelihood.data_dim} dimensions, model for {data_dim}"
            )
        self.prior = prior if prior is not None else StandardNormal(self.latent_dim)
        self.decoder = (
            decoder
            if decoder is not None
            else mlp(self.latent_dim, hidden, self.likelihood.out_features, activation, init)
        )

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        """Score (or, under ``poutine.uncondition``, sample) a minibatch ``x`` of shape (B, D)."""
        plate = data_plate(x, num_data)
        with plate:
            z = pyro.sample("latent", self.prior())
        h = self.decoder(z)
        with plate:
            return pyro.sample("obs", self.likelihood(h), obs=x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z] for latent points ``z`` of shape (..., latent_dim)."""
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Means E[x | z] of ``num_samples`` draws z ~ p(z): shape (num_samples, D)."""
        z = self.prior().sample((num_samples,))
        return self.decode(z)
