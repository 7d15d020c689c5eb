"""What a run reports on its test split: per epoch, and once at the end (``summary.json``).

Every number is per data point, in nats, on the test split, with β = 1:

* each epoch: the ELBO, rate and distortion (:func:`test_metrics`; analytic KL
  where registered, ``eval_samples`` draws of z per point);
* at the end, besides: the importance-weighted log-likelihood with
  ``iw_samples`` samples (Burda et al. 2016), the reconstruction MSE, for BILBO
  runs the same numbers under the floating prior frozen at the training set,
  and for a Bayesian decoder the spread of reconstructions over q(θ).

Before it is scored, a batch-level likelihood (BAGGINS) is frozen at its
training-set aggregate (:meth:`pyrovae.models.likelihoods.Likelihood.fit_to_data`),
so test numbers do not depend on the test batch size.
"""

from __future__ import annotations

import time
from typing import Any

import pyro
import torch
from torch import nn

import pyrovae
from pyrovae.build import count_parameters
from pyrovae.infer import bilbo, full_vb
from pyrovae.infer.evaluation import elbo_terms, iw_log_likelihood, reconstruction_mse
from pyrovae.models.priors import prior_replaced
from pyrovae.options import Option

EVAL_SAMPLES = Option(
    "eval_samples", 1, "Draws of z per test point for the per-epoch test ELBO.", low=1
)
IW_SAMPLES = Option(
    "iw_samples",
    100,
    "Importance samples for the final test log-likelihood (0 = skip).",
    low=0,
)
#: the evaluation's options
OPTIONS = (EVAL_SAMPLES, IW_SAMPLES)

#: data points per evaluation pass
EVAL_BATCH = 1000


def prepare(model: nn.Module, guide: nn.Module, train: torch.Tensor) -> None:
    """Evaluation mode, with the likelihood's training-set aggregates set."""
    model.eval()
    guide.eval()
    model.likelihood.fit_to_data(model, guide, train, evaluation=True, batch_size=EVAL_BATCH)


@torch.no_grad()
def test_metrics(
    model: nn.Module, guide: nn.Module, test: torch.Tensor, num_samples: int, num_train: int
) -> dict[str, float]:
    """Test ELBO, rate and distortion per data point, and the seconds they took.

    :param num_train: the training set's size N (full VB: the ELBO includes weight KL / N).
    """
    start = time.perf_counter()
    terms = elbo_terms(
        model,
        guide,
        test,
        num_samples=num_samples,
        analytic_kl=True,
        batch_size=EVAL_BATCH,
        num_data=num_train,
    )
    out = {f"test_{k}": v.mean().item() for k, v in terms.items()}
    out["eval_seconds"] = time.perf_counter() - start
    return out


def test_log_likelihood(model, guide, test: torch.Tensor, num_samples: int) -> torch.Tensor:
    """The importance-weighted log p(x) of every test point (shape (N,)), in passes of
    bounded size (:func:`pyrovae.infer.evaluation.pass_sizes`)."""
    return iw_log_likelihood(model, guide, test, num_samples)


@torch.no_grad()
def under_floating_prior(
    model, guide, train: torch.Tensor, test: torch.Tensor, iw_samples: int
) -> dict[str, Any]:
    """Test numbers under BILBO's prior fitted to the training set (``*_floating_prior``)."""
    prior = bilbo.floating_prior(guide, train, EVAL_BATCH)
    out: dict[str, Any] = {"floating_prior_scale": prior.scale.tolist()}
    with prior_replaced(model, prior):
        terms = elbo_terms(model, guide, test, batch_size=EVAL_BATCH)
        out.update({f"test_{k}_floating_prior": v.mean().item() for k, v in terms.items()})
        if iw_samples > 0:
            ll = test_log_likelihood(model, guide, test, iw_samples)
            out["test_iw_log_likelihood_floating_prior"] = ll.mean().item()
    return out


@torch.no_grad()
def summarize(
    model: nn.Module,
    guide: nn.Module,
    config,
    train: torch.Tensor,
    test: torch.Tensor,
    metrics: list[dict],
) -> dict[str, Any]:
    """The final numbers of a trained run: the last epoch's row, then IW log p(x), MSE, ...

    The model and guide must be ready for evaluation (:func:`prepare`).

    :param config: the run's :class:`~pyrovae.config.RunConfig`.
    :param train: the training set (BILBO's floating prior, BAGGINS's frozen σ²).
    :param test: the test split, on the model's device.
    :param metrics: the run's rows, one per epoch (none for an untrained run).
    """
    summary: dict[str, Any] = dict(metrics[-1]) if metrics else {}
    if not metrics:
        summary.update(test_metrics(model, guide, test, config.eval_samples, train.shape[0]))
    summary.pop("seconds", None)
    summary.pop("eval_seconds", None)
    if config.iw_samples > 0:
        ll = test_log_likelihood(model, guide, test, config.iw_samples)
        summary["test_iw_log_likelihood"] = ll.mean().item()
        summary["iw_samples"] = config.iw_samples
    if getattr(config.part("objective"), "fits_prior", False):
        summary.update(under_floating_prior(model, guide, train, test, config.iw_samples))
    if getattr(model.likelihood, "exact_mean", True):  # E[x|z] of a PixelCNN is intractable
        summary["test_mse"] = (
            reconstruction_mse(model, guide, test, batch_size=EVAL_BATCH).mean().item()
        )
    if full_vb.is_full_vb(guide):
        spread = full_vb.reconstruction_spread(model, guide, test, batch_size=EVAL_BATCH)
        summary["test_reconstruction_sd"] = spread.mean().item()
        summary["weight_samples"] = guide.num_weight_samples
    summary["train_seconds"] = sum(r["seconds"] for r in metrics)
    summary["parameters"] = {"model": count_parameters(model), "guide": count_parameters(guide)}
    summary["device"] = str(test.device)
    summary["versions"] = {
        "pyrovae": pyrovae.__version__,
        "torch": torch.__version__,
        "pyro": pyro.__version__,
    }
    return summary
