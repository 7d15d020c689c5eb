"""Guides q(z | x): the encoder and the posterior family it emits."""

from pyrovae.guides.constant import ConstantVariance
from pyrovae.guides.diagonal import DiagonalGaussian

__all__ = ["ConstantVariance", "DiagonalGaussian"]
