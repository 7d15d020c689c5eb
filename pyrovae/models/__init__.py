"""Pyro models: the VAE, its priors and likelihood heads."""

from pyrovae.models.bayesian import BayesianLinear, BayesianMLP
from pyrovae.models.gaussian_heads import Baggins, BoundedGaussian, GaussianShared
from pyrovae.models.likelihoods import (
    MSE,
    Bernoulli,
    GaussianFixed,
    GaussianLearned,
    Likelihood,
)
from pyrovae.models.marginals import MixtureOfGaussians, VampPrior
from pyrovae.models.plates import data_plate
from pyrovae.models.priors import StandardNormal
from pyrovae.models.vae import VAE

__all__ = [
    "MSE",
    "BayesianLinear",
    "BayesianMLP",
    "MixtureOfGaussians",
    "VampPrior",
    "Baggins",
    "BoundedGaussian",
    "GaussianShared",
    "VAE",
    "Bernoulli",
    "GaussianFixed",
    "GaussianLearned",
    "Likelihood",
    "StandardNormal",
    "data_plate",
]
