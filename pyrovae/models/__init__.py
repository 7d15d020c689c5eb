"""Pyro models: the VAE, its priors and likelihood heads."""

from pyrovae.models.likelihoods import (
    MSE,
    Bernoulli,
    GaussianFixed,
    GaussianLearned,
    Likelihood,
)
from pyrovae.models.plates import data_plate
from pyrovae.models.priors import StandardNormal
from pyrovae.models.vae import VAE

__all__ = [
    "MSE",
    "VAE",
    "Bernoulli",
    "GaussianFixed",
    "GaussianLearned",
    "Likelihood",
    "StandardNormal",
    "data_plate",
]
