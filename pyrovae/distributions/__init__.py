"""Custom Pyro distributions: the bounded Gaussian likelihoods of pyrovae, a fast mixture,
and the autoregressive (PixelCNN) image likelihood."""

from pyrovae.distributions.autoregressive import Autoregressive, AutoregressiveImage
from pyrovae.distributions.baggins import BagginsNormal
from pyrovae.distributions.bounded_normal import FlooredNormal
from pyrovae.distributions.diagonal_normal_mixture import DiagonalNormalMixture

__all__ = [
    "Autoregressive",
    "AutoregressiveImage",
    "BagginsNormal",
    "DiagonalNormalMixture",
    "FlooredNormal",
]
