"""From a :class:`~pyrovae.config.RunConfig` to a model and a guide, through the parts it names.

Each part is constructed by :meth:`RunConfig.build` with what it is built
from (its *context*: sizes, networks) and the options it declares:

=============  ==========================================================================
part           context
=============  ==========================================================================
likelihood     ``data_dim``
guide          ``data_dim``, ``latent_dim``, ``hidden``, ``activation``, ``init``
prior          ``latent_dim`` (and ``guide``, ``data_dim`` if it declares ``uses_guide``)
decoder        the weight treatment (:mod:`pyrovae.weights`): decoder network, guide wrap
beta_schedule  ``beta``, ``epochs``
=============  ==========================================================================

The construction order, and so the seeded initialisation, is likelihood,
(guide, for a prior that uses it), prior, decoder, guide.
"""

from __future__ import annotations

from torch import nn

from pyrovae.config import ConfigError, RunConfig


def build_likelihood(config: RunConfig, data_dim: int) -> nn.Module:
    """The likelihood head ``config.likelihood`` names (``auto`` already resolved)."""
    if config.likelihood == "auto":
        raise ConfigError("resolve likelihood 'auto' with config.for_data() before building")
    return config.build("likelihood", data_dim=data_dim)


def build_guide(config: RunConfig, data_dim: int) -> nn.Module:
    """The guide q(z|x) ``config.guide`` names (without q(θ) of a Bayesian decoder)."""
    return config.build(
        "guide",
        data_dim=data_dim,
        latent_dim=config.latent_dim,
        hidden=config.hidden,
        activation=config.activation,
        init=config.init,
    )


def build_model(config: RunConfig, data_dim: int) -> tuple[nn.Module, nn.Module]:
    """``(model, guide)`` for data of ``data_dim`` dimensions, as the config names them."""
    from pyrovae.models.vae import VAE

    likelihood = build_likelihood(config, data_dim)
    guide = None
    context = {}
    if getattr(config.part("prior"), "uses_guide", False):  # the VampPrior
        guide = build_guide(config, data_dim)
        context = {"guide": guide, "data_dim": data_dim}
    prior = config.build("prior", latent_dim=config.latent_dim, **context)
    weights = config.part("decoder")
    hidden = list(reversed(config.hidden))  # the decoder mirrors the encoder
    model = VAE(
        data_dim,
        config.latent_dim,
        hidden=hidden,
        activation=config.activation,
        likelihood=likelihood,
        prior=prior,
        init=config.init,
        decoder=weights.decoder(config, config.latent_dim, hidden, likelihood.out_features),
    )
    if guide is None:
        guide = build_guide(config, data_dim)
    return model, weights.guide(config, guide, model)


def build_beta_schedule(config: RunConfig):
    """The β schedule the config names (:data:`pyrovae.registry.BETA_SCHEDULES`)."""
    return config.build("beta_schedule", beta=config.beta, epochs=config.epochs)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
