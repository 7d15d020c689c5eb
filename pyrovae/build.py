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
    """``(model, guide)`` for data of ``data_dim`` dimensions, as the config names them."""
    from pyrovae.models.vae import VAE

    opts = _options(config, data_dim)
    likelihood = build_likelihood(config, data_dim)
    prior = _call_with(registry.PRIORS.get(config.prior), opts)
    model = VAE(
        data_dim,
        config.latent_dim,
        hidden=list(reversed(config.hidden)),
        activation=config.activation,
        likelihood=likelihood,
        prior=prior,
        init=config.init,
    )
    guide = _call_with(registry.GUIDES.get(config.guide), opts)
    return model, guide


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
