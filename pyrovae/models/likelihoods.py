"""Likelihood heads: how a decoder's output scores the data, p(x | z).

A likelihood head is an ``nn.Module`` that knows how many decoder outputs it
needs (:attr:`Likelihood.out_features`) and turns a decoder output ``h`` of
shape ``(..., out_features)`` into a Pyro distribution over ``x`` with
``event_shape == (data_dim,)``. Heads are the part of a
:class:`~pyrovae.models.vae.VAE` that the ``--likelihood`` option swaps.

Heads defined here (Kingma & Welling 2013, appendix C; Mattei & Frellsen 2018):

* :class:`Bernoulli` — ``x ∈ {0,1}^D``, logits from the decoder.
* :class:`GaussianFixed` — ``N(μ(z), σ² I)`` with σ given; ``σ = 1/√2`` makes
  ``−log p`` the squared error plus a constant (registry name ``mse``).
* :class:`GaussianLearned` — ``N(μ(z), diag σ²(z))`` with the decoder emitting
  mean and log-variance, as in AEVB. Its likelihood is **unbounded** (Mattei &
  Frellsen 2018): use it to see the problem, not to fit real data.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyrovae.options import Option

_MEAN_ACTIVATIONS = ("identity", "sigmoid")

MEAN_ACTIVATION = Option(
    "mean_activation", "identity", "Output map of Gaussian means.", choices=_MEAN_ACTIVATIONS
)
SIGMA = Option("sigma", 0.1, "σ of gaussian-fixed; the initial σ of gaussian-shared.", above=0)
RELAXED_BERNOULLI = Option(
    "relaxed_bernoulli", False, "Let bernoulli score grey data (not a density; as Pyro's example)."
)
#: the σ(|y|) ∈ [½, 1) that :func:`log_sigmoid_sum` multiplies before one logarithm
_PIXELS_PER_LOG = 64


@torch.no_grad()
def log_sigmoid_sum(y: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
    r"""``Σ_d log σ(y_d)`` over the last dim, with one logarithm per 64 values; overwrites ``y``.

    A binary pixel's Bernoulli log-likelihood is ``log σ(y)`` with ``y = (2x − 1) h``
    (``h`` the logit). Split it as ``log σ(y) = min(y, 0) + log σ(|y|)``: the first
    term is exact and cheap, and since ``σ(|y|) ∈ [½, 1)`` the second terms of 64
    values multiply without underflow (the product is ≥ 2⁻⁶⁴), so

    .. math::

        \sum_d \log σ(y_d) = \sum_d \min(y_d, 0) + \sum_{g} \log \prod_{d \in g} σ(|y_d|).

    One ``sigmoid`` per value instead of the ``exp`` and ``log1p`` of
    ``binary_cross_entropy_with_logits``; the same mathematics, and the same number up to
    float rounding (the tests bound the difference at D = 784). No gradients.

    :param y: shape ``(..., D)``; its values are replaced by ``min(y, 0)``.
    :param scratch: a tensor of ``y``'s shape for ``σ(|y|)`` (default: a new one).
    :returns: shape ``y.shape[:-1]``.
    """
    scaled = torch.abs(y, out=scratch) if scratch is not None else y.abs()
    total = y.clamp_max_(0).sum(-1)
    scaled.sigmoid_()
    d = y.shape[-1]
    whole = d - d % _PIXELS_PER_LOG
    if whole:
        groups = scaled[..., :whole].unflatten(-1, (-1, _PIXELS_PER_LOG))
        total += groups.prod(-1).log_().sum(-1)
    if whole < d:
        total += scaled[..., whole:].prod(-1).log_()
    return total


class Likelihood(nn.Module):
    """Base class of likelihood heads.

    :param data_dim: D, the number of data dimensions (pixels).

    Example:

    A head of your own needs ``forward`` (and ``out_features`` if the decoder emits more than
    ``D`` numbers):

    >>> import pyro.distributions as dist
    >>> import torch
    >>> from pyrovae.models import Likelihood
    >>> class Laplace(Likelihood):
    ...     def forward(self, h):
    ...         return dist.Laplace(h, 0.1).to_event(1)
    >>> head = Laplace(3)
    >>> head(torch.zeros(5, head.out_features)).event_shape
    torch.Size([3])
    >>> head.mean(torch.ones(5, 3)).shape
    torch.Size([5, 3])
    """

    #: the data must lie in {0, 1} for this likelihood to be a density
    requires_binary: bool = False
    #: the distribution factorises over pixels given h, parameters in k blocks of D (h.split(D))
    pixelwise: bool = False
    #: :meth:`mean` is E[x | z]; False when it is not tractable (an autoregressive head's
    #: ``mean`` is the conditional means along one sample): summaries then skip the MSE
    exact_mean: bool = True
    #: the run-configuration options this head reads (:mod:`pyrovae.options`)
    options: tuple[Option, ...] = ()

    def __init__(self, data_dim: int):
        super().__init__()
        if int(data_dim) <= 0:
            raise ValueError(f"data_dim must be positive, got {data_dim}")
        self.data_dim = int(data_dim)

    @property
    def out_features(self) -> int:
        """How many decoder outputs this head consumes."""
        return self.data_dim

    def forward(self, h: torch.Tensor) -> dist.TorchDistribution:
        """The distribution of ``x`` given decoder output ``h``; event shape ``(D,)``."""
        raise NotImplementedError

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log p(x | h)`` summed over the D data dimensions: ``self(h).log_prob(x)``.

        Heads may override it with a cheaper formula of the same value (the fast
        training path calls it every step; a test compares it with the distribution's).
        """
        return self(h).log_prob(x)

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        """E[x | z]: what reconstructions and samples show."""
        return self(h).mean

    def fit_to_data(
        self, model, guide, train: torch.Tensor, *, evaluation: bool = False, batch_size: int = 1000
    ) -> None:
        """Set what this head derives from the training set; a no-op for most heads.

        The trainer calls it once before training (``evaluation=False``: statistics that
        define the model, e.g. BAGGINS's data scale, a pure function of ``train``) and
        before every evaluation (``evaluation=True``: also the aggregates held-out data
        are scored with, e.g. BAGGINS's training-set σ²).

        :param model: the model this head belongs to.
        :param guide: its guide.
        :param train: the training set, shape (N, D).
        """

    def check_data(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` if ``x`` is outside this likelihood's support."""
        if x.shape[-1] != self.data_dim:
            raise ValueError(
                f"data has {x.shape[-1]} dimensions but the likelihood expects {self.data_dim}"
            )
        if not torch.isfinite(x).all():
            raise ValueError("data contains NaN or infinite values; clean the data first")


class Bernoulli(Likelihood):
    """``x_d ~ Bernoulli(sigmoid(h_d))`` independently over pixels.

    :param strict: if True (default), :meth:`check_data` rejects data outside
        {0, 1}. With ``strict=False`` the head scores grey values in [0, 1] by
        the same cross-entropy formula, ``x log p + (1 − x) log(1 − p)``, which
        is *not* a normalised density for grey data (Pyro's VAE example does
        this on grey MNIST); numbers from such runs are not log-likelihoods.

    Example:

    >>> import torch
    >>> from pyrovae.models import Bernoulli
    >>> head = Bernoulli(4)
    >>> h = torch.zeros(2, head.out_features)  # decoder outputs (logits) of two points
    >>> p = head(h)
    >>> p.batch_shape, p.event_shape
    (torch.Size([2]), torch.Size([4]))
    >>> head.log_prob(h, torch.ones(2, 4))  # 4 log(1/2) per point
    tensor([-2.7726, -2.7726])
    >>> head.check_data(torch.full((1, 4), 0.5))
    Traceback (most recent call last):
        ...
    ValueError: the bernoulli likelihood needs binary data but this data has values strictly ...
    """

    pixelwise = True
    requires_binary = True
    options = (RELAXED_BERNOULLI,)

    def __init__(self, data_dim: int, strict: bool = True):
        super().__init__(data_dim)
        self.strict = bool(strict)

    @classmethod
    def from_options(cls, data_dim: int, relaxed_bernoulli: bool = False) -> Bernoulli:
        """The head a run configuration names: ``strict`` unless ``relaxed_bernoulli``."""
        return cls(data_dim, strict=not relaxed_bernoulli)

    def forward(self, h: torch.Tensor) -> dist.TorchDistribution:
        # Validation would reject grey values; check_data guards the strict case.
        return dist.Bernoulli(logits=h, validate_args=False).to_event(1)

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # one fused pass; the negation after the sum, on (..., B) rather than (..., B, D)
        bce = F.binary_cross_entropy_with_logits(h, x.expand_as(h), reduction="none")
        return -bce.sum(-1)

    @torch.no_grad()
    def binary_log_prob(
        self, h: torch.Tensor, x: torch.Tensor, scratch: torch.Tensor | None = None
    ) -> torch.Tensor:
        """:meth:`log_prob` for binary ``x``, by :func:`log_sigmoid_sum` of ``(2x − 1) h``.

        Evaluation's form (no gradients): the same value as :meth:`log_prob` up to
        float rounding, with one ``sigmoid`` per pixel in place of an ``exp`` and a
        ``log1p``, and one logarithm per 64 pixels.

        :param h: logits, shape ``(..., D)``; not modified unless ``scratch`` is given.
        :param x: data in {0, 1} broadcasting with ``h`` (not checked: grey values give
            another number than :meth:`log_prob`, so callers check).
        :param scratch: a tensor of ``h``'s shape to compute in; then ``h`` is overwritten
            too, and nothing of the size of ``h`` is allocated.
        :returns: ``log p(x | h)`` summed over the D pixels, shape ``h.shape[:-1]``.
        """
        y = h * (2 * x - 1) if scratch is None else h.mul_(2 * x - 1)
        return log_sigmoid_sum(y, scratch)

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(h)

    def check_data(self, x: torch.Tensor) -> None:
        super().check_data(x)
        if self.strict and not ((x == 0) | (x == 1)).all():
            raise ValueError(
                "the bernoulli likelihood needs binary data but this data has values strictly "
                "between 0 and 1; use a binarised dataset (mnist-binarized, mnist-dynamic), a "
                "Gaussian likelihood, or relax the check (--relaxed-bernoulli)"
            )


def _activate_mean(h: torch.Tensor, kind: str) -> torch.Tensor:
    return torch.sigmoid(h) if kind == "sigmoid" else h


class GaussianFixed(Likelihood):
    """``x ~ N(μ(z), σ² I)`` with a fixed σ (Mattei & Frellsen: well posed).

    ``−log p(x|z) = ‖x − μ‖² / (2σ²) + D log σ + (D/2) log 2π``; with
    ``σ = 1/√2`` this is the squared error plus ``(D/2) log π``.

    :param sigma: the fixed standard deviation, > 0.
    :param mean_activation: ``"identity"`` or ``"sigmoid"`` (AEVB constrains
        the Frey Face means to (0, 1) with a sigmoid).

    Example:

    >>> import math
    >>> import torch
    >>> from pyrovae.models import GaussianFixed
    >>> head = GaussianFixed(3, sigma=0.5)
    >>> lp = head.log_prob(torch.zeros(1, 3), torch.zeros(1, 3))  # at the mean: -D log(σ √(2π))
    >>> torch.allclose(lp, torch.tensor(-3 * math.log(0.5 * math.sqrt(2 * math.pi))))
    True
    """

    pixelwise = True
    options = (SIGMA, MEAN_ACTIVATION)

    def __init__(self, data_dim: int, sigma: float = 1.0, mean_activation: str = "identity"):
        super().__init__(data_dim)
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a positive number, got {sigma}")
        if mean_activation not in _MEAN_ACTIVATIONS:
            raise ValueError(f"mean_activation must be one of {_MEAN_ACTIVATIONS}")
        self.sigma = float(sigma)
        self.mean_activation = mean_activation

    def forward(self, h: torch.Tensor) -> dist.TorchDistribution:
        loc = _activate_mean(h, self.mean_activation)
        return dist.Normal(loc, torch.full_like(loc, self.sigma)).to_event(1)

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        return _activate_mean(h, self.mean_activation)


class MSE(GaussianFixed):
    """:class:`GaussianFixed` with ``σ = 1/√2``: ``−log p = ‖x − μ‖² + (D/2) log π``.

    Example:

    >>> import math
    >>> import torch
    >>> from pyrovae.models import MSE
    >>> head = MSE(2)
    >>> x = torch.tensor([[1.0, 2.0]])
    >>> nll = -head.log_prob(torch.zeros(1, 2), x)  # decoder mean 0
    >>> torch.allclose(nll, (x**2).sum(-1) + math.log(math.pi))  # ‖x − μ‖² + (D/2) log π
    True
    """

    options = (MEAN_ACTIVATION,)

    def __init__(self, data_dim: int, mean_activation: str = "identity"):
        super().__init__(data_dim, sigma=math.sqrt(0.5), mean_activation=mean_activation)


class GaussianLearned(Likelihood):
    """``x ~ N(μ(z), diag σ²(z))``, the decoder emitting ``μ`` and ``log σ²`` (AEVB eqs. 10–11).

    .. warning:: Unbounded. A decoder that reproduces one training point
        exactly can send ``σ → 0`` there and the log-likelihood to +∞
        (Mattei & Frellsen 2018). Keep it for comparison with the bounded heads.

    Example:

    >>> import torch
    >>> from pyrovae.models import GaussianLearned
    >>> head = GaussianLearned(3)
    >>> head.out_features  # means and log-variances
    6
    >>> h = torch.cat([torch.zeros(1, 3), torch.full((1, 3), -20.0)], dim=-1)
    >>> head.log_prob(h, torch.zeros(1, 3)) > 25  # σ → 0 at a reproduced point: no upper bound
    tensor([True])
    """

    pixelwise = True
    options = (MEAN_ACTIVATION,)

    def __init__(self, data_dim: int, mean_activation: str = "identity"):
        super().__init__(data_dim)
        if mean_activation not in _MEAN_ACTIVATIONS:
            raise ValueError(f"mean_activation must be one of {_MEAN_ACTIVATIONS}")
        self.mean_activation = mean_activation

    @property
    def out_features(self) -> int:
        return 2 * self.data_dim

    def _split(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, log_var = h.split(self.data_dim, dim=-1)
        return _activate_mean(loc, self.mean_activation), log_var

    def forward(self, h: torch.Tensor) -> dist.TorchDistribution:
        loc, log_var = self._split(h)
        return dist.Normal(loc, torch.exp(0.5 * log_var)).to_event(1)

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        return self._split(h)[0]
