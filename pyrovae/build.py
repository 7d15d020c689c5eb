"""From a :class:`~pyrovae.config.RunConfig` to a model and a guide, by registry names."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from pyrovae import registry
from pyrovae.config import ConfigError, RunConfig


def _call_with(factory: Any, options: dict[str, Any]) -> Any:
    """Call ``factory`` with the subset of ``options`` its signature accepts."""
    params = inspect.signature(factory).parameters
    return factory(**{k: v for k, v in options.items() if k in params})


def resolve_likelihood(config: RunConfig, binary_data: bool) -> str:
    """The likelihood name a run uses: ``auto`` becomes bernoulli or gaussian-fixed."""
    if config.likelihood != "auto":
        return config.likelihood
    return "bernoulli" if binary_data else "gaussian-fixed"


def _options(config: RunConfig, data_dim: int) -> dict[str, Any]:
    opts = config.to_dict()
    opts.update(data_dim=data_dim, strict=not config.relaxed_bernoulli)
    return opts


def build_likelihood(config: RunConfig, data_dim: int) -> nn.Module:
    """The likelihood head named by ``config.likelihood`` (already resolved)."""
    if config.likelihood == "auto":
        raise ConfigError("resolve likelihood 'auto' with resolve_likelihood() before building")
    cls = registry.LIKELIHOODS.get(config.likelihood)
    return _call_with(cls, _options(config, data_dim))


def build_model(config: RunConfig, data_dim: int) -> tuple[nn.Module, nn.Module]:
    """``(model, guide)`` for data of ``data_dim`` dimensions, as the config names them.

    A prior whose constructor takes ``guide`` (the VampPrior) receives the guide,
    which is then built before it; otherwise the construction order, and so the
    seeded initialisation, is likelihood, prior, decoder, guide.
    """
    from pyrovae.models.vae import VAE

    opts = _options(config, data_dim)
    likelihood = build_likelihood(config, data_dim)
    prior_cls = registry.PRIORS.get(config.prior)
    guide = None
    if "guide" in inspect.signature(prior_cls).parameters:
        guide = _call_with(registry.GUIDES.get(config.guide), opts)
    prior_opts = {**opts, "guide": guide, "num_components": config.prior_components}
    prior = _call_with(prior_cls, prior_opts)
    model = VAE(
        data_dim,
        config.latent_dim,
        hidden=list(reversed(config.hidden)),
        activation=config.activation,
        likelihood=likelihood,
        prior=prior,
        init=config.init,
        decoder=_build_decoder(config, opts, likelihood.out_features),
    )
    if guide is None:
        guide = _call_with(registry.GUIDES.get(config.guide), opts)
    if config.decoder == "bayesian":  # full VB: the guide named above is q(z|x); add q(θ)
        from pyrovae.guides.bayesian import FullVBGuide

        guide = _call_with(FullVBGuide, {**opts, "local": guide, "model": model})
    return model, guide


def _build_decoder(config: RunConfig, opts: dict[str, Any], out_features: int) -> nn.Module | None:
    """The decoder ``config.decoder`` names; None for "mlp", which the VAE builds itself."""
    if config.decoder == "mlp":
        return None
    sizes = dict(
        in_features=config.latent_dim,
        hidden=list(reversed(config.hidden)),
        out_features=out_features,
    )
    return _call_with(registry.DECODERS.get(config.decoder), {**opts, **sizes})


def build_beta_schedule(config: RunConfig):
    """The β schedule the config names (:data:`pyrovae.registry.BETA_SCHEDULES`)."""
    return _call_with(registry.BETA_SCHEDULES.get(config.beta_schedule), config.to_dict())


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
