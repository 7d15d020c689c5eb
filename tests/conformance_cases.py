"""The cases of ``test_conformance.py``: every distribution pyrovae defines, with parameter
fixtures, and every model × guide pair its registry builds.

Kept apart from the checks so that a new distribution or part is one entry here. The
distribution fixtures play the role of Pyro's ``tests/distributions/conftest.py`` (a
``Fixture`` a distribution, several examples each, see ``dist_fixture.py``); the pairs come
from the registry and :class:`pyrovae.config.RunConfig`, pruned where the config refuses.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pyro.distributions as dist
import torch

from pyrovae import registry
from pyrovae.build import build_model
from pyrovae.config import ConfigError, RunConfig
from pyrovae.distributions import (
    AutoregressiveImage,
    BagginsNormal,
    DiagonalNormalMixture,
    FlooredNormal,
)
from pyrovae.infer.beta import scale_sites
from pyrovae.models.gaussian_heads import BoundedGaussian
from pyrovae.models.likelihoods import Bernoulli
from pyrovae.models.weight_priors import ScaleMixtureNormal
from pyrovae.nets.pixelcnn import GatedPixelCNN

# --------------------------------------------------------------------------------------------
# Distributions
# --------------------------------------------------------------------------------------------


def seed(value: int) -> None:
    """``pyro.set_rng_seed`` without its cost: ``torch.manual_seed`` also seeds the CUDA, MTIA
    and XPU generators lazily, formatting a stack trace for each even on a CPU-only
    machine (several ms under pytest). Pyro samples from torch's CPU generator."""
    torch.default_generator.manual_seed(value)
    random.seed(value)
    np.random.seed(value)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=_gen(seed))


def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=_gen(seed))


@dataclass(frozen=True)
class DistCase:
    """One distribution class with one parameter fixture (one example of a Pyro ``Fixture``).

    :ivar label: the distribution's name in test ids (a class may appear under two labels,
        e.g. BAGGINS frozen and unfrozen).
    :ivar fixture: the fixture's name in test ids.
    :ivar params: makes fresh constructor arguments.
    :ivar value: makes a test datum of shape ``batch_shape + event_shape``.
    :ivar bad: argument overrides that break one parameter constraint each.
    :ivar samples: False when the distribution has no sampling distribution by design.
    :ivar independent: False when batch elements are not conditionally independent (BAGGINS'
        points share the batch's σ²), so a batch element's log-density is not a function of
        that element alone.
    :ivar discrete: the support is discrete (binary images).
    :ivar support_points: every point of a finite support, ``(K, *event_shape)``, for the
        exact checks (normalisation, sample frequencies, E[x]); None when not finite or small.
    :ivar moment_samples: draws for the Monte Carlo moment checks (fewer where sampling is
        costly; the case's comment says why the Monte Carlo error stays under the tolerance).
    :ivar shapes_not_static: why ``infer_shapes`` cannot give the event shape from the
        arguments' shapes (None: it can, and is checked).
    :ivar mean_estimate: why ``mean`` is not E[x] but a random, unbiased estimate of it (None:
        it is E[x]); the moment checks then test the estimate as one.
    :ivar no_variance: why ``variance`` is not defined (None: it is, and is checked); it must
        then raise NotImplementedError.
    :ivar known_bugs: ``(check, reason, exception)`` for each check that fails on this case,
        raising ``exception``, because of a known bug of pyrovae (a strict xfail, so that it
        alerts when the bug is fixed).
    """

    cls: type
    label: str
    fixture: str
    params: Callable[[], dict[str, Any]]
    value: Callable[[], torch.Tensor]
    batch_shape: tuple[int, ...]
    event_shape: tuple[int, ...]
    bad: tuple[dict[str, Any], ...] = ()
    samples: bool = True
    independent: bool = True
    discrete: bool = False
    support_points: Callable[[], torch.Tensor] | None = None
    moment_samples: int = 100_000
    shapes_not_static: str | None = None
    mean_estimate: str | None = None
    no_variance: str | None = None
    known_bugs: tuple[tuple[str, str, type[Exception]], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.label}-{self.fixture}"

    def make(self, **overrides: Any):
        return self.cls(**{**self.params(), **overrides})

    def bug(self, check: str) -> tuple[str, type[Exception]] | None:
        """``(reason, exception)`` of the known bug that makes ``check`` fail here, if any."""
        for name, reason, exception in self.known_bugs:
            if name == check:
                return reason, exception
        return None

    def __repr__(self) -> str:  # pytest prints it in failure headers
        return self.id


def _floored() -> list[DistCase]:
    common = dict(cls=FlooredNormal, label="FlooredNormal", event_shape=())
    bad = ({"scale": torch.tensor(-1.0)}, {"floor": torch.tensor(0.0)})
    return [
        DistCase(
            fixture="scalar",
            params=lambda: dict(loc=0.5, scale=1.2, floor=0.1),
            value=lambda: torch.tensor(0.3),
            batch_shape=(),
            bad=bad,
            **common,
        ),
        DistCase(
            fixture="batched",
            params=lambda: dict(
                loc=_randn(3, 4, seed=1),
                scale=_rand(3, 4, seed=2) + 0.1,
                floor=torch.tensor(0.05),
            ),
            value=lambda: _randn(3, 4, seed=3),
            batch_shape=(3, 4),
            bad=bad,
            **common,
        ),
        DistCase(
            fixture="broadcast",
            params=lambda: dict(
                loc=_randn(2, 1, seed=4),
                scale=torch.tensor([0.5, 1.0, 2.0]),
                floor=torch.tensor([0.2]),
            ),
            value=lambda: _randn(2, 3, seed=5),
            batch_shape=(2, 3),
            bad=bad,
            **common,
        ),
        DistCase(  # scale 0: σ is the floor itself, the value sits at the mode
            fixture="edge-zero-scale",
            params=lambda: dict(
                loc=torch.tensor([-3.0, 0.0, 1.0, 40.0]),
                scale=torch.zeros(4),
                floor=torch.tensor(1e-3),
            ),
            value=lambda: torch.tensor([-3.0, 0.0, 1.0, 40.0]),
            batch_shape=(4,),
            bad=bad,
            **common,
        ),
    ]


def _scale_mixture() -> list[DistCase]:
    common = dict(cls=ScaleMixtureNormal, label="ScaleMixtureNormal", event_shape=())
    bad = ({"mixing": torch.tensor(1.5)}, {"scale2": torch.tensor(-1.0)})
    return [
        DistCase(  # Blundell et al.'s numbers
            fixture="scalar",
            params=lambda: dict(mixing=0.5, scale1=1.0, scale2=math.exp(-6.0)),
            value=lambda: torch.tensor(0.2),
            batch_shape=(),
            bad=bad,
            **common,
        ),
        DistCase(
            fixture="batched",
            params=lambda: dict(
                mixing=_rand(3, seed=6) * 0.8 + 0.1,
                scale1=torch.full((3,), 2.0),
                scale2=torch.full((3,), 0.1),
            ),
            value=lambda: _randn(3, seed=7),
            batch_shape=(3,),
            bad=bad,
            **common,
        ),
        DistCase(
            fixture="broadcast",
            params=lambda: dict(
                mixing=torch.tensor([[0.3], [0.7]]),
                scale1=torch.tensor([1.0, 1.5, 3.0]),
                scale2=0.05,
            ),
            value=lambda: _randn(2, 3, seed=8),
            batch_shape=(2, 3),
            bad=bad,
            **common,
        ),
        DistCase(  # π at both ends of [0, 1]: one component each
            fixture="edge-pure-components",
            params=lambda: dict(mixing=torch.tensor([0.0, 1.0]), scale1=1.0, scale2=1e-3),
            value=lambda: torch.tensor([1e-4, -0.5]),
            batch_shape=(2,),
            bad=bad,
            **common,
        ),
    ]


def _mixture(logits, loc, scale) -> dict[str, Any]:
    return dict(mixture_distribution=dist.Categorical(logits=logits), loc=loc, scale=scale)


def _diagonal_mixture() -> list[DistCase]:
    common = dict(cls=DiagonalNormalMixture, label="DiagonalNormalMixture", batch_shape=())

    def bad(k: int, d: int) -> tuple[dict[str, Any], ...]:
        negative = torch.ones(k, d)
        negative[0, 0] = -1.0
        nan = torch.zeros(k, d)
        nan[-1, -1] = math.nan
        return ({"scale": negative}, {"loc": nan})

    return [
        DistCase(
            fixture="K3-D2",
            params=lambda: _mixture(
                _randn(3, seed=9), 2 * _randn(3, 2, seed=10), _rand(3, 2, seed=11) + 0.3
            ),
            value=lambda: _randn(2, seed=12),
            event_shape=(2,),
            bad=bad(3, 2),
            **common,
        ),
        DistCase(  # one component: a diagonal Normal
            fixture="single-component",
            params=lambda: _mixture(torch.zeros(1), _randn(1, 4, seed=13), torch.ones(1, 4)),
            value=lambda: _randn(4, seed=14),
            event_shape=(4,),
            bad=bad(1, 4),
            **common,
        ),
        DistCase(  # sharp, far-apart components and near-degenerate weights
            fixture="edge-sharp",
            params=lambda: _mixture(
                torch.tensor([-6.0, 6.0]),
                torch.tensor([[-5.0, 0.0, 5.0], [5.0, 0.0, -5.0]]),
                torch.full((2, 3), 1e-2),
            ),
            value=lambda: torch.tensor([5.0, 0.0, -5.0]),
            event_shape=(3,),
            bad=bad(2, 3),
            **common,
        ),
    ]


def _baggins() -> list[DistCase]:
    nan_loc = ({"loc": torch.full((5, 4), math.nan)},)
    unfrozen = dict(cls=BagginsNormal, label="BagginsNormal-unfrozen", samples=False)
    frozen = dict(cls=BagginsNormal, label="BagginsNormal-frozen")
    return [
        DistCase(
            fixture="batch5",
            params=lambda: dict(loc=_rand(5, 4, seed=15), info_max=3.0),
            value=lambda: _rand(5, 4, seed=16),
            batch_shape=(5,),
            event_shape=(4,),
            bad=nan_loc,
            independent=False,
            **unfrozen,
        ),
        DistCase(  # a leading particle dimension: one σ² per particle; the smooth floor
            fixture="particles-softplus",
            params=lambda: dict(loc=_rand(2, 6, 3, seed=17), info_max=1.0, floor_mode="softplus"),
            value=lambda: _rand(2, 6, 3, seed=18),
            batch_shape=(2, 6),
            event_shape=(3,),
            bad=({"loc": torch.full((2, 6, 3), math.nan)},),
            independent=False,
            **unfrozen,
        ),
        DistCase(  # a perfect decoder: zero residual, the floor binds
            fixture="edge-exact-fit",
            params=lambda: dict(loc=_rand(4, 3, seed=19), info_max=0.5),
            value=lambda: _rand(4, 3, seed=19),
            batch_shape=(4,),
            event_shape=(3,),
            bad=({"loc": torch.full((4, 3), math.nan)},),
            independent=False,
            **unfrozen,
        ),
        DistCase(
            fixture="batch5",
            params=lambda: dict(loc=_rand(5, 4, seed=20), info_max=3.0, frozen_variance=0.5),
            value=lambda: _rand(5, 4, seed=21),
            batch_shape=(5,),
            event_shape=(4,),
            bad=(*nan_loc, {"frozen_variance": -1.0}),
            **frozen,
        ),
        DistCase(
            fixture="leading-singleton",
            params=lambda: dict(
                loc=_rand(1, 6, 3, seed=22), info_max=1.0, frozen_variance=torch.tensor(0.01)
            ),
            value=lambda: _rand(1, 6, 3, seed=23),
            batch_shape=(1, 6),
            event_shape=(3,),
            bad=({"frozen_variance": torch.tensor(0.0)},),
            **frozen,
        ),
        DistCase(  # σ = 1e-3 and the value at the mode
            fixture="edge-tiny-variance",
            params=lambda: dict(loc=_rand(3, 2, seed=24), info_max=3.0, frozen_variance=1e-6),
            value=lambda: _rand(3, 2, seed=24),
            batch_shape=(3,),
            event_shape=(2,),
            bad=({"frozen_variance": math.inf},),
            **frozen,
        ),
    ]


@functools.cache
def _gated_pixelcnn(
    shape: tuple[int, int, int],
    params_per_channel: int,
    seed: int,
    gain: float,
    scale_bias: float = 0.0,
) -> GatedPixelCNN:
    """A tiny GatedPixelCNN (2 conditioning channels; one gated layer after the first,
    4 channels, kernel 3) with N(0, gain²) weights from ``seed``: larger than torch's
    initialisation, so that each pixel's conditional depends clearly on the earlier pixels
    (a sampler that ignored them fails the frequency check). ``scale_bias`` is added to the
    output bias of the second parameter block (a Gaussian head's raw σ).

    Built once, leaving the global RNG as it was, and shared by the cases' ``params``: no
    check changes a network's parameters."""
    generator = _gen(seed)
    with torch.random.fork_rng(devices=[]):  # torch's own initialisation, overwritten below
        net = GatedPixelCNN(shape, params_per_channel, 2, channels=4, layers=1, kernel_size=3)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(gain * torch.randn(p.shape, generator=generator))
        net.output[-1].bias[shape[0] :] += scale_bias  # empty for one parameter per pixel
    return net


def _binary_images(d: int) -> torch.Tensor:
    """All 2^d binary images of d pixels, ``(2^d, d)``."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)))


#: why AutoregressiveImage is excluded from, or specially treated by, some generic checks
AR_SHAPES_NOT_STATIC = (
    "the event shape C·H·W is the value of the non-tensor `shape` argument (and the network's), "
    "not a function of the tensor arguments' shapes, so infer_shapes cannot compute it (Pyro's "
    "own test_infer_shapes xfails LKJ and SineSkewed so); it must raise NotImplementedError, "
    "as Pyro's default infer_shapes does for every multivariate distribution"
)
AR_MEAN = (
    "E[x] of a PixelCNN has no closed form; AutoregressiveImage.mean is documented as the "
    "conditional means E[x_ij | x~_<ij] along one ancestral sample x~: random, and by the "
    "tower rule an unbiased estimate of E[x]"
)
AR_NO_VARIANCE = "Var[x] of a PixelCNN has no closed form and AutoregressiveImage defines none"


def _autoregressive() -> list[DistCase]:
    """The PixelCNN likelihood: tiny images, Bernoulli heads (a finite support: the exact
    checks enumerate all 2^D images) and a Gaussian head with two parameters per pixel."""

    def cond(*batch: int, h: int, w: int, seed: int) -> torch.Tensor:
        return _randn(*batch, 2 * h * w, seed=seed)

    def bad(*batch: int, h: int, w: int) -> tuple[dict[str, Any], ...]:
        return ({"cond": torch.full((*batch, 2 * h * w), math.nan)},)

    def binary(*shape: int, seed: int) -> torch.Tensor:
        return torch.bernoulli(torch.full(shape, 0.5), generator=_gen(seed))

    common = dict(
        cls=AutoregressiveImage,
        label="AutoregressiveImage",
        shapes_not_static=AR_SHAPES_NOT_STATIC,
        mean_estimate=AR_MEAN,
        no_variance=AR_NO_VARIANCE,
        # ancestral sampling costs a network pass per pixel; with 20 000 draws the Monte
        # Carlo error of a mean (binary pixels, sd <= 0.5; the Gaussian's sd is < 0.15:
        # <= 0.0035, two estimates compared: <= 0.005) stays under the moment checks' atol 0.02
        moment_samples=20_000,
    )
    return [
        DistCase(  # one channel, 3 × 2: the raster order crosses rows
            fixture="bernoulli-1x3x2",
            params=lambda: dict(
                net=_gated_pixelcnn((1, 3, 2), 1, seed=35, gain=1.0),
                head=Bernoulli(6),
                cond=cond(2, h=3, w=2, seed=25),
                shape=(1, 3, 2),
            ),
            value=lambda: binary(2, 6, seed=26),
            batch_shape=(2,),
            event_shape=(6,),
            bad=bad(2, h=3, w=2),
            discrete=True,
            support_points=lambda: _binary_images(6),
            **common,
        ),
        DistCase(  # two channels drawn jointly per pixel; a leading singleton batch
            fixture="bernoulli-2x2x2",
            params=lambda: dict(
                net=_gated_pixelcnn((2, 2, 2), 1, seed=36, gain=1.0),
                head=Bernoulli(8),
                cond=cond(1, h=2, w=2, seed=27),
                shape=(2, 2, 2),
            ),
            value=lambda: binary(1, 8, seed=28),
            batch_shape=(1,),
            event_shape=(8,),
            bad=bad(1, h=2, w=2),
            discrete=True,
            support_points=lambda: _binary_images(8),
            **common,
        ),
        DistCase(  # BoundedGaussian: two parameter blocks (mean, raw σ ≈ softplus(-4))
            fixture="bounded-gaussian-2x2x2",
            params=lambda: dict(
                net=_gated_pixelcnn((2, 2, 2), 2, seed=33, gain=1.0, scale_bias=-4.0),
                head=BoundedGaussian(8, floor=0.05, mean_activation="sigmoid"),
                cond=cond(2, h=2, w=2, seed=29),
                shape=(2, 2, 2),
            ),
            value=lambda: _rand(2, 8, seed=30),
            batch_shape=(2,),
            event_shape=(8,),
            bad=bad(2, h=2, w=2),
            **common,
        ),
    ]


DIST_CASES: list[DistCase] = [
    *_floored(),
    *_scale_mixture(),
    *_diagonal_mixture(),
    *_baggins(),
    *_autoregressive(),
]

#: every class above, and every distribution class pyrovae defines (the test checks they agree)
DIST_CLASSES = {c.cls for c in DIST_CASES}


# --------------------------------------------------------------------------------------------
# Model × guide pairs
# --------------------------------------------------------------------------------------------

BATCH = 5
NUM_DATA = 20  # the data plate subsamples: every log-density inside it is scaled by 20 / 5
LATENT = 2

#: tiny networks (the options of pyrovae.networks): MLPs of one hidden layer of 4; one
#: stride-2 convolution of 2 channels, kernel 3; a PixelCNN of one gated layer after the
#: first, 4 channels, kernel 3, on a 1-channel conditioning map. The mixture and VampPrior
#: marginals with 3 components
BASE = dict(
    hidden=[4],
    latent_dim=LATENT,
    prior_components=3,
    conv_channels=[2],
    kernel_size=3,
    pixelcnn_layers=1,
    pixelcnn_channels=4,
    pixelcnn_kernel=3,
    pixelcnn_cond_channels=1,
)
#: what a part needs of the rest of the config (the deterministic guide is a plain
#: auto-encoder: the config accepts it only with β = 0)
PART_SETTINGS = {"deterministic": dict(beta=0.0)}


@dataclass(frozen=True)
class Pair:
    """One model × guide pair the registry builds: a likelihood, a guide, a prior, a weight
    treatment, an encoder and a decoder network, for data points of ``shape``."""

    likelihood: str
    guide: str
    prior: str
    weights: str
    encoder: str
    decoder: str
    shape: tuple[int, ...]
    config: RunConfig = field(compare=False, repr=False)

    @property
    def id(self) -> str:
        parts = (self.likelihood, self.guide, self.prior, self.weights, self.encoder, self.decoder)
        return "-".join(parts)

    def __repr__(self) -> str:
        return self.id

    @property
    def data_dim(self) -> int:
        return math.prod(self.shape)

    @cached_property
    def _objectives(self) -> dict[str, bool]:
        out = {}
        for name in registry.OBJECTIVES.names():
            try:
                self.config.replace(objective=name)
            except ConfigError:
                out[name] = False
            else:
                out[name] = True
        return out

    def allows(self, objective: str) -> bool:
        """Whether the config accepts this pair with the registered objective ``objective``."""
        return self._objectives[objective]

    @property
    def bayesian(self) -> bool:
        """Full variational Bayes over the decoder's weights (global latent sites)."""
        return self.weights == "bayesian"

    def weighted(self, model, guide):
        """Model and guide as the config's objective sees them: at β ≠ 1 (the deterministic
        guide's β = 0) with the latent site scaled — masked at 0 — on both sides
        (:func:`pyrovae.infer.beta.scale_sites`, what the trainer's ``BetaScaled`` does);
        at β = 1 untouched."""
        beta = self.config.beta
        if beta == 1.0:
            return model, guide
        return scale_sites(model, beta), scale_sites(guide, beta)

    def data(self) -> torch.Tensor:
        """A binary batch of flat data points (valid data for every likelihood head), fixed
        per data size."""
        return torch.bernoulli(torch.full((BATCH, self.data_dim), 0.5), generator=_gen(100))

    def build(self, init_seed: int = 0, fresh: bool = False):
        """``(model, guide, x)``, the networks initialised from ``init_seed``.

        The suite builds each pair once and hands every test the same modules restored to
        their initial state (parameters, buffers, training mode): building is most of a
        cheap check's time. ``fresh`` builds new modules (for checks that compare two).
        """
        if fresh or init_seed != 0:
            seed(init_seed)
            model, guide = build_model(self.config, self.shape)
            return model, guide, self.data()
        if self.id not in _BUILT:
            model, guide, x = self.build(fresh=True)
            state = [copy.deepcopy(m.state_dict()) for m in (model, guide)]
            _BUILT[self.id] = (model, guide, x, state)
        model, guide, x, state = _BUILT[self.id]
        for module, values in zip((model, guide), state):
            module.float()
            module.load_state_dict(values)
            module.train()
            module.zero_grad(set_to_none=True)
        return model, guide, x.clone()


#: pair id -> (model, guide, data, initial state dicts)
_BUILT: dict[str, tuple] = {}


def image_shapes(likelihoods) -> dict[str, tuple[int, int, int]]:
    """One image shape per likelihood, ``(C, 2, W)`` with W = 3, 4, 5, ... in turn and C = 1
    and 2 alternately: D = C·2·W is 2 (mod 4) for C = 1 and 0 (mod 8) for C = 2, so that no
    two likelihoods have the same data size (a head or network built for the wrong size
    fails). The networks that need images get this shape, the MLPs rows of D numbers."""
    return {name: (1 + i % 2, 2, 3 + i) for i, name in enumerate(likelihoods)}


def accepts(**parts: str) -> RunConfig | None:
    """The config of the tiny networks with ``parts`` named, or None where it refuses them."""
    values = dict(BASE, **parts)
    values.update(PART_SETTINGS.get(parts["guide"], {}))
    try:
        return RunConfig(**values)
    except ConfigError:
        return None


def needs_images(encoder: str, decoder: str) -> bool:
    """Whether the network parts ``encoder`` and ``decoder`` need image-shaped data."""
    parts = (registry.ENCODERS.get(encoder), registry.DECODERS.get(decoder))
    return any(getattr(part, "needs_images", False) for part in parts)


#: the default networks (MLPs), with which the pairs are the full product
DEFAULT_NETWORKS = (registry.ENCODERS.default, registry.DECODERS.default)


def _pairs() -> list[Pair]:
    """The pairs: the full product likelihood × guide × prior × weights with the default
    (MLP) networks, and a covering design for the other encoder × decoder network pairs.

    The full product over the networks too would be about 4 times the pairs (and the
    suite's time), so each other network pair gets, for each weight treatment:

    * with no MLP in it (conv × conv, conv × pixelcnn), a full round: every likelihood the
      config accepts once, the guide × prior combinations in turn (a running count ``t``
      picks guide ``t mod 3`` and prior ``(t + t div 3) mod 3``: any 5 consecutive pairs
      have every guide and every prior, and 9 every combination);
    * with an MLP in it (conv × mlp, mlp × conv, mlp × pixelcnn), a short round: one pair
      per guide, each with another prior, the likelihoods in turn across the rounds.

    So every network meets every likelihood, guide, prior and weight treatment the config
    accepts with it, and every network pair every guide and every prior;
    ``test_pair_coverage`` checks it.
    """
    likelihoods = registry.LIKELIHOODS.names()
    guides, priors = registry.GUIDES.names(), registry.PRIORS.names()
    images = image_shapes(likelihoods)
    out = []

    def add(lik: str, guide: str, prior: str, weights: str, encoder: str, decoder: str) -> bool:
        config = accepts(
            likelihood=lik,
            guide=guide,
            prior=prior,
            weights=weights,
            encoder=encoder,
            decoder=decoder,
        )
        if config is None:
            return False  # the config refuses this combination
        image = images[lik]
        shape = image if needs_images(encoder, decoder) else (math.prod(image),)
        out.append(Pair(lik, guide, prior, weights, encoder, decoder, shape, config))
        return True

    for lik, guide, prior, weights in itertools.product(
        likelihoods, guides, priors, registry.WEIGHTS.names()
    ):
        add(lik, guide, prior, weights, *DEFAULT_NETWORKS)
    full, short = [], []
    for encoder, decoder, weights in itertools.product(
        registry.ENCODERS.names(), registry.DECODERS.names(), registry.WEIGHTS.names()
    ):
        mlp = [a == b for a, b in zip((encoder, decoder), DEFAULT_NETWORKS)]
        if not all(mlp):
            (short if any(mlp) else full).append((weights, encoder, decoder))
    t = 0
    for networks in full:
        for lik in likelihoods:
            t += add(
                lik,
                guides[t % len(guides)],
                priors[(t + t // len(guides)) % len(priors)],
                *networks,
            )
    t = 0
    for r, networks in enumerate(short):
        for k, guide in enumerate(guides):
            prior = priors[(k + r) % len(priors)]
            for j in range(len(likelihoods)):  # the next likelihood the config accepts
                if add(likelihoods[(t + j) % len(likelihoods)], guide, prior, *networks):
                    t += j + 1
                    break
    return out


PAIRS: list[Pair] = _pairs()
