"""The deterministic guide: a point posterior at the encoder's output (a plain auto-encoder).

    q(z | x) = δ(z − μ_φ(x)),    site "latent", inside plate "data"

An MLP encoder emits ``latent_dim`` numbers per data point, the code ``μ_φ(x)``;
the posterior is :class:`pyro.distributions.Delta` there. Trained with β = 0
(:class:`~pyrovae.infer.beta.BetaScaled` masks the rate), the objective is the
distortion at the code alone,

    loss = (N/B) Σ_i −log p(x_i | z = μ_φ(x_i)),

so with the ``mse`` likelihood (``−log p = ‖x − μ‖² + (D/2) log π``) and weight
decay this *is* the regularised auto-encoder of the MLSALT4 report's section 5
(its eq. 15), trained by the same trainer, objectives and optimiser as the VAE.

Reference: the comparison VAE vs auto-encoder of the MLSALT4 replication of
Kingma & Welling (2013), section 5.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch

from pyrovae.guides.amortized import AmortizedGuide, Encoder
from pyrovae.options import Needs

_NO_RATE = "it is a point posterior (a plain auto-encoder) with no rate to weigh"
_FIX = "pass beta 0 with the constant schedule (--beta 0)"


class DeterministicGuide(AmortizedGuide):
    """Amortised point posterior ``Delta(μ_φ(x))`` over site ``"latent"``: an encoder.

    .. warning:: A point mass has no density in z, so no ELBO or importance-weighted
        estimate computed with it is a bound on log p(x): Pyro scores ``Delta`` with
        log density 0, which makes the "rate" ``−log p(μ_φ(x))`` (``KL(Delta ‖ p)`` as
        Pyro registers it), the "ELBO" ``log p(x | μ) + log p(μ)`` — also the
        trainer's ``test_elbo``, always evaluated at β = 1 — and the IW estimate
        that same number for every K. Train it with ``beta = 0`` (the configuration
        refuses anything else) and judge it by its distortion or reconstruction
        error (:func:`~pyrovae.infer.evaluation.reconstruction_mse`).

    :param data_dim: D, the size of a flattened data point.
    :param latent_dim: the size of z (the auto-encoder's bottleneck).
    :param hidden: encoder hidden widths, from x towards z.
    :param activation: encoder nonlinearity.
    :param init: ``"default"`` or ``"aevb"``.
    :param encoder: a network instead of the MLP (see :class:`AmortizedGuide`).

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.guides import DeterministicGuide
    >>> pyro.set_rng_seed(0)
    >>> guide = DeterministicGuide(16, latent_dim=2, hidden=[8])
    >>> x = torch.rand(5, 16)
    >>> torch.equal(guide(x), guide(x))  # a point posterior: the code, no noise
    True
    """

    point_posterior = True
    needs = (
        Needs("beta", (0.0,), _NO_RATE, _FIX),
        Needs("beta_schedule", ("constant",), _NO_RATE, _FIX),
    )

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden: Sequence[int] = (400,),
        activation: str = "tanh",
        init: str = "default",
        encoder: Encoder | None = None,
    ):
        super().__init__(
            data_dim, latent_dim, hidden, activation, init, outputs_per_latent=1, encoder=encoder
        )

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """δ at the code μ_φ(x) for a batch ``x`` (B, D): batch shape (B,), event (latent_dim,)."""
        return dist.Delta(self.encode(x)).to_event(1)
