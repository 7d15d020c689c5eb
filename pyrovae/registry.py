"""The one table of names: what the CLI, config files and examples call each part.

Every swappable part of pyrovae — dataset, likelihood, guide, prior,
objective, optimiser, activation — is looked up here by name. Entries are
``"module:attribute"`` strings imported on first use, so reading the names
(for ``--help``) imports neither torch nor pyro.

Users add their own parts with :meth:`Registry.register`::

    from pyrovae import registry
    registry.GUIDES.register("myguide", MyGuide)
"""

from __future__ import annotations

import importlib
from typing import Any


class UnknownNameError(ValueError):
    """A name that is not in a registry."""


class Registry:
    """A mapping from names to components, resolved lazily.

    :param kind: what the entries are, for error messages ("likelihood").
    :param entries: ``name -> "module:attribute"`` or the object itself.
    """

    def __init__(self, kind: str, entries: dict[str, Any]):
        self.kind = kind
        self._entries: dict[str, Any] = dict(entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def check(self, name: str) -> str:
        """Return ``name`` if registered, else raise a one-line error listing the choices."""
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self._entries)}"
            )
        return name

    def get(self, name: str) -> Any:
        """The component registered as ``name``, imported on first use."""
        target = self._entries[self.check(name)]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            self._entries[name] = target
        return target

    def register(self, name: str, target: Any) -> None:
        """Add (or replace) the component called ``name``."""
        self._entries[name] = target


DATASETS = Registry(
    "dataset",
    {
        "digits": "pyrovae.data.digits:load_digits",
        "mnist": "pyrovae.data.mnist:load_mnist",
        "mnist-dynamic": "pyrovae.data.mnist:load_mnist_dynamic",
        "mnist-binarized": "pyrovae.data.binarized_mnist:load_binarized_mnist",
        "frey": "pyrovae.data.frey:load_frey",
    },
)

LIKELIHOODS = Registry(
    "likelihood",
    {
        "bernoulli": "pyrovae.models.likelihoods:Bernoulli",
        "gaussian-fixed": "pyrovae.models.likelihoods:GaussianFixed",
        "mse": "pyrovae.models.likelihoods:MSE",
        "gaussian-learned": "pyrovae.models.likelihoods:GaussianLearned",
        "gaussian-shared": "pyrovae.models.gaussian_heads:GaussianShared",
        "bounded-gaussian": "pyrovae.models.gaussian_heads:BoundedGaussian",
        "baggins": "pyrovae.models.gaussian_heads:Baggins",
    },
)

GUIDES = Registry(
    "guide",
    {
        "diagonal": "pyrovae.guides.diagonal:DiagonalGaussian",
        "constant": "pyrovae.guides.constant:ConstantVariance",
        "deterministic": "pyrovae.guides.deterministic:DeterministicGuide",
    },
)

PRIORS = Registry(
    "prior",
    {
        "standard": "pyrovae.models.priors:StandardNormal",
        "mixture": "pyrovae.models.marginals:MixtureOfGaussians",
        "vamp": "pyrovae.models.marginals:VampPrior",
    },
)

OBJECTIVES = Registry(
    "objective",
    {
        "trace": "pyro.infer:Trace_ELBO",
        "meanfield": "pyro.infer:TraceMeanField_ELBO",
        "iwae": "pyrovae.infer.iwae:IWAE_ELBO",
        "bilbo": "pyrovae.infer.bilbo:BILBO",
    },
)

OPTIMIZERS = Registry(
    "optimizer",
    {
        "adam": "torch.optim:Adam",
        "adagrad": "torch.optim:Adagrad",
    },
)

ACTIVATIONS = Registry(
    "activation",
    {
        "tanh": "torch.nn:Tanh",
        "relu": "torch.nn:ReLU",
        "softplus": "torch.nn:Softplus",
        "sigmoid": "torch.nn:Sigmoid",
        "leaky_relu": "torch.nn:LeakyReLU",
    },
)

BETA_SCHEDULES = Registry(
    "beta schedule",
    {
        "constant": "pyrovae.infer.schedules:Constant",
        "linear": "pyrovae.infer.schedules:LinearWarmup",
        "cyclical": "pyrovae.infer.schedules:Cyclical",
    },
)

DECODERS = Registry(
    "decoder",
    {
        "mlp": "pyrovae.nets:mlp",
        "bayesian": "pyrovae.models.bayesian:bayesian_decoder",
    },
)

WEIGHT_PRIORS = Registry(
    "weight prior",
    {
        "normal": "pyrovae.models.weight_priors:NormalWeightPrior",
        "scale-mixture": "pyrovae.models.weight_priors:ScaleMixtureWeightPrior",
    },
)

ALL = {
    r.kind: r
    for r in (
        DATASETS,
        LIKELIHOODS,
        GUIDES,
        PRIORS,
        OBJECTIVES,
        OPTIMIZERS,
        ACTIVATIONS,
        BETA_SCHEDULES,
        DECODERS,
        WEIGHT_PRIORS,
    )
}
