"""Objectives (what SVI maximises) and evaluation (what runs report)."""

from pyrovae.infer.beta import BetaScaled, scale_sites
from pyrovae.infer.bilbo import BILBO
from pyrovae.infer.evaluation import elbo_terms, iw_log_likelihood, reconstruction_mse
from pyrovae.infer.importance import log_importance_weights
from pyrovae.infer.iwae import IWAE_ELBO
from pyrovae.infer.log_weights import per_point_log_weights
from pyrovae.infer.objectives import make_objective

__all__ = [
    "BILBO",
    "BetaScaled",
    "scale_sites",
    "IWAE_ELBO",
    "elbo_terms",
    "iw_log_likelihood",
    "log_importance_weights",
    "make_objective",
    "per_point_log_weights",
    "reconstruction_mse",
]
