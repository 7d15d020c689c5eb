r"""Schedules of β, the weight of the rate in ``D + βR`` (:mod:`pyrovae.infer.beta`).

A schedule is a pure function of the training position ``t``, in (fractional)
epochs: step ``i`` of ``B`` in epoch ``e`` (both 0-based) trains at
``β(e + i / B)``. The trainer sets β **before every step**, so a warm-up is
smooth even over a few epochs, and because β depends on nothing but the
position, a resumed run repeats the uninterrupted one.

* :class:`Constant` — ``β(t) = β``.
* :class:`LinearWarmup` — ``β(t) = β · min(1, t / w)`` over ``w`` epochs
  (Bowman et al. 2016's KL annealing; Sønderby et al. 2016's warm-up).
* :class:`Cyclical` — Fu et al. (2019): training is split into ``M`` cycles of
  ``T / M`` epochs; within each, β rises linearly from 0 to β over the first
  half of the cycle and then stays at β.

Names in :data:`pyrovae.registry.BETA_SCHEDULES`. Each schedule declares the
options it reads (``options``, :mod:`pyrovae.options`); :meth:`BetaSchedule.from_options`
builds it from β, the run's length in epochs and those options.

References: S. R. Bowman et al., *Generating Sentences from a Continuous
Space*, CoNLL 2016; H. Fu et al., *Cyclical Annealing Schedule: A Simple
Approach to Mitigating KL Vanishing*, NAACL 2019.
"""

from __future__ import annotations

import math

from pyrovae.options import Option

BETA_WARMUP = Option("beta_warmup", 5.0, "Epochs of the linear β warm-up.", low=0)
BETA_CYCLES = Option("beta_cycles", 4, "Cycles of the cyclical β schedule.", low=1)


def _non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class BetaSchedule:
    """Base class: ``schedule(t) -> β`` at training position ``t`` (epochs, >= 0).

    :param beta: the target β, >= 0.

    Example:

    >>> from pyrovae import registry
    >>> schedule = registry.BETA_SCHEDULES.get("linear").from_options(beta=0.5, epochs=10)
    >>> schedule
    LinearWarmup(beta=0.5, beta_warmup=5.0)
    >>> [schedule(t) for t in (0, 2.5, 5, 8)]
    [0.0, 0.25, 0.5, 0.5]
    """

    #: the run-configuration options a schedule reads besides ``beta`` (:mod:`pyrovae.options`)
    options: tuple[Option, ...] = ()

    def __init__(self, beta: float = 1.0):
        self.beta = _non_negative("beta", beta)

    @classmethod
    def from_options(cls, beta: float, epochs: int, **options) -> BetaSchedule:
        """The schedule of a run of ``epochs`` epochs towards ``beta``."""
        return cls(beta, **options)

    def __call__(self, t: float) -> float:
        raise NotImplementedError

    def is_constant(self) -> bool:
        """Whether β never changes during training."""
        return False

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(BetaSchedule):
    """``β(t) = β`` throughout.

    Example:

    >>> from pyrovae.infer.schedules import Constant
    >>> schedule = Constant(0.3)
    >>> schedule(0), schedule(100), schedule.is_constant()
    (0.3, 0.3, True)
    """

    def __call__(self, t: float) -> float:
        return self.beta

    def is_constant(self) -> bool:
        return True


class LinearWarmup(BetaSchedule):
    """``β(t) = β · min(1, t / w)``: from 0 at the first step to β after ``w`` epochs.

    :param beta_warmup: ``w``, the warm-up length in epochs (0 = constant β).

    Example:

    >>> from pyrovae.infer.schedules import LinearWarmup
    >>> schedule = LinearWarmup(beta=1.0, beta_warmup=4)
    >>> [schedule(t) for t in (0, 1, 2, 4, 10)]
    [0.0, 0.25, 0.5, 1.0, 1.0]
    """

    options = (BETA_WARMUP,)

    def __init__(self, beta: float = 1.0, beta_warmup: float = 5.0):
        super().__init__(beta)
        self.beta_warmup = _non_negative("beta_warmup", beta_warmup)

    def __call__(self, t: float) -> float:
        if self.beta_warmup == 0:
            return self.beta
        return self.beta * min(1.0, max(0.0, t) / self.beta_warmup)

    def is_constant(self) -> bool:
        return self.beta_warmup == 0


class Cyclical(BetaSchedule):
    """Fu et al. (2019): ``M`` cycles over ``T`` epochs, each a linear ramp then a plateau.

    With period ``P = T / M`` and phase ``τ = (t mod P) / P``,
    ``β(t) = β · min(1, τ / ρ)`` with ``ρ = ramp`` (½: ramp over the first half).

    .. warning:: The period depends on the run's total ``epochs``: resuming a run
        with a different ``--epochs`` changes the schedule from then on.

    :param beta_cycles: ``M``, the number of cycles, >= 1.
    :param epochs: ``T``, the training length in epochs.
    :param ramp: ``ρ``, the fraction of each cycle spent ramping, in (0, 1].

    Example:

    >>> from pyrovae.infer.schedules import Cyclical
    >>> schedule = Cyclical(beta=1.0, beta_cycles=2, epochs=8)  # two cycles of 4 epochs
    >>> [schedule(t) for t in (0, 1, 2, 3, 4, 5)]
    [0.0, 0.5, 1.0, 1.0, 0.0, 0.5]
    """

    options = (BETA_CYCLES,)

    @classmethod
    def from_options(cls, beta: float, epochs: int, **options) -> Cyclical:
        return cls(beta, epochs=epochs, **options)

    def __init__(
        self, beta: float = 1.0, beta_cycles: int = 4, epochs: int = 10, ramp: float = 0.5
    ):
        super().__init__(beta)
        if isinstance(beta_cycles, bool) or not isinstance(beta_cycles, int) or beta_cycles < 1:
            raise ValueError(f"beta_cycles must be a positive integer, got {beta_cycles!r}")
        if not 0 < ramp <= 1:
            raise ValueError(f"ramp must lie in (0, 1], got {ramp!r}")
        self.beta_cycles = beta_cycles
        self.epochs = _non_negative("epochs", epochs)
        self.ramp = float(ramp)

    def __call__(self, t: float) -> float:
        if self.epochs == 0:
            return self.beta
        period = self.epochs / self.beta_cycles
        phase = math.fmod(max(0.0, t), period) / period
        return self.beta * min(1.0, phase / self.ramp)
