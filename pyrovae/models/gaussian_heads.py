"""Gaussian likelihood heads with a learned or bounded variance.

Mattei & Frellsen (2018) show that maximum likelihood with a learned Gaussian
decoder variance is unbounded (:class:`~pyrovae.models.likelihoods.GaussianLearned`),
and that bounding the covariance below, ``Σ ⪰ ξ² I``, makes it well posed.
Fyffe (2019) proposes BAGGINS, a bounded likelihood whose variance comes
from the batch and which is invariant to the scale of the data. Heads here:

* :class:`GaussianShared` — ``N(μ(z), σ² I)`` with one learned σ for every
  pixel and every point;
* :class:`BoundedGaussian` — the decoder emits a mean and a per-pixel raw
  scale; the standard deviation is floored at ``floor`` (:class:`FlooredNormal`);
* :class:`Baggins` — the decoder emits means only; σ² is the batch's bounded
  aggregate (:class:`~pyrovae.distributions.baggins.BagginsNormal`), and the
  data-scale normalisation that makes whole runs scale invariant is part of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from torch import nn

from pyrovae.data.dataset import iter_chunks
from pyrovae.distributions.baggins import (
    FLOOR_MODES,
    BagginsNormal,
    bounded_variance,
    signal_variance,
    variance_floor,
)
from pyrovae.distributions.bounded_normal import FlooredNormal
from pyrovae.models.likelihoods import (
    _MEAN_ACTIVATIONS,
    MEAN_ACTIVATION,
    SIGMA,
    Likelihood,
    _activate_mean,
)
from pyrovae.options import Option

FLOOR = Option("floor", 0.01, "σ floor ξ of bounded-gaussian (Mattei & Frellsen).", above=0)
INFO_MAX = Option(
    "info_max", 3.0, "Information budget I_max of baggins, nats per dimension.", above=0
)
FLOOR_MODE = Option(
    "floor_mode", "max", "How baggins applies its variance floor.", choices=FLOOR_MODES
)


def _check_positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and 0 < value < math.inf):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _check_mean_activation(kind: str) -> str:
    if kind not in _MEAN_ACTIVATIONS:
        raise ValueError(f"mean_activation must be one of {_MEAN_ACTIVATIONS}, got {kind!r}")
    return kind


class GaussianShared(Likelihood):
    """``x ~ N(μ(z), σ² I)`` with one learned σ shared by every pixel and data point.

    ``σ = exp(u)`` of an unconstrained parameter ``u``. The maximum-likelihood σ²
    is the residual mean square over the whole training set, so the likelihood
    only diverges if the decoder reproduces *every* training point exactly.

    .. warning:: Still unbounded in that interpolating limit (a small dataset,
        a large decoder); use :class:`BoundedGaussian` or :class:`Baggins` when
        that can happen.

    :param sigma: the initial σ, > 0.
    :param mean_activation: ``"identity"`` or ``"sigmoid"``.

    Example:

    >>> import torch
    >>> from pyrovae.models import GaussianShared
    >>> head = GaussianShared(3, sigma=0.5)
    >>> round(head.sigma.item(), 6), [name for name, _ in head.named_parameters()]
    (0.5, ['log_sigma'])
    >>> head(torch.zeros(2, 3)).event_shape
    torch.Size([3])
    """

    pixelwise = True
    options = (SIGMA, MEAN_ACTIVATION)

    def __init__(self, data_dim: int, sigma: float = 1.0, mean_activation: str = "identity"):
        super().__init__(data_dim)
        self.mean_activation = _check_mean_activation(mean_activation)
        self.log_sigma = nn.Parameter(torch.tensor(math.log(_check_positive("sigma", sigma))))

    @property
    def sigma(self) -> torch.Tensor:
        """The current shared standard deviation, shape ()."""
        return self.log_sigma.exp()

    def forward(self, h: torch.Tensor) -> dist.TorchDistribution:
        loc = _activate_mean(h, self.mean_activation)
        return dist.Normal(loc, self.sigma.expand_as(loc)).to_event(1)

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        return _activate_mean(h, self.mean_activation)


class BoundedGaussian(Likelihood):
    """``x ~ N(μ(z), diag σ²(z))`` with ``σ_d = √(softplus(r_d)² + ξ²) ≥ ξ`` (Mattei & Frellsen).

    The decoder emits ``2D`` numbers: means and raw scales ``r``. The
    log-likelihood of a point is at most ``−D (log ξ + ½ log 2π)``.

    The default ``floor = 0.01`` is for data in [0, 1]: it is about 2.5 grey
    levels of 8-bit images (one level is 1/255 ≈ 0.004, and σ below it claims a
    precision the data do not have), while decoders that fit MNIST or Frey Face
    reach σ of a few hundredths, so the floor binds only where the likelihood
    would otherwise run away. For data on another scale, scale ξ with it.

    :param floor: ξ, the smallest standard deviation, > 0.
    :param mean_activation: ``"identity"`` or ``"sigmoid"``.

    Example:

    >>> import math
    >>> import torch
    >>> from pyrovae.models import BoundedGaussian
    >>> head = BoundedGaussian(3, floor=0.01)
    >>> h = torch.cat([torch.zeros(1, 3), torch.full((1, 3), -50.0)], dim=-1)  # σ → its floor
    >>> bound = -3 * (math.log(0.01) + 0.5 * math.log(2 * math.pi))
    >>> head.log_prob(h, torch.zeros(1, 3)).item() <= bound + 1e-4
    True
    """

    pixelwise = True
    options = (FLOOR, MEAN_ACTIVATION)

    def __init__(self, data_dim: int, floor: float = 1e-2, mean_activation: str = "identity"):
        super().__init__(data_dim)
        self.floor = _check_positive("floor", floor)
        self.mean_activation = _check_mean_activation(mean_activation)

    @property
    def out_features(self) -> int:
        return 2 * self.data_dim

    def _split(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = h.split(self.data_dim, dim=-1)
        return _activate_mean(loc, self.mean_activation), raw

    def forward(self, h: torch.Tensor) -> dist.TorchDistribution:
        loc, raw = self._split(h)
        return FlooredNormal(loc, F.softplus(raw), self.floor).to_event(1)

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        return self._split(h)[0]


def _signal_power(x, chunk: int = 4096) -> float:
    """:func:`signal_variance` of the rows of ``x`` in float64, a chunk of rows at a time
    (``x`` a tensor, or a split read from disk: :class:`pyrovae.data.RowReader`)."""
    if isinstance(x, torch.Tensor):
        x = x.reshape(-1, x.shape[-1])
    mean = sum(c.sum(0, dtype=torch.float64) for c in iter_chunks(x, chunk)) / x.shape[0]
    sq = sum((c.to(torch.float64) - mean).pow(2).sum(0) for c in iter_chunks(x, chunk))
    return (sq / x.shape[0]).mean().item()


def _largest_magnitude(x, chunk: int = 4096) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.abs().max()
    return torch.stack([c.abs().max() for c in iter_chunks(x, chunk)]).max()


def _baggins_site(trace) -> dict:
    for site in trace.nodes.values():
        if site["type"] != "sample" or not site["is_observed"]:
            continue
        fn = site["fn"]
        while not isinstance(fn, BagginsNormal) and hasattr(fn, "base_dist"):
            fn = fn.base_dist
        if isinstance(fn, BagginsNormal):
            return {"value": site["value"], "loc": fn.loc}
    raise ValueError("the model has no observed site with a BAGGINS likelihood")


class Baggins(Likelihood):
    """BAGGINS (Fyffe 2019, our reconstruction): σ² is the batch's bounded aggregate.

    The decoder emits means only (``D`` outputs). In training mode each batch
    is scored with its own ``σ² = max(MS, max(S, S_min) / (e^{2 I_max} − 1))``
    (:class:`~pyrovae.distributions.baggins.BagginsNormal`); in eval mode,
    once :meth:`freeze` has run, with σ² frozen at the training set's value,
    so held-out numbers are ordinary Gaussian log-likelihoods that do not
    depend on the evaluation batch size.

    **A floor no batch can remove.** ``S_min = ¼ S_train``, a quarter of the
    training set's signal power (``train_signal``, set with the data scale by
    :meth:`fit_data_scale`; :attr:`signal_fraction`). An ordinary batch has
    ``S`` near ``S_train`` (of 2000 random batches of the digits training set,
    none had ``S`` below 0.65 ``S_train`` at 10 points, or below 0.36 ``S_train``
    at 5), so the limit does not bind and its numbers are exactly those without
    it; a batch without spread (identical points) is bounded at most ``D log 2``
    nats — one bit per dimension — above a batch with the training set's spread,
    instead of not at all. ``S_train`` scales as ``c²`` with the data, so
    invariance stays exact. Until :meth:`fit_data_scale` has run (for a checkpoint
    written before ``train_signal`` existed: until it runs again, as the trainer
    does before loading one) there is no such limit.

    **Scale normalisation (part of the model).** The likelihood alone is scale
    invariant (``x, μ → c·x, c·μ`` shifts every log-likelihood by ``−D log c``
    and leaves gradients unchanged), but the networks are not. So the head
    emits ``μ = data_scale · a(h)`` and the guide reads ``x / input_scale``,
    both set to ``c = max |x|`` over the training set by :meth:`fit_data_scale`.
    Rescaled data then give the same network inputs, outputs and gradients —
    the same run — and on data already in [0, 1] with a maximum of 1 nothing
    changes (``c = 1``; a sigmoid mean still spans the data's range).

    :param info_max: ``I_max``, nats per dimension. The default 3 nats (≈ 4.3
        bits of an 8-bit pixel) gives a floor σ ≈ 0.013 on MNIST (S ≈ 0.067)
        and ≈ 0.005 on Frey Face (S ≈ 0.012), comparable to
        :class:`BoundedGaussian`'s ξ = 0.01 and below the σ of fitted
        decoders: the floor binds only when the residual collapses.
    :param mean_activation: ``"identity"`` or ``"sigmoid"``.
    :param floor_mode: ``"max"`` or ``"softplus"`` (smooth; see the distribution).

    Example:

    Scale invariance: rescaling the data and the decoder's means by ``c`` shifts each point's
    log-likelihood by ``−D log c``.

    >>> import math
    >>> import pyro
    >>> import torch
    >>> from pyrovae.models import Baggins
    >>> pyro.set_rng_seed(0)
    >>> x, mu = torch.rand(8, 5), torch.rand(8, 5)
    >>> head = Baggins(5)
    >>> shift = head.log_prob(10 * mu, 10 * x) - head.log_prob(mu, x)
    >>> torch.allclose(shift, torch.full((8,), -5 * math.log(10)), atol=1e-4)
    True
    """

    options = (INFO_MAX, MEAN_ACTIVATION, FLOOR_MODE)
    #: ``S_min / S_train``: the share of the training set's signal power a batch is
    #: always credited with (¼: at most one bit per dimension above the training-set bound)
    signal_fraction = 0.25

    def __init__(
        self,
        data_dim: int,
        info_max: float = 3.0,
        mean_activation: str = "identity",
        floor_mode: str = "max",
    ):
        super().__init__(data_dim)
        self.info_max = _check_positive("info_max", info_max)
        self.mean_activation = _check_mean_activation(mean_activation)
        if floor_mode not in FLOOR_MODES:
            raise ValueError(f"floor_mode must be one of {FLOOR_MODES}, got {floor_mode!r}")
        self.floor_mode = floor_mode
        self.register_buffer("data_scale", torch.ones(()))
        self.register_buffer("frozen_variance", torch.full((), math.nan))
        self.register_buffer("train_signal", torch.full((), math.nan))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint written before ``train_signal`` existed keeps the value that
        # fit_to_data set (the trainer calls it before loading), or none
        state_dict.setdefault(prefix + "train_signal", self.train_signal.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def is_frozen(self) -> bool:
        """Whether :meth:`freeze` has set a training-set σ²."""
        return bool(torch.isfinite(self.frozen_variance))

    @property
    def min_signal(self) -> torch.Tensor | None:
        """``S_min = signal_fraction · S_train``, or None before :meth:`fit_data_scale`
        (and for training data without spread, where no positive limit exists)."""
        if not (torch.isfinite(self.train_signal) and self.train_signal > 0):
            return None
        return self.signal_fraction * self.train_signal

    def forward(self, h: torch.Tensor) -> BagginsNormal:
        frozen = None if self.training or not self.is_frozen else self.frozen_variance
        return BagginsNormal(
            self.mean(h),
            self.info_max,
            floor_mode=self.floor_mode,
            frozen_variance=frozen,
            min_signal=self.min_signal,
        )

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        return self.data_scale * _activate_mean(h, self.mean_activation)

    def fit_to_data(
        self, model, guide, train: torch.Tensor, *, evaluation: bool = False, batch_size: int = 1000
    ) -> None:
        """The data scale (:meth:`fit_data_scale`); for evaluation, also :meth:`freeze`."""
        self.fit_data_scale(train, guide)
        if evaluation:
            self.freeze(model, guide, train, batch_size=batch_size)

    @torch.no_grad()
    def fit_data_scale(self, x: torch.Tensor, guide: nn.Module | None = None) -> float:
        """Set ``data_scale`` (and the guide's ``input_scale``) to ``c = max |x|``.

        Also sets ``train_signal``, the signal power ``S`` of ``x`` (the lower
        limit of every batch's floor is a fraction of it). Call once with the
        training set before training; the buffers are saved in the ``state_dict``.

        :raises ValueError: if ``x`` is all zeros, or ``guide`` has no ``input_scale`` buffer.
        """
        c = _largest_magnitude(x)
        if not (torch.isfinite(c) and c > 0):
            raise ValueError(f"cannot normalise data whose largest magnitude is {c.item()}")
        if guide is not None:
            if not isinstance(getattr(guide, "input_scale", None), torch.Tensor):
                raise ValueError(
                    f"{type(guide).__name__} does not normalise its input (no input_scale "
                    "buffer), so a BAGGINS run would not be scale invariant; use the 'constant' "
                    "guide or give the guide an input_scale buffer"
                )
            guide.input_scale.fill_(c)
        self.data_scale.fill_(c)
        self.train_signal.fill_(_signal_power(x))
        return c.item()

    @torch.no_grad()
    def freeze(
        self, model: Callable, guide: Callable, x: torch.Tensor, batch_size: int = 1000
    ) -> float:
        """Set ``frozen_variance`` to σ² aggregated over the whole training set ``x``.

        ``MS`` is the residual mean square over all N points with ``z ~ q(z|x)``
        (one draw each, as in training), ``S`` the training set's signal
        variance; σ² combines them as in training. Call it whenever the
        parameters changed and held-out data are to be scored (the trainer
        does so before each evaluation).

        :param model: the model whose likelihood this head is (called as ``model(x)``).
        :param guide: its guide (called as ``guide(x)``).
        :returns: the frozen σ².
        """
        device = self.data_scale.device
        sq_sum = torch.zeros((), dtype=torch.float64, device=device)
        for xb in iter_chunks(x, int(batch_size)):
            xb = xb.to(device)
            guide_trace = poutine.trace(guide).get_trace(xb)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(xb)
            site = _baggins_site(model_trace)
            sq_sum += (site["value"] - site["loc"]).pow(2).sum(dtype=torch.float64)
        residual_ms = sq_sum / (x.shape[0] * x.shape[1])
        if isinstance(x, torch.Tensor):
            signal = signal_variance(x.to(device, torch.float64))
        else:  # a split on disk: the same quantity a chunk at a time (equal up to rounding)
            signal = torch.tensor(_signal_power(x), dtype=torch.float64, device=device)
        var = bounded_variance(residual_ms, variance_floor(signal, self.info_max), self.floor_mode)
        self.frozen_variance.fill_(var.item())
        return var.item()
