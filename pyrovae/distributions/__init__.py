"""Custom Pyro distributions: the bounded Gaussian likelihoods of pyrovae and a fast mixture."""

from pyrovae.distributions.baggins import BagginsNormal
from pyrovae.distributions.bounded_normal import FlooredNormal
from pyrovae.distributions.diagonal_normal_mixture import DiagonalNormalMixture

__all__ = ["BagginsNormal", "DiagonalNormalMixture", "FlooredNormal"]
