"""From a :class:`~pyrovae.config.RunConfig` to a model and a guide, through the parts it names.

Each part is constructed by :meth:`RunConfig.build` with what it is built
from (its *context*: sizes, networks) and the options it declares:

=============  ==========================================================================
part           context
=============  ==========================================================================
likelihood     ``data_dim``
guide          ``data_dim``, ``latent_dim``, ``hidden``, ``activation``, ``init``, and
               ``encoder`` (the ``encoder`` network part's, unless it is the MLP the
               guide builds itself)
prior          ``latent_dim`` (and ``guide``, ``data_dim`` if it declares ``uses_guide``)
decoder        the network part (:mod:`pyrovae.networks`): decoder network, likelihood
weights        the weight treatment (:mod:`pyrovae.weights`): Bayesian decoder, guide wrap
beta_schedule  ``beta``, ``epochs``
=============  ==========================================================================

``shape`` is the shape of one data point (:attr:`pyrovae.data.Dataset.shape`):
``(C, H, W)`` for images, ``(D,)`` for a table; an int D means ``(D,)``.
The construction order, and so the seeded initialisation, is likelihood,
(guide, for a prior that uses it), prior, decoder, guide.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

from torch import nn

from pyrovae.config import ConfigError, RunConfig
from pyrovae.networks import MLP


def data_shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    """``shape`` as a tuple: ``(D,)`` for an int D."""
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


def build_likelihood(config: RunConfig, data_dim: int) -> nn.Module:
    """The likelihood head ``config.likelihood`` names (``auto`` already resolved)."""
    if config.likelihood == "auto":
        raise ConfigError("resolve likelihood 'auto' with config.for_data() before building")
    return config.build("likelihood", data_dim=data_dim)


def build_guide(config: RunConfig, shape: int | Sequence[int]) -> nn.Module:
    """The guide q(z|x) ``config.guide`` names (without q(θ) of a Bayesian decoder)."""
    shape = data_shape(shape)
    network = config.part("encoder")
    context = {}
    if network is not MLP:  # the MLP is the guides' own default network
        accepts = inspect.signature(config.part("guide")).parameters
        if "encoder" not in accepts:
            raise ConfigError(
                f"guide {config.guide!r} builds its own network and takes no encoder; "
                "use --encoder mlp"
            )
        context["encoder"] = lambda out_features: network.encoder(config, shape, out_features)
    return config.build(
        "guide",
        data_dim=math.prod(shape),
        latent_dim=config.latent_dim,
        hidden=config.hidden,
        activation=config.activation,
        init=config.init,
        **context,
    )


def build_model(config: RunConfig, shape: int | Sequence[int]) -> tuple[nn.Module, nn.Module]:
    """``(model, guide)`` for data points of ``shape``, as the config names them."""
    from pyrovae.models.vae import VAE

    shape = data_shape(shape)
    data_dim = math.prod(shape)
    likelihood = build_likelihood(config, data_dim)
    guide = None
    context = {}
    if getattr(config.part("prior"), "uses_guide", False):  # the VampPrior
        guide = build_guide(config, shape)
        context = {"guide": guide, "data_dim": data_dim}
    prior = config.build("prior", latent_dim=config.latent_dim, **context)
    weights = config.part("weights")
    hidden = list(reversed(config.hidden))  # the decoder mirrors the encoder
    decoder = weights.decoder(config, config.latent_dim, hidden, likelihood.out_features)
    if decoder is None:
        decoder, likelihood = config.part("decoder").decoder(
            config, config.latent_dim, shape, likelihood
        )
    model = VAE(
        data_dim,
        config.latent_dim,
        likelihood=likelihood,
        prior=prior,
        decoder=decoder,
    )
    if guide is None:
        guide = build_guide(config, shape)
    return model, weights.guide(config, guide, model)


def build_beta_schedule(config: RunConfig):
    """The β schedule the config names (:data:`pyrovae.registry.BETA_SCHEDULES`)."""
    return config.build("beta_schedule", beta=config.beta, epochs=config.epochs)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
