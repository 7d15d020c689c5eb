"""Multi-layer perceptrons for encoders and decoders.

``mlp(in_features, hidden, out_features, activation, init)`` builds the
networks of Kingma & Welling (2013): affine layers with a nonlinearity
between them and none after the last. ``init="aevb"`` draws every weight and
bias from N(0, 0.01²), the initialisation of the paper's section 5;
``init="default"`` keeps torch's (Kaiming-uniform) initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyrovae.options import Option
from pyrovae.registry import ACTIVATIONS

INITS = ("default", "aevb")

#: the options of the MLP networks (encoder and decoder), read by the VAE and the guides
HIDDEN = Option(
    "hidden",
    [400],
    "Hidden widths, encoder side (the decoder mirrors them), comma-separated.",
    type=list,
    low=1,
)
ACTIVATION = Option("activation", "tanh", "Hidden nonlinearity.", choices=ACTIVATIONS.names)
INIT = Option(
    "init", "default", "Weight init: torch's default or AEVB's N(0, 0.01²).", choices=INITS
)
OPTIONS = (HIDDEN, ACTIVATION, INIT)


def _check_sizes(in_features: int, hidden: Sequence[int], out_features: int) -> None:
    for what, n in [("input size", in_features), ("output size", out_features)]:
        if int(n) <= 0:
            raise ValueError(f"{what} must be a positive integer, got {n}")
    for n in hidden:
        if int(n) <= 0:
            raise ValueError(f"hidden widths must be positive integers, got {list(hidden)}")


def mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    activation: str = "tanh",
    init: str = "default",
) -> nn.Sequential:
    """An MLP ``in_features -> hidden[0] -> ... -> hidden[-1] -> out_features``.

    :param hidden: widths of the hidden layers; empty gives one affine map.
    :param activation: a name in :data:`pyrovae.registry.ACTIVATIONS`, applied after every
        hidden layer and never after the output layer.
    :param init: ``"default"`` (torch's) or ``"aevb"`` (N(0, 0.01²) for
        weights and biases, Kingma & Welling 2013, section 5).

    Example:

    >>> from pyrovae.nets import mlp
    >>> mlp(784, [400], 40, activation="tanh")
    Sequential(
      (0): Linear(in_features=784, out_features=400, bias=True)
      (1): Tanh()
      (2): Linear(in_features=400, out_features=40, bias=True)
    )
    """
    _check_sizes(in_features, hidden, out_features)
    act = ACTIVATIONS.get(activation)
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    widths = [int(in_features), *map(int, hidden), int(out_features)]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(act())
    net = nn.Sequential(*layers)
    if init == "aevb":
        aevb_init_(net)
    return net


@torch.no_grad()
def aevb_init_(module: nn.Module, std: float = 0.01) -> nn.Module:
    """Draw every parameter of ``module`` from N(0, std²) in place (AEVB, section 5)."""
    for p in module.parameters():
        p.normal_(0.0, std)
    return module
