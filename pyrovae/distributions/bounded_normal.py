"""A Normal distribution whose standard deviation is bounded below (Mattei & Frellsen 2018).

Maximum likelihood for a Gaussian decoder with a learned variance is ill
posed: a decoder that reproduces one training point exactly can send its
variance to zero and the likelihood to +∞. Constraining the covariance so
that ``Σ ⪰ ξ² I`` makes the likelihood bounded (Mattei & Frellsen 2018,
section 2.1). :class:`FlooredNormal` is that constraint as a distribution.
"""

from __future__ import annotations

import math
from numbers import Number

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import _standard_normal, broadcast_all

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_EMPTY = torch.Size()


def _broadcast_params(**params) -> tuple[torch.Tensor, ...]:
    """``broadcast_all`` with an error that names the parameters and their shapes."""
    try:
        return broadcast_all(*params.values())
    except RuntimeError:
        shapes = ", ".join(
            f"{k} {tuple(v.shape) if isinstance(v, torch.Tensor) else '()'}"
            for k, v in params.items()
        )
        raise ValueError(f"parameter shapes do not broadcast: {shapes}") from None


class FlooredNormal(TorchDistribution):
    r"""``N(loc, σ²)`` with ``σ = √(scale² + floor²) ≥ floor`` elementwise.

    The covariance is the decoder's own ``diag(scale²)`` plus an isotropic
    noise floor ``ξ² I`` (``ξ = floor``), so every eigenvalue of ``Σ`` is at
    least ``ξ²`` — the condition under which Mattei & Frellsen (2018) show the
    Gaussian-decoder likelihood is bounded:

    .. math::

        \log p(x) = -\frac{(x - \mu)^2}{2σ^2} - \log σ - \tfrac12 \log 2π
                  \le -\log ξ - \tfrac12 \log 2π   \quad\text{per dimension.}

    Why ``√(scale² + ξ²)`` rather than ``max(scale, ξ)`` or ``ξ + scale``: it
    is smooth in ``scale`` (``max`` has zero gradient below the floor, so a
    decoder stuck there gets no signal to leave it), it equals the standard
    deviation of ``μ + scale·ε₁ + ξ·ε₂`` (an honest noise model: the decoder's
    noise plus independent floor noise), and it approaches ``scale`` when
    ``scale ≫ ξ`` (``ξ + scale`` biases every σ by ξ). ``scale = 0`` is
    allowed and gives ``σ = ξ``; a network maps its raw output ``r`` to
    ``scale = softplus(r)`` and gets ``σ ≥ ξ`` smoothly for every ``r``.

    :param loc: the mean μ.
    :param scale: the decoder's standard deviation, ``≥ 0``.
    :param floor: ξ, the lower bound of σ, ``> 0`` (a number or a tensor).

    Reference: P.-A. Mattei and J. Frellsen, *Leveraging the Exact Likelihood
    of Deep Latent Variable Models*, NeurIPS 2018.

    Example:

    >>> import math
    >>> import torch
    >>> from pyrovae.distributions import FlooredNormal
    >>> d = FlooredNormal(torch.zeros(3), scale=torch.tensor([0.0, 0.1, 1.0]), floor=0.1)
    >>> d.stddev  # √(scale² + ξ²)
    tensor([0.1000, 0.1414, 1.0050])
    >>> bound = -math.log(0.1) - 0.5 * math.log(2 * math.pi)  # per dimension, at σ = ξ
    >>> bool((d.log_prob(torch.zeros(3)) <= bound + 1e-6).all())
    True
    """

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.nonnegative,
        "floor": constraints.positive,
    }
    support = constraints.real
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor | float,
        scale: torch.Tensor | float,
        floor: torch.Tensor | float,
        validate_args: bool | None = None,
    ) -> None:
        self.loc, self.scale, self.floor = _broadcast_params(loc=loc, scale=scale, floor=floor)
        if all(isinstance(v, Number) for v in (loc, scale, floor)):
            batch_shape = torch.Size()
        else:
            batch_shape = self.loc.size()
        super().__init__(batch_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> FlooredNormal:
        new = self._get_checked_instance(FlooredNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        new.floor = self.floor.expand(batch_shape)
        super(FlooredNormal, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def mode(self) -> torch.Tensor:
        return self.loc

    @property
    def stddev(self) -> torch.Tensor:
        """The effective standard deviation ``σ = √(scale² + floor²)``."""
        return torch.hypot(self.scale, self.floor)

    @property
    def variance(self) -> torch.Tensor:
        return self.scale.pow(2) + self.floor.pow(2)

    def rsample(self, sample_shape: torch.Size = _EMPTY) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        eps = _standard_normal(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + eps * self.stddev

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        sigma = self.stddev
        return -((value - self.loc) ** 2) / (2 * sigma.pow(2)) - sigma.log() - _HALF_LOG_2PI

    def log_prob_bound(self) -> torch.Tensor:
        """``−log ξ − ½ log 2π``: the largest value :meth:`log_prob` can take, elementwise."""
        return -self.floor.log() - _HALF_LOG_2PI

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return 0.5 * (1 + torch.erf((value - self.loc) / (self.stddev * math.sqrt(2))))

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        return self.loc + self.stddev * torch.erfinv(2 * value - 1) * math.sqrt(2)

    def entropy(self) -> torch.Tensor:
        return 0.5 + _HALF_LOG_2PI + self.stddev.log()
