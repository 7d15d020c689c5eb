r"""BAGGINS: a bounded, scale-invariant Gaussian likelihood set by the batch's aggregate.

Fyffe (2019) proposes "a bounded Gaussian likelihood that is invariant to the
scale of the data using a measure of the aggregate information in a batch"
(Bounded Aggregate Information Sampling, BAGGINS). The paper's own equation is
not available to us; **this module is pyrovae's reconstruction** of it from
that description (see ``DESIGN.md``). For a batch ``x`` of ``B`` points in
``D`` dimensions with decoder means ``μ``:

.. math::

    \text{MS} = \frac{1}{BD} \sum_{i,d} (x_{id} - μ_{id})^2,   \qquad
    S = \frac1D \sum_d \operatorname{Var}_i(x_{id}),            \qquad
    σ^2 = \max\Big(\text{MS},\; \frac{S}{e^{2 I_{\max}} - 1}\Big),

    \log p(x_i) = -\frac{\lVert x_i - μ_i \rVert^2}{2σ^2} - \frac D2 \log(2πσ^2).

``MS`` is the maximum-likelihood variance of the batch (the "calibrated
decoder" of Rybkin et al. 2021, σ-VAE, which is unbounded); ``S`` is the
batch's own signal power per dimension (the residual mean square of the best
constant predictor, so ``Var`` is the biased, ``1/B`` variance). The floor
turns the Gaussian channel capacity ``I = ½ log(1 + S/N)`` around: no
dimension is credited with more than ``I_max`` nats of signal-to-noise. Hence

* **bounded**: ``log p(x_i) ≤ −(D/2) log(2π S / (e^{2 I_max} − 1))`` for every
  decoder, however small the residual (:meth:`BagginsNormal.log_prob_bound`);
* **scale invariant**: replacing ``x`` and ``μ`` by ``c·x`` and ``c·μ``
  multiplies ``MS``, ``S`` and ``σ²`` by ``c²``, so every log-probability
  changes by exactly ``−D log c`` and every gradient is unchanged.

``floor_mode="softplus"`` replaces the ``max`` by the smooth
``σ² = f·(1 + softplus(MS/f − 1))`` with ``f`` the floor; it is ``≥ max(MS, f)``
(so still bounded), homogeneous of degree 2 (so still scale invariant), and
differentiable where the two regimes meet.

**Gradients flow through σ².** σ² is a function of the decoder's parameters
(through ``MS``), and we differentiate the likelihood as written. With the
``max`` floor this costs nothing and changes nothing for objectives that sum
log-likelihoods over the batch (Trace_ELBO, TraceMeanField_ELBO, BILBO): above
the floor σ² is the maximiser of the batch's summed log-likelihood, so its
own gradient contribution vanishes (envelope theorem), and below it σ²
depends on the data only. It matters for IWAE's non-uniform weights and for
``floor_mode="softplus"``, where it is the gradient of the stated objective.

**Held-out data.** With the batch aggregate, point *i*'s log-probability
depends on the other points of its batch, so test numbers would depend on the
test batch size. Pass ``frozen_variance`` (σ² fixed at its training-set
value, :meth:`pyrovae.models.gaussian_heads.Baggins.freeze`) to score points
independently under ``N(μ, σ²_frozen I)`` — an ordinary, normalised density.

.. warning:: Without ``frozen_variance`` this is a batch-level *pseudo*
    likelihood: σ² depends on ``x`` itself, so ``exp(log_prob)`` is not a
    normalised density of one point, the ELBO built from it is not a bound on
    a marginal likelihood, and :meth:`~BagginsNormal.sample` is undefined. The
    aggregate is taken over the **rightmost batch dimension** (the data
    plate): it needs at least two points, and masked points (``.mask``) still
    enter the aggregate. ``.to_event(1)`` over the batch gives the batch's
    total log-likelihood.

Reference: G. Fyffe, *There and Back Again: Unraveling the Variational
Auto-Encoder*, arXiv:1912.10309 (2019).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import _standard_normal

FLOOR_MODES = ("max", "softplus")
_LOG_2PI = math.log(2 * math.pi)
_EMPTY = torch.Size()


def signal_variance(x: torch.Tensor) -> torch.Tensor:
    """``S``: per-dimension variance over the batch axis (-2), averaged over dimensions.

    :param x: data of shape (..., B, D).
    :returns: shape (...,).
    """
    return x.var(dim=-2, unbiased=False).mean(-1)


def variance_floor(signal: torch.Tensor, info_max: float) -> torch.Tensor:
    """``S / (e^{2 I_max} − 1)``: the noise variance at which the SNR capacity is ``I_max``."""
    return signal / math.expm1(2.0 * info_max)


def bounded_variance(
    residual_ms: torch.Tensor, floor: torch.Tensor, floor_mode: str = "max"
) -> torch.Tensor:
    """``max(MS, floor)`` or its smooth upper bound ``floor·(1 + softplus(MS/floor − 1))``."""
    floor = floor.clamp_min(torch.finfo(floor.dtype).tiny)
    if floor_mode == "max":
        return torch.maximum(residual_ms, floor)
    return floor * (1.0 + F.softplus(residual_ms / floor - 1.0))


def _check_hyperparameters(info_max: float, floor_mode: str) -> None:
    if not (isinstance(info_max, (int, float)) and 0 < info_max < math.inf):
        raise ValueError(f"info_max must be a positive number of nats, got {info_max!r}")
    if floor_mode not in FLOOR_MODES:
        raise ValueError(f"floor_mode must be one of {FLOOR_MODES}, got {floor_mode!r}")


def _as_frozen(frozen_variance, like: torch.Tensor, validate: bool) -> torch.Tensor | None:
    if frozen_variance is None:
        return None
    frozen = torch.as_tensor(frozen_variance, dtype=like.dtype, device=like.device)
    if frozen.numel() != 1:
        raise ValueError(f"frozen_variance must be a scalar, got shape {tuple(frozen.shape)}")
    frozen = frozen.reshape(())
    if validate and not (torch.isfinite(frozen) and frozen > 0):
        raise ValueError(f"frozen_variance must be a positive finite number, got {frozen.item()}")
    return frozen


class BagginsNormal(TorchDistribution):
    """``N(loc, σ² I)`` per point, σ² the bounded aggregate of the batch (see module docstring).

    Batch shape ``(..., B)``, event shape ``(D,)``: :meth:`log_prob` of a batch
    ``x`` of shape ``(..., B, D)`` returns per-point values of shape ``(..., B)``,
    with one σ² per leading index (e.g. per particle), shared by the ``B`` points.

    :param loc: decoder means, shape ``(..., B, D)``.
    :param info_max: ``I_max``, the information budget in nats per dimension (> 0).
    :param floor_mode: ``"max"`` (the definition) or ``"softplus"`` (smooth).
    :param frozen_variance: if given, a positive scalar σ² used instead of the
        batch aggregate (evaluation on held-out data).
    """

    arg_constraints = {"loc": constraints.real}
    support = constraints.independent(constraints.real, 1)
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        info_max: float,
        floor_mode: str = "max",
        frozen_variance: torch.Tensor | float | None = None,
        validate_args: bool | None = None,
    ) -> None:
        _check_hyperparameters(info_max, floor_mode)
        if not isinstance(loc, torch.Tensor) or loc.dim() < 1:
            raise ValueError("loc must be a tensor of shape (..., B, D)")
        self.loc = loc
        self.info_max = float(info_max)
        self.floor_mode = floor_mode
        validate = torch.distributions.Distribution._validate_args
        validate = validate if validate_args is None else validate_args
        self.frozen_variance = _as_frozen(frozen_variance, loc, validate)
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> BagginsNormal:
        new = self._get_checked_instance(BagginsNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.info_max = self.info_max
        new.floor_mode = self.floor_mode
        new.frozen_variance = self.frozen_variance
        super(BagginsNormal, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def is_frozen(self) -> bool:
        return self.frozen_variance is not None

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def mode(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        return self._frozen_or_raise("variance").expand(self.loc.shape)

    def _frozen_or_raise(self, what: str) -> torch.Tensor:
        if self.frozen_variance is None:
            raise ValueError(
                f"BAGGINS has no {what} of its own: its σ² is the aggregate of the batch being "
                "scored; pass frozen_variance (Baggins.freeze sets it from the training set)"
            )
        return self.frozen_variance

    def _batch(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value, loc = torch.broadcast_tensors(value, self.loc)
        if value.dim() < 2 or value.shape[-2] < 2:
            raise ValueError(
                "the BAGGINS aggregate needs a batch of at least two points along the rightmost "
                f"batch dimension, got value of shape {tuple(value.shape)}; score single points "
                "with frozen_variance"
            )
        return value, loc

    def aggregate_variance(self, value: torch.Tensor) -> torch.Tensor:
        """σ² of the batch ``value`` (..., B, D), shape (..., 1); the frozen σ² if set."""
        if self.frozen_variance is not None:
            return self.frozen_variance
        value, loc = self._batch(value)
        residual_ms = (value - loc).pow(2).mean((-2, -1))
        floor = variance_floor(signal_variance(value), self.info_max)
        return bounded_variance(residual_ms, floor, self.floor_mode).unsqueeze(-1)

    def log_prob_bound(self, value: torch.Tensor) -> torch.Tensor:
        """The largest per-point log-probability any ``loc`` can reach on the batch ``value``.

        ``−(D/2) log(2π f)`` with ``f`` the variance floor (or the frozen σ²); shape (..., 1).
        """
        d = self.event_shape[0]
        if self.frozen_variance is not None:
            floor = self.frozen_variance
        else:
            value, _ = self._batch(value)
            floor = variance_floor(signal_variance(value), self.info_max).unsqueeze(-1)
        return -0.5 * d * (floor.log() + _LOG_2PI)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        var = self.aggregate_variance(value)
        sq = (value - self.loc).pow(2).sum(-1)
        return -0.5 * sq / var - 0.5 * self.event_shape[0] * (var.log() + _LOG_2PI)

    def rsample(self, sample_shape: torch.Size = _EMPTY) -> torch.Tensor:
        std = self._frozen_or_raise("sampling distribution").sqrt()
        shape = self._extended_shape(sample_shape)
        eps = _standard_normal(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + eps * std
