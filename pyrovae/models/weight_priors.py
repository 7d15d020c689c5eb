r"""Priors p(θ) over the weights of a Bayesian decoder (full variational Bayes).

Kingma & Welling (2013, appendix F) put a prior on the decoder's parameters θ
and fit a Gaussian q(θ) beside the amortised q(z|x). Their example prior is
N(0, I), which the MLSALT4 replication found far too wide for MLP weights (the
model "did not learn"). Two priors are offered here, each an ``nn.Module``
whose call ``prior(shape)`` returns a distribution over a whole weight tensor
(``event_shape == shape``, empty batch shape), with its numbers in buffers so
that it follows ``.to(device)``:

* :class:`NormalWeightPrior` — ``θ_j ~ N(0, σ_p²)`` independently; the KL from
  a Gaussian q(θ) is in closed form.
* :class:`ScaleMixtureWeightPrior` — the scale mixture of Blundell et al.
  (2015, eq. 7), ``θ_j ~ π N(0, σ₁²) + (1 − π) N(0, σ₂²)`` with ``σ₁ > σ₂``
  and ``σ₂ ≪ 1``: a spike-and-slab-like prior whose narrow component lets
  unneeded weights sit at zero cheaply. Its KL from q(θ) has no closed form
  and is estimated by Monte Carlo.

References: D. P. Kingma, M. Welling, *Auto-Encoding Variational Bayes*,
appendix F (2013); C. Blundell, J. Cornebise, K. Kavukcuoglu, D. Wierstra,
*Weight Uncertainty in Neural Networks*, ICML 2015.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution
from torch import nn
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

from pyrovae.options import Option

BLUNDELL_SIGMA2 = math.exp(-6.0)

WEIGHT_PRIOR_SCALE = Option(
    "weight_prior_scale", 0.1, "s of the normal weight prior N(0, s²).", above=0
)
MIXTURE_PI = Option("mixture_pi", 0.5, "π of the scale-mixture prior.", above=0, below=1)
MIXTURE_SIGMA1 = Option("mixture_sigma1", 1.0, "Wide σ₁ of the scale mixture.", above=0)
MIXTURE_SIGMA2 = Option(
    "mixture_sigma2", BLUNDELL_SIGMA2, "Narrow σ₂ of the scale mixture (e^-6).", above=0
)


class ScaleMixtureNormal(TorchDistribution):
    r"""The zero-mean two-scale Gaussian mixture, elementwise:

    .. math::

        p(θ) = π\,\mathcal N(θ; 0, σ_1^2) + (1 − π)\,\mathcal N(θ; 0, σ_2^2).

    ``log_prob`` is computed with a log-sum-exp (stable when ``σ₂`` is tiny).
    Sampling picks a component per element; there is no ``rsample`` (a prior
    is only scored, never reparameterised, in variational Bayes).

    :param mixing: π, the weight of the first (wide) component, in [0, 1].
    :param scale1: σ₁ > 0.
    :param scale2: σ₂ > 0.

    Example:

    >>> import torch
    >>> from pyrovae.models.weight_priors import ScaleMixtureNormal
    >>> d = ScaleMixtureNormal(torch.tensor(0.5), torch.tensor(1.0), torch.tensor(0.01))
    >>> d.sample((4,)).shape
    torch.Size([4])
    >>> round(d.log_prob(torch.zeros(())).item(), 3)  # log(½ N(0; 0, 1) + ½ N(0; 0, 0.01²))
    3.003
    """

    arg_constraints = {
        "mixing": constraints.unit_interval,
        "scale1": constraints.positive,
        "scale2": constraints.positive,
    }
    support = constraints.real
    has_rsample = False

    def __init__(self, mixing, scale1, scale2, validate_args=None):
        self.mixing, self.scale1, self.scale2 = broadcast_all(mixing, scale1, scale2)
        super().__init__(self.mixing.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ScaleMixtureNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.mixing = self.mixing.expand(batch_shape)
        new.scale1 = self.scale1.expand(batch_shape)
        new.scale2 = self.scale2.expand(batch_shape)
        super(ScaleMixtureNormal, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> torch.Tensor:
        return torch.zeros_like(self.mixing)

    @property
    def variance(self) -> torch.Tensor:
        return self.mixing * self.scale1**2 + (1 - self.mixing) * self.scale2**2

    def sample(self, sample_shape=()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            wide = torch.bernoulli(self.mixing.expand(shape)).bool()
            scale = torch.where(wide, self.scale1.expand(shape), self.scale2.expand(shape))
            return torch.randn(shape, dtype=scale.dtype, device=scale.device) * scale

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_1 = torch.log(self.mixing) + _normal_log_prob(value, self.scale1)
        log_2 = torch.log1p(-self.mixing) + _normal_log_prob(value, self.scale2)
        return torch.logaddexp(log_1, log_2)


def _normal_log_prob(value: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return -0.5 * (value / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)


class NormalWeightPrior(nn.Module):
    """``θ_j ~ N(0, σ_p²)`` for every weight and bias (Kingma & Welling 2013, app. F, with σ_p
    a parameter instead of 1).

    :param weight_prior_scale: σ_p > 0.

    Example:

    >>> from pyrovae.models.weight_priors import NormalWeightPrior
    >>> prior = NormalWeightPrior(0.1)
    >>> p = prior((2, 3))  # the prior of a (2, 3) weight matrix
    >>> p.event_shape, p.base_dist.scale.unique()
    (torch.Size([2, 3]), tensor([0.1000]))
    """

    options = (WEIGHT_PRIOR_SCALE,)

    def __init__(self, weight_prior_scale: float = 0.1):
        super().__init__()
        if not weight_prior_scale > 0:
            raise ValueError(f"weight_prior_scale must be > 0, got {weight_prior_scale}")
        self.register_buffer("loc", torch.tensor(0.0))
        self.register_buffer("scale", torch.tensor(float(weight_prior_scale)))

    def forward(self, shape: tuple[int, ...]) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale).expand(shape).to_event(len(shape))

    def extra_repr(self) -> str:
        return f"scale={self.scale.item():g}"


class ScaleMixtureWeightPrior(nn.Module):
    """Blundell et al.'s scale-mixture prior ``π N(0, σ₁²) + (1 − π) N(0, σ₂²)`` per weight.

    Defaults are from their grid (π = 1/2, −log σ₁ = 0, −log σ₂ = 6).

    :param mixture_pi: π, the weight of the wide component, in (0, 1).
    :param mixture_sigma1: σ₁, the wide scale.
    :param mixture_sigma2: σ₂ < σ₁, the narrow scale.

    Example:

    >>> from pyrovae.models.weight_priors import ScaleMixtureWeightPrior
    >>> prior = ScaleMixtureWeightPrior(mixture_pi=0.5, mixture_sigma1=1.0, mixture_sigma2=0.01)
    >>> prior((2, 3)).event_shape
    torch.Size([2, 3])
    """

    options = (MIXTURE_PI, MIXTURE_SIGMA1, MIXTURE_SIGMA2)

    @staticmethod
    def check_options(mixture_pi: float, mixture_sigma1: float, mixture_sigma2: float):
        """The narrow scale must be below the wide one (a message, or None)."""
        if not mixture_sigma2 < mixture_sigma1:
            return (
                f"mixture_sigma2 (the narrow scale, {mixture_sigma2:g}) must be below "
                f"mixture_sigma1 ({mixture_sigma1:g})"
            )
        return None

    def __init__(
        self,
        mixture_pi: float = 0.5,
        mixture_sigma1: float = 1.0,
        mixture_sigma2: float = BLUNDELL_SIGMA2,
    ):
        super().__init__()
        if not 0 < mixture_pi < 1:
            raise ValueError(f"mixture_pi must be in (0, 1), got {mixture_pi}")
        if not 0 < mixture_sigma2 < mixture_sigma1:
            raise ValueError(
                f"need 0 < mixture_sigma2 < mixture_sigma1, got {mixture_sigma2}, {mixture_sigma1}"
            )
        self.register_buffer("mixing", torch.tensor(float(mixture_pi)))
        self.register_buffer("scale1", torch.tensor(float(mixture_sigma1)))
        self.register_buffer("scale2", torch.tensor(float(mixture_sigma2)))

    def forward(self, shape: tuple[int, ...]) -> dist.TorchDistribution:
        base = ScaleMixtureNormal(self.mixing, self.scale1, self.scale2)
        return base.expand(shape).to_event(len(shape))

    def extra_repr(self) -> str:
        return (
            f"pi={self.mixing.item():g}, sigma1={self.scale1.item():g}, "
            f"sigma2={self.scale2.item():g}"
        )
