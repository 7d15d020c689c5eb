"""Convolutional encoders and decoders for images of any size and channel count.

The encoder is a stack of stride-2 convolutions followed by an MLP head; the
decoder mirrors it: an MLP from z to the smallest feature map, then stride-2
transposed convolutions back to the image size, the last one emitting the
parameter planes a likelihood head asks for (the DCGAN layout of Radford et
al. 2016, as used by the convolutional VAEs of Gulrajani et al. 2017).

Shape contract (:mod:`pyrovae.nets`): both networks read and write *flat*
rows, as every pyrovae part does: the encoder maps ``(..., C·H·W)`` to
``(..., out_features)``; the decoder maps ``(..., latent_dim)`` to
``(..., k·C·H·W)``, laid out as k blocks of one ``(C, H, W)`` image each
(the layout of :class:`~pyrovae.models.likelihoods.Likelihood` parameters,
``h.split(D, -1)``). Leading dimensions (data points, particles) are
flattened into the convolutions' batch and restored.

Every transposed convolution gets the ``output_padding`` that returns
exactly the size its encoder layer took in, so odd and non-square sizes
(Frey Face's 28 × 20, 7 × 5) round-trip without cropping.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyrovae.nets.mlp import aevb_init_, mlp
from pyrovae.registry import ACTIVATIONS

STRIDE = 2


def _padding(kernel_size: int) -> int:
    return (kernel_size - 1) // 2


def feature_sizes(
    image_size: tuple[int, int], layers: int, kernel_size: int
) -> list[tuple[int, int]]:
    """Spatial sizes through ``layers`` stride-2 convolutions: ``[(H, W), (H1, W1), ...]``.

    :raises ValueError: when a layer would leave no pixel.
    """
    sizes = [tuple(int(s) for s in image_size)]
    pad = _padding(kernel_size)
    for i in range(layers):
        h, w = ((s + 2 * pad - kernel_size) // STRIDE + 1 for s in sizes[-1])
        if h < 1 or w < 1:
            raise ValueError(
                f"{layers} stride-2 convolutions of kernel {kernel_size} shrink a "
                f"{image_size[0]}×{image_size[1]} image to nothing after layer {i + 1}; "
                "use fewer conv channels (layers) or a smaller kernel"
            )
        sizes.append((h, w))
    return sizes


def _check(shape: Sequence[int], channels: Sequence[int], kernel_size: int) -> None:
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"a conv network needs images of shape (C, H, W), got {tuple(shape)}")
    if not channels or min(int(c) for c in channels) < 1:
        raise ValueError(f"conv channels must be positive integers, got {list(channels)}")
    if int(kernel_size) < 2:
        raise ValueError(f"kernel_size must be at least 2, got {kernel_size}")


class _Flat(nn.Module):
    """Apply an image module to flat rows: ``(..., C·H·W)`` in, ``(..., F)`` out."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def images(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
        lead = x.shape[:-1]
        return x.reshape(-1, *self.shape), lead


class ConvEncoder(_Flat):
    """``x -> conv(stride 2) -> act -> ... -> flatten -> MLP(hidden) -> out_features``.

    :param shape: ``(C, H, W)`` of one image.
    :param channels: output channels of each stride-2 convolution.
    :param hidden: widths of the MLP between the last feature map and the output.
    :param out_features: outputs per image (e.g. 2 · latent_dim for a diagonal guide).
    :param kernel_size: of every convolution (padding ``(k − 1) // 2``).
    :param activation: a name in :data:`pyrovae.registry.ACTIVATIONS`.
    :param init: ``"default"`` or ``"aevb"`` (N(0, 0.01²) for every parameter).

    Example:

    >>> import torch
    >>> from pyrovae.nets import ConvEncoder
    >>> encoder = ConvEncoder((3, 12, 10), channels=[8, 16], hidden=[32], out_features=4)
    >>> encoder(torch.zeros(5, 3 * 12 * 10)).shape  # flat rows in, flat rows out
    torch.Size([5, 4])
    """

    def __init__(
        self,
        shape: Sequence[int],
        channels: Sequence[int],
        hidden: Sequence[int],
        out_features: int,
        kernel_size: int = 4,
        activation: str = "relu",
        init: str = "default",
    ):
        _check(shape, channels, kernel_size)
        super().__init__(shape)
        act = ACTIVATIONS.get(activation)
        sizes = feature_sizes(self.shape[1:], len(channels), kernel_size)
        layers: list[nn.Module] = []
        widths = [self.shape[0], *map(int, channels)]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(a, b, kernel_size, STRIDE, _padding(kernel_size)), act()]
        self.features = nn.Sequential(*layers)
        flat = widths[-1] * sizes[-1][0] * sizes[-1][1]
        self.head = mlp(flat, hidden, out_features, activation, "default")
        if init == "aevb":
            aevb_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images, lead = self.images(x)
        return self.head(self.features(images).flatten(1)).reshape(*lead, -1)


class ConvDecoder(_Flat):
    """``z -> MLP(hidden) -> act -> feature map -> transposed conv (stride 2) -> ... -> planes``.

    The mirror of :class:`ConvEncoder` with the same ``channels`` (listed from
    the image inwards, as the encoder's) and ``hidden`` (listed from z outwards).

    :param shape: ``(C, H, W)`` of one image.
    :param in_features: latent_dim.
    :param planes_per_channel: k, the parameter planes per image channel; the output
        is ``(..., k·C·H·W)``. Or, with ``planes`` given, that many planes in all.

    Example:

    >>> import torch
    >>> from pyrovae.nets import ConvDecoder
    >>> decoder = ConvDecoder((3, 12, 10), channels=[8, 16], hidden=[32], in_features=2)
    >>> decoder(torch.zeros(5, 2)).shape  # one plane per channel of a 3 × 12 × 10 image
    torch.Size([5, 360])
    """

    def __init__(
        self,
        shape: Sequence[int],
        channels: Sequence[int],
        hidden: Sequence[int],
        in_features: int,
        planes_per_channel: int = 1,
        kernel_size: int = 4,
        activation: str = "relu",
        init: str = "default",
        planes: int | None = None,
    ):
        _check(shape, channels, kernel_size)
        super().__init__(shape)
        act = ACTIVATIONS.get(activation)
        sizes = feature_sizes(self.shape[1:], len(channels), kernel_size)
        channels = [int(c) for c in channels]
        self.start = (channels[-1], *sizes[-1])
        self.head = nn.Sequential(
            mlp(in_features, hidden, channels[-1] * sizes[-1][0] * sizes[-1][1], activation),
            act(),
        )
        out_planes = int(planes) if planes is not None else planes_per_channel * self.shape[0]
        widths = [*reversed(channels), out_planes]
        pad = _padding(kernel_size)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            (h_in, w_in), (h, w) = sizes[-1 - i], sizes[-2 - i]
            natural = (
                (h_in - 1) * STRIDE - 2 * pad + kernel_size,
                (w_in - 1) * STRIDE - 2 * pad + kernel_size,
            )
            extra = (h - natural[0], w - natural[1])
            layers.append(nn.ConvTranspose2d(a, b, kernel_size, STRIDE, pad, output_padding=extra))
            if i < len(widths) - 2:
                layers.append(act())
        self.upsample = nn.Sequential(*layers)
        self.out_planes = out_planes
        if init == "aevb":
            aevb_init_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        maps = self.head(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start)
        return self.upsample(maps).reshape(*lead, -1)
