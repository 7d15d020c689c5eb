"""The cases of ``test_conformance.py``: every distribution pyrovae defines, with parameter
fixtures, and every model × guide pair its registry builds.

Kept apart from the checks so that a new distribution or part is one entry here. The
distribution fixtures play the role of Pyro's ``tests/distributions/conftest.py`` (a
``Fixture`` a distribution, several examples each, see ``dist_fixture.py``); the pairs come
from the registry and :class:`pyrovae.config.RunConfig`, pruned where the config refuses.
"""

from __future__ import annotations

import copy
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
from pyrovae.distributions import BagginsNormal, DiagonalNormalMixture, FlooredNormal
from pyrovae.infer.beta import scale_sites
from pyrovae.models.weight_priors import ScaleMixtureNormal

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

    @property
    def id(self) -> str:
        return f"{self.label}-{self.fixture}"

    def make(self, **overrides: Any):
        return self.cls(**{**self.params(), **overrides})

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


DIST_CASES: list[DistCase] = [*_floored(), *_scale_mixture(), *_diagonal_mixture(), *_baggins()]

#: every class above, and every distribution class pyrovae defines (the test checks they agree)
DIST_CLASSES = {c.cls for c in DIST_CASES}


# --------------------------------------------------------------------------------------------
# Model × guide pairs
# --------------------------------------------------------------------------------------------

BATCH = 5
NUM_DATA = 20  # the data plate subsamples: every log-density inside it is scaled by 20 / 5
LATENT = 2

#: tiny networks; the mixture and VampPrior marginals with 3 components
BASE = dict(hidden=[4], latent_dim=LATENT, prior_components=3)
#: what a part needs of the rest of the config (the deterministic guide is a plain
#: auto-encoder: the config accepts it only with β = 0)
PART_SETTINGS = {"deterministic": dict(beta=0.0)}


@dataclass(frozen=True)
class Pair:
    """One model × guide pair the registry builds: a likelihood, a guide, a prior, a decoder."""

    likelihood: str
    guide: str
    prior: str
    decoder: str
    data_dim: int
    config: RunConfig = field(compare=False, repr=False)

    @property
    def id(self) -> str:
        return f"{self.likelihood}-{self.guide}-{self.prior}-{self.decoder}"

    def __repr__(self) -> str:
        return self.id

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
        return self.decoder == "bayesian"

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
        """A binary batch (valid data for every likelihood head), fixed per data size."""
        return torch.bernoulli(torch.full((BATCH, self.data_dim), 0.5), generator=_gen(100))

    def build(self, init_seed: int = 0, fresh: bool = False):
        """``(model, guide, x)``, the networks initialised from ``init_seed``.

        The suite builds each pair once and hands every test the same modules restored to
        their initial state (parameters, buffers, training mode): building is most of a
        cheap check's time. ``fresh`` builds new modules (for checks that compare two).
        """
        if fresh or init_seed != 0:
            seed(init_seed)
            model, guide = build_model(self.config, self.data_dim)
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


def _pairs() -> list[Pair]:
    out = []
    likelihoods = registry.LIKELIHOODS.names()
    # D = 6..12, a different data size per likelihood (so no size coincides across heads)
    sizes = {name: 6 + i for i, name in enumerate(likelihoods)}
    for lik, guide, prior, decoder in itertools.product(
        likelihoods,
        registry.GUIDES.names(),
        registry.PRIORS.names(),
        registry.DECODERS.names(),  # mlp and bayesian
    ):
        values = dict(BASE, likelihood=lik, guide=guide, prior=prior, decoder=decoder)
        values.update(PART_SETTINGS.get(guide, {}))
        try:
            config = RunConfig(**values)
        except ConfigError:
            continue  # the config refuses this combination
        out.append(Pair(lik, guide, prior, decoder, sizes[lik], config))
    return out


PAIRS: list[Pair] = _pairs()
