r"""A Bayesian MLP decoder: weights and biases are Pyro sample sites (full variational Bayes).

Kingma & Welling (2013, appendix F) treat the decoder's parameters θ as latent
variables with a prior p(θ). With this decoder inside :class:`~pyrovae.models.VAE`,

.. math::

    θ \sim p(θ)  \quad\text{(sites "decoder.0.weight", "decoder.0.bias", ...; global)}

    z_i \sim p(z),\quad x_i \sim p(x \mid f_θ(z_i))
        \quad\text{(sites "latent", "obs"; inside plate "data")}

Every :class:`BayesianLinear` holds its weight and bias as
:class:`pyro.nn.PyroSample` attributes, so reading them inside a model call
samples (or, under ``poutine.replay``/``condition``, replays) the site once per
call. The VAE calls the decoder *between* two entries of the data plate, so
the weight sites live outside it: they are global, unscaled by the plate's
``N/B``, and the minibatch bound is

.. math::

    \frac{N}{B}\sum_{i \in \text{batch}} \big(\log p(x_i|z_i,θ) + \log p(z_i) - \log q(z_i|x_i)\big)
    + \log p(θ) - \log q(θ),

an unbiased estimate of the full-dataset bound of appendix F (eq. 19 of the
MLSALT4 report).

Site names mirror the point-estimate decoder's ``state_dict`` keys
(``decoder.0.weight`` ↔ site ``"decoder.0.weight"``), so a trained VAE's
weights can seed q(θ)'s means (:func:`pyrovae.weights.initialise_from_run`).

**Vectorised draws.** Pyro's vectorised machinery puts a plate of draws at
dim −2 (``max_plate_nesting=1``): :class:`pyro.infer.Predictive` with
``parallel=True`` and every ELBO with ``vectorize_particles=True``. A global
weight site then has shape ``(S, 1, out, in)`` (the 1 is the data plate's
position) and the decoder's input ``(S, B, in)``; a sequential ``Predictive``
conditions each draw as ``(1, out, in)``. :class:`BayesianLinear` broadcasts
over these leading sample dims (:func:`batched_linear`: one matrix product per
draw), and keeps ``F.linear`` for a single ``(out, in)`` draw, so the
unvectorised numbers are unchanged::

    Predictive(poutine.uncondition(vae), guide=full_vb_guide, num_samples=S,
               parallel=True)(x)["obs"]                       # (S, B, D)
    Trace_ELBO(num_particles=K, vectorize_particles=True, max_plate_nesting=1)

.. warning:: Outside any inference handler, *reading* a weight samples it from
    the prior: ``VAE.decode`` and ``VAE.sample`` of a Bayesian VAE then use prior
    weights. Decode with posterior weights under
    :func:`pyrovae.infer.full_vb.posterior_weights` (``poutine.condition`` on
    q(θ)'s means), or replay a guide trace. Called inside ``pyro.plate("data")``
    the weights would be drawn once per data point (shape ``(B, out, in)``): a
    different model, with local weights. Never call it there (PITFALLS).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.infer.autoguide.initialization import InitMessenger, init_to_mean
from pyro.nn import PyroModule, PyroSample
from torch import nn

from pyrovae import registry
from pyrovae.models.weight_priors import BLUNDELL_SIGMA2
from pyrovae.nets import INITS
from pyrovae.options import options_of


def _with_data_position(value: torch.Tensor, event_dim: int, data_rank: int) -> torch.Tensor:
    """A global site's value with a size-1 data-plate position left of its event dims.

    ``value`` has shape ``(*sample, *event)``; when it has fewer batch dims than
    the input has (``data_rank``, the input's dims left of its features, the last
    being the data dim), the draws are stacked without Pyro's placeholder for
    the data plate (e.g. ``(S, out, in)``), and one is inserted: ``(*sample, 1,
    *event)``.
    """
    if value.dim() - event_dim < data_rank:
        value = value.unsqueeze(-event_dim - 1)
    return value


def _broadcast_shapes(*shapes: torch.Size) -> torch.Size:
    """``torch.broadcast_shapes`` without its first-call import of ``torch._refs`` (0.7 s)."""
    rank = max(len(s) for s in shapes)
    out = []
    for dims in zip(*((1,) * (rank - len(s)) + tuple(s) for s in shapes)):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return torch.Size(out)


def batched_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    r"""``x Wᵀ + b`` with draws of ``W`` and ``b`` that carry leading sample dimensions.

    Pyro lays out a global site (outside ``pyro.plate("data", dim=-1)``) drawn
    under an outer particle plate (``vectorize_particles``, or
    :class:`pyro.infer.Predictive` with ``parallel=True``; both at dim −2 for
    ``max_plate_nesting=1``) as ``W`` of shape ``(S, 1, out, in)`` and ``b`` of
    shape ``(S, 1, out)``, against inputs ``x`` of shape ``(S, B, in)``:
    batch dimensions align from the right, the last being the data plate's,
    size 1 for a global site. The output is ``(S, B, out)``, one
    ``(B, in) × (in, out)`` matrix product per draw (``torch.matmul``).

    Also accepted:

    * stacked draws without the data position, ``W`` ``(S, out, in)``, ``b``
      ``(S, out)`` (what ``Predictive(posterior_samples=...)`` with
      ``parallel=True`` passes on for draws stacked by the user), when ``x`` has
      more batch dims than they do: the missing data position is inserted
      (:func:`_with_data_position`). With as many batch dims as ``x`` the
      weight's last batch dim is the data position, as in Pyro;
    * draws whose sample dims are all 1 (one particle, or one draw of a
      sequential :class:`~pyro.infer.Predictive`, ``(1, out, in)``): computed by
      ``F.linear`` on the single matrix, the numbers of the unbatched layer;
    * a weight per data point (``(..., B, out, in)``, the decoder called inside
      the data plate): a batched vector–matrix product.

    :param x: inputs ``(*batch, in)``.
    :param weight: ``(*sample, out, in)``.
    :param bias: ``(*sample, out)``.
    :returns: ``(*broadcast(batch, sample), out)``.
    """
    data_rank = x.dim() - 1
    weight = _with_data_position(weight, 2, data_rank)
    bias = _with_data_position(bias, 1, data_rank)
    out_shape = _broadcast_shapes(x.shape[:-1], weight.shape[:-2], bias.shape[:-1])
    out_shape = out_shape + weight.shape[-2:-1]
    if all(d == 1 for d in weight.shape[:-2]) and all(d == 1 for d in bias.shape[:-1]):
        y = F.linear(x, weight.reshape(weight.shape[-2:]), bias.reshape(bias.shape[-1:]))
        return y.reshape(out_shape)
    if weight.dim() > 2 and weight.shape[-3] == 1:  # global: one matrix product per draw
        y = torch.matmul(x, weight.squeeze(-3).transpose(-1, -2))
    else:  # a weight per data point
        y = torch.matmul(x.unsqueeze(-2), weight.transpose(-1, -2)).squeeze(-2)
    return (y + bias).expand(out_shape)


class _LayerPrior:
    """p(W) (or p(b), with ``bias=True``) of a :class:`BayesianLinear`.

    A callable object rather than a lambda or function: Pyro renames a function prior
    of a ``PyroSample`` in place, and neither survives pickling; this does, so the
    model can be deep-copied and saved whole.
    """

    def __init__(self, bias: bool = False):
        self.bias = bias

    def __call__(self, layer: BayesianLinear):
        shape = (layer.out_features,) if self.bias else (layer.out_features, layer.in_features)
        return layer.prior(shape)


class BayesianLinear(PyroModule):
    """An affine map ``x ↦ x Wᵀ + b`` with ``W`` and ``b`` drawn from ``prior``.

    :param in_features: input size.
    :param out_features: output size.
    :param prior: a weight prior module (:mod:`pyrovae.models.weight_priors`):
        ``prior(shape)`` is a distribution over a tensor of that shape.

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyro import poutine
    >>> from pyrovae.models import BayesianLinear
    >>> from pyrovae.models.weight_priors import NormalWeightPrior
    >>> pyro.set_rng_seed(0)
    >>> layer = BayesianLinear(3, 2, NormalWeightPrior(0.1))
    >>> trace = poutine.trace(layer).get_trace(torch.zeros(5, 3))
    >>> [(name, tuple(trace.nodes[name]["value"].shape)) for name in trace.stochastic_nodes]
    [('weight', (2, 3)), ('bias', (2,))]
    """

    def __init__(self, in_features: int, out_features: int, prior: nn.Module):
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.prior = prior
        self.weight = PyroSample(_LayerPrior())
        self.bias = PyroSample(_LayerPrior(bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x Wᵀ + b`` for ``x`` of shape ``(..., in_features)``.

        One draw (``W`` of shape ``(out, in)``) is ``F.linear``, bit for bit the
        point-estimate layer; draws with leading sample dimensions broadcast
        (:func:`batched_linear`).
        """
        weight, bias = self.weight, self.bias
        if weight.dim() == 2 and bias.dim() == 1:
            return F.linear(x, weight, bias)
        return batched_linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"

    @torch.no_grad()
    def initial_values(self, init: str = "default") -> dict[str, torch.Tensor]:
        """Starting values for q(θ)'s means, keyed by full site name.

        ``"default"`` is torch's ``nn.Linear`` initialisation (uniform within
        ``±1/√fan_in``, what a point-estimate decoder starts from); ``"aevb"`` is
        N(0, 0.01²).
        """
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
        device = self.prior_device()
        shapes = {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}
        bound = 1 / math.sqrt(self.in_features)
        out = {}
        for attr, shape in shapes.items():
            if init == "aevb":
                value = torch.randn(shape, device=device) * 0.01
            else:
                value = torch.empty(shape, device=device).uniform_(-bound, bound)
            out[self._pyro_get_fullname(attr)] = value
        return out

    def prior_device(self) -> torch.device:
        return next(iter(self.prior.buffers()), torch.empty(0)).device


class BayesianMLP(PyroModule[nn.Sequential]):
    """An MLP ``in → hidden… → out`` of :class:`BayesianLinear` layers (tanh etc. between).

    Laid out like :func:`pyrovae.nets.mlp` (layers at even indices,
    activations between), so its sites are named like that network's
    parameters.

    :param in_features: the latent size.
    :param hidden: hidden widths, from z towards x.
    :param out_features: the likelihood head's input size.
    :param activation: a name in :data:`pyrovae.registry.ACTIVATIONS`.
    :param prior: the weight prior shared by every layer.

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.models import BayesianMLP
    >>> from pyrovae.models.weight_priors import NormalWeightPrior
    >>> pyro.set_rng_seed(0)
    >>> decoder = BayesianMLP(2, [8], 16, "tanh", NormalWeightPrior(0.1))
    >>> decoder(torch.zeros(5, 2)).shape  # outside inference, weights drawn from the prior
    torch.Size([5, 16])
    >>> sorted(decoder.initial_values())
    ['0.bias', '0.weight', '2.bias', '2.weight']
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str,
        prior: nn.Module,
    ):
        widths = [int(in_features), *map(int, hidden), int(out_features)]
        if any(w < 1 for w in widths):
            raise ValueError(f"layer widths must be positive integers, got {widths}")
        act = registry.ACTIVATIONS.get(activation)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(BayesianLinear(a, b, prior))
            if i < len(widths) - 2:
                layers.append(act())
        super().__init__(*layers)

    @torch.no_grad()
    def _name_sites(self) -> None:
        """Run once with every site at its prior mean (no random numbers) so that Pyro
        resolves the full site names (they depend on where the module is attached)."""
        device = self.bayesian_layers()[0].prior_device()
        with poutine.block(), InitMessenger(init_to_mean):
            self(torch.zeros(1, self.bayesian_layers()[0].in_features, device=device))

    def bayesian_layers(self) -> list[BayesianLinear]:
        return [m for m in self if isinstance(m, BayesianLinear)]

    def initial_values(self, init: str = "default") -> dict[str, torch.Tensor]:
        """Starting means of every weight site, keyed by full site name (see
        :meth:`BayesianLinear.initial_values`)."""
        self._name_sites()
        out: dict[str, torch.Tensor] = {}
        for layer in self.bayesian_layers():
            out.update(layer.initial_values(init))
        return out


def bayesian_decoder(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    activation: str = "tanh",
    weight_prior: str = "normal",
    weight_prior_scale: float = 0.1,
    mixture_pi: float = 0.5,
    mixture_sigma1: float = 1.0,
    mixture_sigma2: float = BLUNDELL_SIGMA2,
) -> BayesianMLP:
    """A :class:`BayesianMLP` with the weight prior registered as ``weight_prior``
    (``"normal"``: N(0, ``weight_prior_scale``²); ``"scale-mixture"``: Blundell's
    ``mixture_pi``, ``mixture_sigma1``, ``mixture_sigma2``)."""
    values = dict(
        weight_prior_scale=weight_prior_scale,
        mixture_pi=mixture_pi,
        mixture_sigma1=mixture_sigma1,
        mixture_sigma2=mixture_sigma2,
    )
    cls = registry.WEIGHT_PRIORS.get(weight_prior)
    prior = cls(**{o.keyword: values[o.name] for o in options_of(cls)})
    return BayesianMLP(in_features, hidden, out_features, activation, prior)
