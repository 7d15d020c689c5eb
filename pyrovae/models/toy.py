r"""The discrete toy model of Alemi et al. (2018), where every quantity is exact.

**Data.** A true latent ``z* ∈ {0, 1}`` with ``P(z* = 1) = 0.7`` and an
observation ``x ∈ {0, …, K−1}``: a Gaussian around ``K/4`` or ``3K/4``
discretised to the K values, its width set so that ``I(x; z*)`` is a chosen
amount (0.5 nats, as in the paper). The data distribution ``p*(x)`` and so its
entropy ``H`` are known exactly (:func:`toy_data`).

**Model.** Encoder ``e(z|x)`` and marginal ``m(z)`` over a latent
``z ∈ {0, …, K_z−1}`` are free tables, softmax of learned logits
(:class:`ToyModel`). The decoder ``d(x|z)`` is either

* ``"table"`` — a free table too: the paper's family, powerful enough both to
  *autoencode* (z a copy of x, ``R = H``, ``D = 0``) and to *autodecode*
  (``d(x|z) = p*(x)`` for every z, ``R = 0``, ``D = H``). With optimal ``d``
  and ``m`` every solution has ``D + R = H`` and ``D + βR = H + (β − 1) I``:
  the β-optimum is a corner (``β < 1``: as much rate as the optimiser finds;
  ``β > 1``: ``R = 0``) and **at β = 1 every rate is optimal** — the ELBO
  cannot tell an autodecoder from a model that uses its latent; or
* ``"gaussian"`` — a discretised Gaussian per latent value (learned mean and
  width): a restricted decoder, which cannot fit the two-mode ``p*(x)``
  without the latent, so the frontier is a curve above ``D = H − R`` that β
  traces smoothly.

**What it shows** (tested in ``tests/test_toy.py``). With the table decoder
and a near-uniform start, maximising the ELBO lands on the autodecoder
(``R ≈ 0``, ``I ≈ 0``) with ``ELBO = −H`` to 1e-4, while minimising ``D`` at a
target rate (``D + |R − σ|``, σ = 0.5) gives ``R ≥ σ`` and a latent that
carries the information, at the same ELBO; so does ``β = 0.5`` with ``R`` near
``H``. With the Gaussian decoder (``K_z = 2``) a β sweep traces the frontier:
``R`` falls and ``D`` rises with β, and the ELBO is largest at ``β = 1``.

**Exact terms.** With sums over x and z (enumeration, no sampling)

.. math::

    D = -\sum_x p^*(x) \sum_z e(z|x) \log d(x|z), \qquad
    R = \sum_x p^*(x) \sum_z e(z|x) \log \frac{e(z|x)}{m(z)},

    I(X;Z) = \sum_x p^*(x) \sum_z e(z|x) \log \frac{e(z|x)}{e(z)}, \quad
    e(z) = \sum_x p^*(x) e(z|x),

and ``H − D ≤ I ≤ R`` holds for every table (:meth:`ToyModel.terms`).

**Relation to the ELBO estimators.** ``D + βR`` here is, term for term, what
:class:`~pyrovae.infer.beta.BetaScaled` trains: :meth:`ToyModel.model` and
:meth:`ToyModel.guide` are the same tables as Pyro model and guide (site
``"latent"``, observation ``"obs"``, data plate over the K values of x
weighted by ``p*(x)``), and ``BetaScaled(TraceEnum_ELBO(), β)`` with the
guide's site enumerated returns exactly ``D + βR`` and its gradients (tested).
``Trace_ELBO`` would estimate the same number by sampling ``z ~ e(z|x)``; the
toy minimises the enumerated value with torch's Adam (:func:`fit_toy`) because
it is exact and fast.

.. warning:: ``z`` is discrete: ``Trace_ELBO`` would need the score-function
    (REINFORCE) gradient, whose β-scaled version is *not* the gradient of
    ``D + βR`` (Pyro scales the score function with the site). Enumerate.

Reference: A. Alemi et al., *Fixing a Broken ELBO*, ICML 2018, section 4.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from torch import nn

DTYPE = torch.float64
DECODERS = ("table", "gaussian")


def _xlogy_sum(p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``Σ p log q`` with ``0 · log 0 = 0``."""
    return torch.where(p > 0, p * log_q, torch.zeros((), dtype=p.dtype)).sum()


def entropy(p: torch.Tensor) -> torch.Tensor:
    """``H(p) = −Σ p log p`` in nats, with ``0 log 0 = 0``."""
    return -_xlogy_sum(p, torch.log(p.clamp_min(torch.finfo(p.dtype).tiny)))


def mutual_information(p_x: torch.Tensor, p_z_given_x: torch.Tensor) -> torch.Tensor:
    """``I(X; Z)`` of the joint ``p(x) p(z|x)``; ``p_z_given_x`` has shape ``(|X|, |Z|)``."""
    joint = p_x[:, None] * p_z_given_x
    p_z = joint.sum(0)
    return entropy(p_z) - (p_x * torch.stack([entropy(row) for row in p_z_given_x])).sum()


@dataclass(frozen=True)
class ToyData:
    """The toy's true distributions (tensors in float64).

    :ivar p_x: ``p*(x)``, shape ``(K,)``.
    :ivar p_true_latent: ``p*(z*)``, shape ``(2,)``.
    :ivar p_x_given_true_latent: ``p*(x|z*)``, shape ``(2, K)``.
    :ivar noise: the Gaussian's standard deviation, in units of x.

    Example:

    >>> from pyrovae.models.toy import toy_data
    >>> data = toy_data(num_values=30, information=0.5)
    >>> data.p_x.shape, round(data.true_information, 3)
    (torch.Size([30]), 0.5)
    """

    p_x: torch.Tensor
    p_true_latent: torch.Tensor
    p_x_given_true_latent: torch.Tensor
    noise: float

    @property
    def entropy(self) -> float:
        """``H = −Σ p*(x) log p*(x)``, nats."""
        return entropy(self.p_x).item()

    @property
    def true_information(self) -> float:
        """``I(x; z*)`` of the generating process, nats."""
        joint = self.p_true_latent[:, None] * self.p_x_given_true_latent
        return mutual_information(self.p_true_latent, joint / joint.sum(1, keepdim=True)).item()


def _discretised_gaussians(num_values: int, noise: float) -> torch.Tensor:
    x = torch.arange(num_values, dtype=DTYPE)
    means = torch.tensor([num_values / 4 - 0.5, 3 * num_values / 4 - 0.5], dtype=DTYPE)
    logits = -0.5 * ((x[None, :] - means[:, None]) / noise) ** 2
    return torch.softmax(logits, dim=-1)


def toy_data(num_values: int = 30, p_one: float = 0.7, information: float = 0.5) -> ToyData:
    """The generating process: ``z* ~ Bernoulli(p_one)``, ``x | z*`` a discretised Gaussian.

    The noise is found by bisection so that ``I(x; z*) = information`` (nats).

    :param num_values: K, the number of values of x.
    :param p_one: ``P(z* = 1)``.
    :param information: the target ``I(x; z*)``, in ``(0, H(z*))``.
    """
    if num_values < 4:
        raise ValueError(f"num_values must be at least 4, got {num_values}")
    if not 0 < p_one < 1:
        raise ValueError(f"p_one must lie in (0, 1), got {p_one}")
    p_z = torch.tensor([1 - p_one, p_one], dtype=DTYPE)
    if not 0 < information < entropy(p_z).item():
        raise ValueError(
            f"information must lie in (0, H(z*) = {entropy(p_z).item():.4f}) nats, "
            f"got {information}"
        )

    def info(noise: float) -> float:
        return mutual_information(p_z, _discretised_gaussians(num_values, noise)).item()

    lo, hi = 1e-3, 10.0 * num_values  # I(noise) decreases from H(z*) to ~0
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if info(mid) > information else (lo, mid)
    noise = math.sqrt(lo * hi)
    p_x_given_z = _discretised_gaussians(num_values, noise)
    return ToyData(p_z @ p_x_given_z, p_z, p_x_given_z, noise)


class ToyModel(nn.Module):
    r"""Tabular encoder ``e(z|x)`` and marginal ``m(z)``; a table or Gaussian decoder ``d(x|z)``.

    Each table is the softmax of learned logits, initialised to
    ``init_scale · N(0, 1)`` (near uniform: rate near 0).

    A ``"gaussian"`` decoder ``d(x|z) ∝ exp(−(x − μ_z)² / 2s_z²)`` starts with
    the means ``μ_z`` evenly spread over ``[0, K−1]`` (at the ``K_z`` quantile
    midpoints; random means leave some fits in poor local optima) and
    ``s_z = K/10``.

    :param p_x: the data distribution ``p*(x)``, shape ``(K,)``.
    :param num_latent: ``K_z`` (default ``K``).
    :param decoder: ``"table"`` or ``"gaussian"`` (see the module docstring).
    :param init_scale: the spread of the initial logits.

    Example:

    At β = 1 the table decoder's ELBO optimum is the autodecoder: no rate, ``ELBO = −H``.

    >>> import torch
    >>> from pyrovae.models.toy import ToyModel, fit_toy, toy_data
    >>> _ = torch.manual_seed(0)
    >>> data = toy_data()
    >>> terms = fit_toy(ToyModel(data.p_x), beta=1.0, steps=500).terms()
    >>> terms["rate"] < 0.01, abs(terms["elbo"] + terms["entropy"]) < 0.01
    (True, True)
    >>> terms["entropy"] - terms["distortion"] <= terms["information"] <= terms["rate"]
    True
    """

    def __init__(
        self,
        p_x: torch.Tensor,
        num_latent: int | None = None,
        decoder: str = "table",
        init_scale: float = 0.1,
    ):
        super().__init__()
        p_x = torch.as_tensor(p_x, dtype=DTYPE)
        if p_x.dim() != 1 or not torch.isclose(p_x.sum(), torch.ones((), dtype=DTYPE)):
            raise ValueError("p_x must be a probability vector")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        self.register_buffer("p_x", p_x)
        self.decoder = decoder
        k = p_x.shape[0]
        kz = k if num_latent is None else int(num_latent)
        self.encoder_logits = nn.Parameter(init_scale * torch.randn(k, kz, dtype=DTYPE))
        if decoder == "table":
            self.decoder_logits = nn.Parameter(init_scale * torch.randn(kz, k, dtype=DTYPE))
        else:
            spread = (torch.arange(kz, dtype=DTYPE) + 0.5) / kz
            self.decoder_means = nn.Parameter((k - 1) * spread)
            self.decoder_log_widths = nn.Parameter(torch.full((kz,), math.log(k / 10), dtype=DTYPE))
        self.marginal_logits = nn.Parameter(init_scale * torch.randn(kz, dtype=DTYPE))

    # -- the three tables (log-probabilities) --------------------------------
    def log_encoder(self) -> torch.Tensor:
        """``log e(z|x)``, shape ``(K, K_z)``."""
        return self.encoder_logits.log_softmax(-1)

    def log_decoder(self) -> torch.Tensor:
        """``log d(x|z)``, shape ``(K_z, K)``."""
        if self.decoder == "table":
            return self.decoder_logits.log_softmax(-1)
        x = torch.arange(self.p_x.shape[0], dtype=DTYPE, device=self.p_x.device)
        z_scores = (x - self.decoder_means[:, None]) / self.decoder_log_widths.exp()[:, None]
        return (-0.5 * z_scores**2).log_softmax(-1)

    def log_marginal(self) -> torch.Tensor:
        """``log m(z)``, shape ``(K_z,)``."""
        return self.marginal_logits.log_softmax(-1)

    # -- exact terms ----------------------------------------------------------
    def rate_distortion(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact ``(R, D)`` in nats, differentiable."""
        log_e = self.log_encoder()
        weights = self.p_x[:, None] * log_e.exp()  # p*(x) e(z|x)
        distortion = -(weights * self.log_decoder().T).sum()
        rate = (weights * (log_e - self.log_marginal())).sum()
        return rate, distortion

    def objective(self, beta: float = 1.0) -> torch.Tensor:
        """``D + βR``, exactly."""
        rate, distortion = self.rate_distortion()
        return distortion + beta * rate

    @torch.no_grad()
    def terms(self) -> dict[str, float]:
        """Exact ``H, D, R, I(X;Z)``, the ELBO ``−(D + R)`` and ``KL(p* ‖ g)``, nats.

        ``g(x) = Σ_z m(z) d(x|z)`` is the model's generative distribution.
        """
        rate, distortion = self.rate_distortion()
        h = entropy(self.p_x)
        g = self.log_marginal().exp() @ self.log_decoder().exp()
        return {
            "entropy": h.item(),
            "rate": rate.item(),
            "distortion": distortion.item(),
            "information": mutual_information(self.p_x, self.log_encoder().exp()).item(),
            "elbo": -(rate + distortion).item(),
            "kl_data_model": (-h - _xlogy_sum(self.p_x, g.log())).item(),
        }

    # -- the same tables as a Pyro model and guide -------------------------------
    def model(self, x: torch.Tensor) -> None:
        """Pyro model ``m(z) d(x|z)`` over the values ``x`` (all K of them), weighted by p*(x)."""
        with pyro.plate("data", x.shape[0]), poutine.scale(scale=self.p_x[x]):
            z = pyro.sample("latent", dist.Categorical(logits=self.log_marginal()))
            pyro.sample("obs", dist.Categorical(logits=self.log_decoder()[z]), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        """Pyro guide ``e(z|x)``; its site is marked for (parallel) enumeration."""
        with pyro.plate("data", x.shape[0]), poutine.scale(scale=self.p_x[x]):
            pyro.sample(
                "latent",
                dist.Categorical(logits=self.log_encoder()[x]),
                infer={"enumerate": "parallel"},
            )


def fit_toy(
    model: ToyModel,
    beta: float = 1.0,
    target_rate: float | None = None,
    steps: int = 3000,
    lr: float = 0.05,
) -> ToyModel:
    """Minimise ``D + βR`` (or ``D + |R − target_rate|``) exactly with Adam; returns ``model``.

    ``target_rate = σ`` is Alemi et al.'s objective for a fixed rate, ``D + |σ − R|``
    (their section 4.1), which ignores β.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(int(steps)):
        rate, distortion = model.rate_distortion()
        if target_rate is None:
            loss = distortion + beta * rate
        else:
            loss = distortion + (rate - target_rate).abs()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def toy_sweep(
    betas,
    data: ToyData | None = None,
    seed: int = 0,
    num_latent: int | None = None,
    decoder: str = "gaussian",
    **fit_options,
) -> list[dict[str, float]]:
    """Fit one fresh :class:`ToyModel` per β (same seed) and return its exact terms per β.

    :param fit_options: ``steps``, ``lr`` of :func:`fit_toy`.
    """
    data = data if data is not None else toy_data()
    rows = []
    for beta in betas:
        torch.manual_seed(seed)
        model = ToyModel(data.p_x, num_latent=num_latent, decoder=decoder)
        fit_toy(model, beta=float(beta), **fit_options)
        rows.append({"beta": float(beta), **model.terms()})
    return rows
