"""Custom Pyro distributions: the bounded Gaussian likelihoods of pyrovae."""

from pyrovae.distributions.baggins import BagginsNormal
from pyrovae.distributions.bounded_normal import FlooredNormal

__all__ = ["BagginsNormal", "FlooredNormal"]
