r"""How a VAE treats its decoder's weights θ: point estimates, or full variational Bayes.

The ``weights`` option chooses one of these parts
(:data:`pyrovae.registry.WEIGHTS`); the ``decoder`` option names the network
(:mod:`pyrovae.networks`), a separate axis:

* :class:`PointWeights` (``point``) — θ is a parameter, fitted by maximising the
  ELBO; any decoder network.
* :class:`BayesianWeights` (``bayesian``) — θ is a latent variable with a prior
  p(θ) (:data:`pyrovae.registry.WEIGHT_PRIORS`) and a mean-field Gaussian
  posterior q(θ) beside the guide's q(z|x): Kingma & Welling (2013),
  appendix F, "full variational Bayes" (:mod:`pyrovae.models.bayesian`,
  :class:`~pyrovae.guides.bayesian.FullVBGuide`).

A part here supplies the decoder network (or None: the ``decoder`` network part
builds it) and wraps the local guide;
:func:`pyrovae.build.build_model` asks it for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pyrovae.options import ConfigError, Needs, Option


class PointWeights:
    """Point estimates of the decoder's weights: ordinary (maximum-ELBO) training.

    Example:

    >>> from pyrovae.build import build_model
    >>> from pyrovae.config import RunConfig
    >>> config = RunConfig(weights="point", likelihood="bernoulli", latent_dim=2, hidden=[8])
    >>> model, guide = build_model(config, 16)
    >>> type(model.decoder).__name__, type(guide).__name__
    ('Sequential', 'DiagonalGaussian')
    """

    options: tuple[Option, ...] = ()

    @staticmethod
    def decoder(config: Any, in_features: int, hidden: Sequence[int], out_features: int):
        """None: the network part named by ``decoder`` builds it."""
        return None

    @staticmethod
    def guide(config: Any, local: nn.Module, model: nn.Module) -> nn.Module:
        """The guide q(z|x) itself."""
        return local


WEIGHT_INIT_SCALE = Option(
    "weight_init_scale", 0.03, "Initial σ of q(θ) per weight (bayesian decoder).", above=0
)
WEIGHT_SAMPLES = Option(
    "weight_samples", 10, "Draws θ ~ q(θ) averaged by evaluation (bayesian decoder).", low=1
)
INIT_FROM = Option(
    "init_from",
    None,
    "Seed q(θ)'s means (and the encoder) from a trained point-estimate run folder.",
    type=Path,
    nullable=True,
    needs=(Needs("weights", ("bayesian",), "it seeds a Bayesian decoder's q(θ)"),),
)


class BayesianWeights:
    """Full variational Bayes over the decoder's weights (Kingma & Welling 2013, app. F).

    The network is an MLP (``decoder`` ``mlp``): Bayesian layers exist for affine
    maps only (:class:`~pyrovae.models.bayesian.BayesianLinear`).

    .. warning:: The weights are global sites, outside the data plate: the
        objective must be ``trace`` or ``meanfield`` (per-point objectives such as
        IWAE and BILBO cannot score them). The L particles of a step share one
        vectorised pass (:class:`~pyrovae.models.bayesian.BayesianLinear` broadcasts
        over their draws); with L > 1 the numbers differ from pyrovae 0.1.0, which
        drew them one at a time.

    Example:

    >>> from pyrovae.build import build_model
    >>> from pyrovae.config import RunConfig
    >>> config = RunConfig(weights="bayesian", likelihood="bernoulli", latent_dim=2, hidden=[8])
    >>> model, guide = build_model(config, 16)
    >>> type(model.decoder).__name__, type(guide).__name__
    ('BayesianMLP', 'FullVBGuide')
    >>> guide.weights.site_names
    ['decoder.0.weight', 'decoder.0.bias', 'decoder.2.weight', 'decoder.2.bias']
    """

    options = (WEIGHT_INIT_SCALE, WEIGHT_SAMPLES, INIT_FROM)
    needs = (
        Needs(
            "objective",
            ("trace", "meanfield"),
            "a Bayesian decoder's weights are global, and the other objectives need every "
            "site inside the data plate",
        ),
        Needs("decoder", ("mlp",), "its Bayesian layers are affine (BayesianLinear) only"),
    )

    @staticmethod
    def decoder(config: Any, in_features: int, hidden: Sequence[int], out_features: int):
        """A :class:`~pyrovae.models.bayesian.BayesianMLP` under the configured weight prior."""
        from pyrovae.models.bayesian import BayesianMLP

        prior = config.build("weight_prior")
        return BayesianMLP(in_features, hidden, out_features, config.activation, prior)

    @staticmethod
    def guide(config: Any, local: nn.Module, model: nn.Module) -> nn.Module:
        """q(z|x) q(θ): the local guide beside a mean-field Gaussian over the weights."""
        from pyrovae.guides.bayesian import FullVBGuide

        return FullVBGuide(
            local,
            model,
            weight_init_scale=config.weight_init_scale,
            init=config.init,
            weight_samples=config.weight_samples,
        )


@torch.no_grad()
def initialise_from_run(model, guide, path) -> dict[str, list[str]]:
    """Seed a full-VB guide from a trained point-estimate run (MLSALT4's experiment).

    q(θ)'s means become the run's decoder weights (site ``decoder.0.weight`` ←
    parameter ``decoder.0.weight``); the local guide takes the run's encoder
    when it is the same class. σ of q(θ) keeps its initial value.

    :returns: ``{"weights": [sites set], "local": [parameters set]}``.
    :raises ConfigError: when the shapes do not match (different sizes).
    """
    from pyrovae.infer import full_vb
    from pyrovae.run import load_run

    if not full_vb.is_full_vb(guide):
        raise ValueError("initialise_from_run needs a full-VB guide (weights 'bayesian')")
    _, point_model, point_guide, _ = load_run(path)
    if full_vb.is_full_vb(point_guide):
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
