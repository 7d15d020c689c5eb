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
    σ^2 = \max\Big(\text{MS},\; \frac{\max(S, S_{\min})}{e^{2 I_{\max}} - 1}\Big),

    \log p(x_i) = -\frac{\lVert x_i - μ_i \rVert^2}{2σ^2} - \frac D2 \log(2πσ^2).

``MS`` is the maximum-likelihood variance of the batch (the "calibrated
decoder" of Rybkin et al. 2021, σ-VAE, which is unbounded); ``S`` is the
batch's own signal power per dimension (the residual mean square of the best
constant predictor, so ``Var`` is the biased, ``1/B`` variance). The floor
turns the Gaussian channel capacity ``I = ½ log(1 + S/N)`` around: no
dimension is credited with more than ``I_max`` nats of signal-to-noise.

``S_min`` (``min_signal``) is a lower limit on the signal power that no batch
can remove: without it a batch with no spread (``S = 0``, e.g. identical
points) would have no floor at all, and a decoder reproducing it would score
without bound (+2119.7 nats per point in float64 at ``D = 6``).
:class:`pyrovae.models.gaussian_heads.Baggins` sets it to a quarter of the
training set's signal power, so it never binds on an ordinary batch (whose
numbers are exactly those without it) and a degenerate batch is bounded at
most ``D log 2`` nats (one bit per dimension) above a batch with the training
set's spread. Hence

* **bounded**: ``log p(x_i) ≤ −(D/2) log(2π max(S, S_min) / (e^{2 I_max} − 1))``
  for every decoder, however small the residual (:meth:`BagginsNormal.log_prob_bound`);
* **scale invariant**: replacing ``x``, ``μ`` and ``S_min`` by ``c·x``, ``c·μ``
  and ``c²·S_min`` multiplies ``MS``, ``S`` and ``σ²`` by ``c²``, so every
  log-probability changes by exactly ``−D log c`` and every gradient is
  unchanged (``S_min`` derived from the training set scales so by itself).

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

**Which points make the batch.** The aggregate is taken over the **rightmost
batch dimension** (the data plate), one σ² per leading index (e.g. per
particle):

* *Subsampling.* Under ``pyro.plate("data", N, subsample_size=B)`` the batch is
  the ``B`` points of the minibatch, and the ``N/B``-scaled sum is the
  minibatch's pseudo-likelihood scaled up. It is not an unbiased estimate of
  the same sum with the training set's σ² (σ² is a nonlinear batch statistic),
  and it shifts with ``B``; batches of a few points have a noisy σ².
* *Masking.* ``d.mask(m)`` (an override of Pyro's ``.mask``) returns a
  ``BagginsNormal`` whose aggregate is taken over the rows with ``m`` true
  only: a masked-out or padded row scores 0 and changes no other row's
  log-probability (the result equals scoring the batch without it, and padded
  rows may hold any value, NaN included, when validation is off). Masks
  combine by ``&``. Pyro's ``poutine.mask`` (and ``pyro.sample(...,
  obs_mask=...)``) only record a mask on the sample site, which Pyro's own ELBOs
  apply *after* ``log_prob``, so this distribution cannot see it;
  :class:`pyrovae.infer.bilbo.BILBO` passes a site's mask into it, and with
  Pyro's ELBOs mask the distribution itself (``pyro.sample("obs", d.mask(m),
  obs=x)``).
* *Data-parallel training.* Inside the forward pass of
  :func:`pyrovae.distributed.wrap` the sums behind ``MS`` and ``S`` and the
  point counts are all-reduced over the processes (differentiably), so each
  shard is scored with the σ² of the combined batch, however small the shard
  (:mod:`pyrovae.distributed`).

The batch needs at least two points that count (over all processes).

**Held-out data.** With the batch aggregate, point *i*'s log-probability
depends on the other points of its batch, so test numbers would depend on the
test batch size. Pass ``frozen_variance`` (σ² fixed at its training-set
value, :meth:`pyrovae.models.gaussian_heads.Baggins.freeze`) to score points
independently under ``N(μ, σ²_frozen I)`` — an ordinary, normalised density
that can be sampled (``has_rsample`` is true only then).

.. warning:: Without ``frozen_variance`` this is a batch-level *pseudo*
    likelihood: σ² depends on ``x`` itself, so ``exp(log_prob)`` is not a
    normalised density of one point, the ELBO built from it is not a bound on
    a marginal likelihood, and it cannot be sampled (``has_rsample`` is false,
    and :meth:`~BagginsNormal.sample` raises ``NotImplementedError``).
    ``.to_event(1)`` over the batch gives the batch's total log-likelihood.

Tested claims (``tests/test_gaussian_family.py``,
``tests/test_batch_statistics.py``, ``tests/test_distributed.py``): the bound,
exact scale invariance of values and gradients (also of whole training runs),
σ² = MS above the floor, masked rows neither scoring nor moving other rows,
degenerate batches bounded, and data-parallel runs equal to one process.

Reference: G. Fyffe, *There and Back Again: Unraveling the Variational
Auto-Encoder*, arXiv:1912.10309 (2019).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from pyro.distributions.util import broadcast_shape
from torch.distributions import constraints
from torch.distributions.utils import _standard_normal

from pyrovae import distributed

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


def pooled_statistics(
    value: torch.Tensor, loc: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(MS, S, n)`` over the rows of the batch axis (-2) that count, summed over processes.

    The general form of ``((value − loc)²).mean((−2, −1))`` and
    :func:`signal_variance`: sums and counts over the rows where ``mask`` is true,
    each all-reduced by :func:`pyrovae.distributed.sum_over_processes` (an identity
    outside a synchronised data-parallel forward pass), then divided. The signal
    variance is centred at the pooled mean (two reductions, no cancellation).

    :param value: data, shape (..., B, D); rows outside ``mask`` may hold anything
        finite (:meth:`BagginsNormal.log_prob` fills them in first).
    :param loc: means, the same shape.
    :param mask: booleans of shape (..., B), or None (every row counts).
    :returns: ``MS`` and ``S`` of shape (...,) and ``n``, the number of rows that count.
    """
    dim = value.shape[-1]
    if mask is None:
        weight = None
        count = value.new_full(value.shape[:-2], float(value.shape[-2]))
        total = value.sum(-2)
    else:
        weight = mask.expand(value.shape[:-1]).unsqueeze(-1).to(value.dtype)
        count = weight.sum((-2, -1))
        total = (value * weight).sum(-2)
    first = distributed.sum_over_processes(torch.cat([count.unsqueeze(-1), total], -1))
    count = first[..., 0]
    rows = count.clamp_min(1.0)
    mean = first[..., 1:] / rows.unsqueeze(-1)
    residual = (value - loc).pow(2)
    centred = (value - mean.unsqueeze(-2)).pow(2)
    if weight is not None:
        residual, centred = residual * weight, centred * weight
    sums = torch.cat([residual.sum((-2, -1)).unsqueeze(-1), centred.sum(-2)], -1)
    sums = distributed.sum_over_processes(sums)
    return sums[..., 0] / (rows * dim), sums[..., 1:].sum(-1) / (rows * dim), count


def _check_hyperparameters(info_max: float, floor_mode: str) -> None:
    if not (isinstance(info_max, (int, float)) and 0 < info_max < math.inf):
        raise ValueError(f"info_max must be a positive number of nats, got {info_max!r}")
    if floor_mode not in FLOOR_MODES:
        raise ValueError(f"floor_mode must be one of {FLOOR_MODES}, got {floor_mode!r}")


def _as_scalar(name: str, value, like: torch.Tensor, validate: bool) -> torch.Tensor | None:
    if value is None:
        return None
    scalar = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if scalar.numel() != 1:
        raise ValueError(f"{name} must be a scalar, got shape {tuple(scalar.shape)}")
    scalar = scalar.reshape(())
    if validate and not (torch.isfinite(scalar) and scalar > 0):
        raise ValueError(f"{name} must be a positive finite number, got {scalar.item()}")
    return scalar


class BagginsNormal(TorchDistribution):
    """``N(loc, σ² I)`` per point, σ² the bounded aggregate of the batch (see module docstring).

    Batch shape ``(..., B)``, event shape ``(D,)``: :meth:`log_prob` of a batch
    ``x`` of shape ``(..., B, D)`` returns per-point values of shape ``(..., B)``,
    with one σ² per leading index (e.g. per particle), shared by the ``B`` points
    (those that count, see :meth:`mask`).

    :param loc: decoder means, shape ``(..., B, D)``.
    :param info_max: ``I_max``, the information budget in nats per dimension (> 0).
    :param floor_mode: ``"max"`` (the definition) or ``"softplus"`` (smooth).
    :param frozen_variance: if given, a positive scalar σ² used instead of the
        batch aggregate (evaluation on held-out data); the distribution can then
        be sampled.
    :param min_signal: ``S_min``, a positive scalar lower limit on the batch's
        signal power ``S`` (None: none, and a batch without spread has no floor).

    Example:

    >>> import math
    >>> import pyro
    >>> import torch
    >>> from pyrovae.distributions import BagginsNormal
    >>> from pyrovae.distributions.baggins import signal_variance, variance_floor
    >>> pyro.set_rng_seed(0)
    >>> loc, x = torch.rand(8, 5), torch.rand(8, 5)
    >>> d = BagginsNormal(loc, info_max=3.0)
    >>> d.batch_shape, d.event_shape, d.log_prob(x).shape
    (torch.Size([8]), torch.Size([5]), torch.Size([8]))
    >>> exact = BagginsNormal(x, info_max=3.0).log_prob(x)  # no residual: σ² at its floor
    >>> floor = variance_floor(signal_variance(x), info_max=3.0)  # S / (e^{2 I_max} − 1)
    >>> torch.allclose(exact, -2.5 * torch.log(2 * math.pi * floor).expand(8))  # the bound
    True
    """

    arg_constraints = {"loc": constraints.real}
    support = constraints.independent(constraints.real, 1)
    #: its log-probabilities are statistics of the batch (read by BILBO, which
    #: passes sample-site masks into such distributions)
    aggregates_batch = True

    def __init__(
        self,
        loc: torch.Tensor,
        info_max: float,
        floor_mode: str = "max",
        frozen_variance: torch.Tensor | float | None = None,
        validate_args: bool | None = None,
        min_signal: torch.Tensor | float | None = None,
    ) -> None:
        _check_hyperparameters(info_max, floor_mode)
        if not isinstance(loc, torch.Tensor) or loc.dim() < 1:
            raise ValueError("loc must be a tensor of shape (..., B, D)")
        self.loc = loc
        self.info_max = float(info_max)
        self.floor_mode = floor_mode
        validate = torch.distributions.Distribution._validate_args
        validate = validate if validate_args is None else validate_args
        self.frozen_variance = _as_scalar("frozen_variance", frozen_variance, loc, validate)
        self.min_signal = _as_scalar("min_signal", min_signal, loc, validate)
        self._mask: torch.Tensor | None = None
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    @classmethod
    def infer_shapes(cls, loc, **arg_shapes) -> tuple[torch.Size, torch.Size]:
        """``(batch_shape, event_shape)`` of a distribution built from ``loc`` of shape ``loc``.

        ``loc`` is ``(..., B, D)``; the other arguments are scalars.
        """
        loc = torch.Size(loc)
        if len(loc) < 1:
            raise ValueError("loc must have shape (..., B, D)")
        return loc[:-1], loc[-1:]

    def expand(self, batch_shape, _instance=None) -> BagginsNormal:
        new = self._get_checked_instance(BagginsNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.info_max = self.info_max
        new.floor_mode = self.floor_mode
        new.frozen_variance = self.frozen_variance
        new.min_signal = self.min_signal
        new._mask = None if self._mask is None else self._mask.expand(batch_shape)
        super(BagginsNormal, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def mask(self, mask: torch.Tensor | bool) -> BagginsNormal:
        """A copy whose batch aggregate, and log-probabilities, count only rows where ``mask``.

        Unlike Pyro's generic :class:`~pyro.distributions.MaskedDistribution`, the
        masked rows are also left out of σ²: they score 0 and change no other row's
        log-probability. ``mask`` broadcasts with the batch shape (a wider mask widens
        the batch shape, as Pyro's does); masks applied in turn combine by ``&``.

        :param mask: a boolean tensor, or ``True`` (no change) / ``False`` (nothing counts).
        """
        if isinstance(mask, bool):
            if mask:
                return self
            mask = torch.zeros((), dtype=torch.bool, device=self.loc.device)
        elif not isinstance(mask, torch.Tensor):
            raise ValueError(f"mask must be a boolean tensor or a bool, got {type(mask).__name__}")
        batch_shape = torch.Size(broadcast_shape(mask.shape, self.batch_shape))
        new = self.expand(batch_shape)
        mask = mask.bool().expand(batch_shape)
        new._mask = mask if new._mask is None else new._mask & mask
        return new

    @property
    def is_frozen(self) -> bool:
        return self.frozen_variance is not None

    @property
    def has_rsample(self) -> bool:
        """True only with ``frozen_variance``: the batch aggregate has no sampling distribution."""
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
            raise NotImplementedError(
                f"BAGGINS has no {what} of its own: its σ² is the aggregate of the batch being "
                "scored; pass frozen_variance (Baggins.freeze sets it from the training set)"
            )
        return self.frozen_variance

    def _fill_masked(self, value: torch.Tensor) -> torch.Tensor:
        """Rows outside the mask replaced by ``loc`` (detached): finite, zero residual."""
        if self._mask is None:
            return value
        return torch.where(self._mask.unsqueeze(-1), value, self.loc.detach())

    def _statistics(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(MS, S)`` of the batch ``value``, shape (...,): of the rows that count, globally."""
        value, loc = torch.broadcast_tensors(value, self.loc)
        if value.dim() < 2:
            raise ValueError(
                "the BAGGINS aggregate needs a batch axis: value of shape (..., B, D), got "
                f"{tuple(value.shape)}"
            )
        if self._mask is None and not distributed.synchronizing():
            if value.shape[-2] < 2:
                raise ValueError(
                    "the BAGGINS aggregate needs a batch of at least two points along the "
                    f"rightmost batch dimension, got value of shape {tuple(value.shape)}; "
                    "score single points with frozen_variance"
                )
            return (value - loc).pow(2).mean((-2, -1)), signal_variance(value)
        residual_ms, signal, count = pooled_statistics(value, loc, self._mask)
        if bool(((count > 0) & (count < 2)).any()):
            raise ValueError(
                "the BAGGINS aggregate needs at least two points that count (unmasked, over all "
                "processes) in each batch; score single points with frozen_variance"
            )
        return residual_ms, signal

    def _floor(self, signal: torch.Tensor) -> torch.Tensor:
        if self.min_signal is not None:
            signal = torch.maximum(signal, self.min_signal)
        return variance_floor(signal, self.info_max)

    def aggregate_variance(self, value: torch.Tensor) -> torch.Tensor:
        """σ² of the batch ``value`` (..., B, D), shape (..., 1); the frozen σ² if set."""
        if self.frozen_variance is not None:
            return self.frozen_variance
        residual_ms, signal = self._statistics(self._fill_masked(value))
        floor = self._floor(signal)
        return bounded_variance(residual_ms, floor, self.floor_mode).unsqueeze(-1)

    def log_prob_bound(self, value: torch.Tensor) -> torch.Tensor:
        """The largest per-point log-probability any ``loc`` can reach on the batch ``value``.

        ``−(D/2) log(2π f)`` with ``f`` the variance floor (or the frozen σ²); shape (..., 1).
        """
        d = self.event_shape[0]
        if self.frozen_variance is not None:
            floor = self.frozen_variance
        else:
            _, signal = self._statistics(self._fill_masked(value))
            floor = self._floor(signal).clamp_min(torch.finfo(signal.dtype).tiny).unsqueeze(-1)
        return -0.5 * d * (floor.log() + _LOG_2PI)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        value = self._fill_masked(value)
        var = self.aggregate_variance(value)
        sq = (value - self.loc).pow(2).sum(-1)
        log_p = -0.5 * sq / var - 0.5 * self.event_shape[0] * (var.log() + _LOG_2PI)
        if self._mask is not None:
            log_p = torch.where(self._mask, log_p, log_p.new_zeros(()))
        return log_p

    def rsample(self, sample_shape: torch.Size = _EMPTY) -> torch.Tensor:
        std = self._frozen_or_raise("sampling distribution").sqrt()
        shape = self._extended_shape(sample_shape)
        eps = _standard_normal(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + eps * std
