"""The one table of names: what the CLI, config files and examples call each part.

Every swappable part of pyrovae — dataset, likelihood, guide, prior,
objective, β schedule, encoder and decoder networks, decoder weights, weight prior,
optimiser, activation —
is looked up here by name. Entries are ``"module:attribute"`` strings imported
on first use, so reading the names imports neither torch nor pyro.

A part declares the options it reads beside its class (``options = (...)``,
see :mod:`pyrovae.options`); :data:`SECTIONS` lists, in the order ``train
--help`` shows them, the registries and the fixed option sets of each
section. A user adds a part with one line, and its options exist everywhere::

    from pyrovae import registry
    registry.GUIDES.register("myguide", MyGuide)
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyrovae.options import Option, options_of

#: bumped by every :meth:`Registry.register`, so that what is generated from the
#: declarations (the config schema, the command-line options) can be rebuilt
_generation = [0]


def generation() -> int:
    """A number that changes whenever a part is registered."""
    return _generation[0]


class UnknownNameError(ValueError):
    """A name that is not in a registry."""


def _load(target: Any) -> Any:
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
    return target


class Registry:
    """A mapping from names to parts, resolved lazily, and the option that chooses one.

    :param kind: what the entries are, for messages ("likelihood").
    :param entries: ``name -> "module:attribute"`` or the object itself.
    :param key: the config option that names the chosen entry (None: the registry
        only supplies the choices of some option, e.g. activations).
    :param default: the entry chosen when nobody says.
    :param help: one line for ``--help``.
    :param extra: accepted names that are not entries (``"auto"``).
    :param moved: former entries, each with where it went, for the error message.
    :param paths: a value that is not a name is a path (a user's dataset file or folder).

    Example:

    >>> from pyrovae import registry
    >>> from pyrovae.config import RunConfig
    >>> from pyrovae.guides import DiagonalGaussian
    >>> registry.GUIDES.get("constant")  # imported on first use
    <class 'pyrovae.guides.constant.ConstantVariance'>
    >>> registry.GUIDES.check("gausian")
    Traceback (most recent call last):
        ...
    pyrovae.registry.UnknownNameError: unknown guide 'gausian'; choose one of: diagonal, ...
    >>> class MyGuide(DiagonalGaussian):
    ...     pass
    >>> registry.GUIDES.register("mine", MyGuide)  # now a choice of --guide, TOML and configs
    >>> RunConfig(guide="mine").part("guide") is MyGuide
    True
    >>> registry.GUIDES.unregister("mine")
    """

    def __init__(
        self,
        kind: str,
        entries: dict[str, Any],
        key: str | None = None,
        default: str | None = None,
        help: str = "",
        extra: tuple[str, ...] = (),
        moved: dict[str, str] | None = None,
        paths: bool = False,
    ):
        self.kind = kind
        self.key = key
        self.default = default
        self.help = help
        self.extra = extra
        self.moved = dict(moved or {})
        self.paths = paths
        self._entries: dict[str, Any] = dict(entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def choices(self) -> tuple[str, ...]:
        """Every accepted name: the extras, then the entries."""
        return (*self.extra, *self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def check(self, name: str) -> str:
        """Return ``name`` if registered, else raise a one-line error listing the choices."""
        if name in self.moved and name not in self._entries:
            raise UnknownNameError(f"{self.kind} {name!r} {self.moved[name]}")
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self._entries)}"
            )
        return name

    def get(self, name: str) -> Any:
        """The part registered as ``name``, imported on first use."""
        target = self._entries[self.check(name)]
        if isinstance(target, str):
            target = _load(target)
            self._entries[name] = target
        return target

    def register(self, name: str, target: Any) -> None:
        """Add (or replace) the part called ``name``; its declared options join the config."""
        self._entries[name] = target
        _generation[0] += 1

    def unregister(self, name: str) -> None:
        """Remove the part called ``name`` (e.g. a test's own)."""
        del self._entries[name]
        _generation[0] += 1

    def selector(self) -> Option:
        """The option that chooses an entry: ``--<key>`` with the registry's names."""
        return Option(self.key, self.default, self.help, type=str, choices=self.choices)

    def declared(self) -> Iterator[tuple[str, Option]]:
        """``(entry name, option)`` for every option an entry declares."""
        for name in self._entries:
            for option in options_of(self.get(name)):
                yield name, option


#: the built-in datasets (:mod:`pyrovae.data`): loaders ``(data_dir, download) -> Dataset``
DATASETS = Registry(
    "dataset",
    {
        "digits": "pyrovae.data.digits:load_digits",
        "mnist": "pyrovae.data.mnist:load_mnist",
        "mnist-dynamic": "pyrovae.data.mnist:load_mnist_dynamic",
        "mnist-binarized": "pyrovae.data.binarized_mnist:load_binarized_mnist",
        "frey": "pyrovae.data.frey:load_frey",
    },
    key="dataset",
    default="digits",
    help="Dataset: a built-in name (digits is embedded and works offline) or the path of "
    "your own .npy/.npz/.pt file, CSV table or folder of images.",
    paths=True,
)

#: likelihood heads p(x|z) (:mod:`pyrovae.models.likelihoods`, :mod:`pyrovae.models.gaussian_heads`)
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
    key="likelihood",
    default="auto",
    help="p(x|z); auto = bernoulli for binary data, gaussian-fixed otherwise.",
    extra=("auto",),
)

#: guides q(z|x) (:mod:`pyrovae.guides`)
GUIDES = Registry(
    "guide",
    {
        "diagonal": "pyrovae.guides.diagonal:DiagonalGaussian",
        "constant": "pyrovae.guides.constant:ConstantVariance",
        "deterministic": "pyrovae.guides.deterministic:DeterministicGuide",
    },
    key="guide",
    default="diagonal",
    help="q(z|x): diagonal (learned σ(x)), constant (means only; Fyffe) or deterministic "
    "(a point code: a plain auto-encoder, with --beta 0).",
)

#: priors (marginals) m(z) (:mod:`pyrovae.models.priors`, :mod:`pyrovae.models.marginals`)
PRIORS = Registry(
    "prior",
    {
        "standard": "pyrovae.models.priors:StandardNormal",
        "mixture": "pyrovae.models.marginals:MixtureOfGaussians",
        "vamp": "pyrovae.models.marginals:VampPrior",
    },
    key="prior",
    default="standard",
    help="The marginal m(z): standard N(0, I), mixture (learned Gaussians) or vamp (VampPrior).",
)

#: training objectives: Pyro's ELBOs and pyrovae's (:mod:`pyrovae.infer`)
OBJECTIVES = Registry(
    "objective",
    {
        "trace": "pyro.infer:Trace_ELBO",
        "meanfield": "pyro.infer:TraceMeanField_ELBO",
        "iwae": "pyrovae.infer.iwae:IWAE_ELBO",
        "bilbo": "pyrovae.infer.bilbo:BILBO",
    },
    key="objective",
    default="meanfield",
    help="trace = L^A (MC KL), meanfield = L^B (analytic KL), iwae = IWAE bound, "
    "bilbo = Fyffe's batch bound (constant guide).",
)

#: schedules of β (:mod:`pyrovae.infer.schedules`)
BETA_SCHEDULES = Registry(
    "beta schedule",
    {
        "constant": "pyrovae.infer.schedules:Constant",
        "linear": "pyrovae.infer.schedules:LinearWarmup",
        "cyclical": "pyrovae.infer.schedules:Cyclical",
    },
    key="beta_schedule",
    default="constant",
    help="β per step: constant, linear warm-up from 0, or cyclical (Fu et al.).",
)

#: the guide's network parts (:mod:`pyrovae.networks`)
ENCODERS = Registry(
    "encoder",
    {
        "mlp": "pyrovae.networks:MLP",
        "conv": "pyrovae.networks:Conv",
    },
    key="encoder",
    default="mlp",
    help="The guide's network: mlp, or conv (stride-2 convolutions; images only).",
)

#: the decoder's network parts (:mod:`pyrovae.networks`)
DECODERS = Registry(
    "decoder",
    {
        "mlp": "pyrovae.networks:MLP",
        "conv": "pyrovae.networks:Conv",
        "pixelcnn": "pyrovae.networks:PixelCNN",
    },
    key="decoder",
    default="mlp",
    help="The decoder's network: mlp, conv (transposed convolutions) or pixelcnn (a conv "
    "decoder conditioning a gated PixelCNN; autoregressive p(x|z)).",
    moved={
        "bayesian": "is now weights 'bayesian' (pass --weights bayesian): since pyrovae 0.2 "
        "--decoder names the network (mlp, conv, pixelcnn)"
    },
)

#: how the decoder's weights are treated: point estimates or full VB (:mod:`pyrovae.weights`)
WEIGHTS = Registry(
    "weights",
    {
        "point": "pyrovae.weights:PointWeights",
        "bayesian": "pyrovae.weights:BayesianWeights",
    },
    key="weights",
    default="point",
    help="Decoder weights: point (estimates) or bayesian (full variational Bayes over them, "
    "Kingma & Welling app. F; mlp decoder).",
)

#: priors over a Bayesian decoder's weights (:mod:`pyrovae.models.weight_priors`)
WEIGHT_PRIORS = Registry(
    "weight prior",
    {
        "normal": "pyrovae.models.weight_priors:NormalWeightPrior",
        "scale-mixture": "pyrovae.models.weight_priors:ScaleMixtureWeightPrior",
    },
    key="weight_prior",
    default="normal",
    help="Prior on a bayesian decoder's weights: normal N(0, s²) or scale-mixture "
    "(Blundell et al.).",
)

#: torch optimisers
OPTIMIZERS = Registry(
    "optimizer",
    {
        "adam": "torch.optim:Adam",
        "adagrad": "torch.optim:Adagrad",
    },
    key="optimizer",
    default="adam",
    help="Optimiser (AEVB used adagrad).",
)

#: the nonlinearities of the networks (``torch.nn`` modules)
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


@dataclass(frozen=True)
class Section:
    """A group of options: the registries whose parts are chosen there, and the fixed
    option sets (``"module:attribute"`` tuples of :class:`~pyrovae.options.Option`)
    declared by the code that reads them.

    Example:

    >>> from pyrovae import registry
    >>> [section.name for section in registry.SECTIONS]
    ['data', 'model', 'likelihood', 'guide', 'prior', 'objective', 'weights', 'optimisation', 'run']
    >>> objective = registry.SECTIONS[5]
    >>> objective.title, [r.key for r in objective.registries]
    ('Objective', ['objective', 'beta_schedule'])
    >>> [option.name for option in objective.fixed_options()]
    ['particles', 'beta']
    """

    name: str
    title: str
    registries: tuple[Registry, ...] = ()
    fixed: tuple[str, ...] = ()

    def fixed_options(self) -> Iterator[Option]:
        for target in self.fixed:
            yield from _load(target)


#: the sections of a run's configuration, in the order ``train --help`` shows them
SECTIONS: tuple[Section, ...] = (
    Section("data", "Data", (DATASETS,), ("pyrovae.data:OPTIONS",)),
    Section("model", "Model and networks", (ENCODERS, DECODERS), ("pyrovae.models.vae:OPTIONS",)),
    Section("likelihood", "Likelihood p(x|z)", (LIKELIHOODS,)),
    Section("guide", "Guide q(z|x)", (GUIDES,)),
    Section("prior", "Prior m(z)", (PRIORS,)),
    Section(
        "objective",
        "Objective",
        (OBJECTIVES, BETA_SCHEDULES),
        ("pyrovae.infer.objectives:OPTIONS",),
    ),
    Section("weights", "Decoder weights (full variational Bayes)", (WEIGHTS, WEIGHT_PRIORS)),
    Section(
        "optimisation",
        "Optimisation",
        (OPTIMIZERS,),
        ("pyrovae.trainer:OPTIMISATION_OPTIONS",),
    ),
    Section(
        "run",
        "Run",
        (),
        ("pyrovae.trainer:RUN_OPTIONS", "pyrovae.summary:OPTIONS"),
    ),
)

#: every registry whose entry a config chooses, by its config key
SELECTORS: dict[str, Registry] = {r.key: r for s in SECTIONS for r in s.registries}
