"""Guides q(z | x): the encoder and the posterior family it emits."""

from pyrovae.guides.amortized import AmortizedGuide
from pyrovae.guides.bayesian import FullVBGuide, MeanFieldWeights
from pyrovae.guides.constant import ConstantVariance
from pyrovae.guides.deterministic import DeterministicGuide
from pyrovae.guides.diagonal import DiagonalGaussian

__all__ = [
    "AmortizedGuide",
    "ConstantVariance",
    "DeterministicGuide",
    "DiagonalGaussian",
    "FullVBGuide",
    "MeanFieldWeights",
]
