"""Network parts: the bodies of the encoder and the decoder, chosen independently.

The ``encoder`` option chooses q(z|x)'s network (:data:`pyrovae.registry.ENCODERS`),
the ``decoder`` option p(x|z)'s (:data:`pyrovae.registry.DECODERS`):

============  =======  =======  ==============================================================
name          encoder  decoder  network
============  =======  =======  ==============================================================
``mlp``       yes      yes      an MLP of ``hidden`` widths (Kingma & Welling 2013)
``conv``      yes      yes      stride-2 convolutions of ``conv_channels``, then an MLP of
                                ``hidden``; the decoder mirrors it with transposed convolutions
``pixelcnn``  no       yes      a conv decoder to a conditioning map, and a gated PixelCNN over
                                the pixels (van den Oord et al. 2016; Gulrajani et al. 2017)
============  =======  =======  ==============================================================

A network part has two static methods (either may be missing), and ``needs_images``
(the data must have an image shape; checked when the data is loaded):

* ``encoder(config, shape, out_features) -> nn.Module`` — maps flat data rows
  ``(..., D)`` with ``D = prod(shape)`` to ``(..., out_features)``;
* ``decoder(config, latent_dim, shape, likelihood) -> (nn.Module, Likelihood)`` —
  maps ``(..., latent_dim)`` to ``(..., likelihood.out_features)`` of the likelihood
  it returns: the one it was given, or (PixelCNN) a wrapper around it.

``shape`` is the data's :attr:`~pyrovae.data.Dataset.shape`: ``(C, H, W)`` for images,
``(D,)`` for a table. The Python API takes any ``nn.Module`` with the same contract
(``AmortizedGuide(..., encoder=net)``, ``VAE(..., decoder=net)``). How the decoder's
weights are treated (point estimates or full variational Bayes) is the separate
``weights`` option (:mod:`pyrovae.weights`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from pyrovae.options import ConfigError, Needs, Option

CONV_CHANNELS = Option(
    "conv_channels",
    [32, 64],
    "Conv networks: output channels of each stride-2 convolution, from the image inwards "
    "(the decoder mirrors them).",
    type=list,
    low=1,
)
KERNEL_SIZE = Option("kernel_size", 4, "Conv networks: kernel size of every convolution.", low=2)
PIXELCNN_LAYERS = Option("pixelcnn_layers", 5, "PixelCNN decoder: gated layers.", low=1)
PIXELCNN_CHANNELS = Option(
    "pixelcnn_channels", 32, "PixelCNN decoder: channels of each gated layer.", low=1
)
PIXELCNN_KERNEL = Option(
    "pixelcnn_kernel", 5, "PixelCNN decoder: (odd) kernel size of the gated layers.", low=3
)
PIXELCNN_COND = Option(
    "pixelcnn_cond_channels",
    8,
    "PixelCNN decoder: channels of the conditioning map the conv decoder makes from z.",
    low=1,
)


def _images(shape: Sequence[int], who: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ConfigError(
            f"the {who} network needs images, but this data is rows of {math.prod(shape)} "
            "numbers with no image shape; use --encoder mlp --decoder mlp, or give the "
            "image shape of the data"
        )
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def _conv_sizes_error(e: ValueError) -> ConfigError:
    return ConfigError(str(e).replace("conv channels", "--conv-channels"))


def _conv_decoder(config: Any, image: tuple[int, int, int], latent_dim: int, **planes) -> nn.Module:
    """The conv decoder the options describe; ``planes``: its output planes (see ConvDecoder)."""
    from pyrovae.nets.conv import ConvDecoder

    try:
        return ConvDecoder(
            image,
            config.conv_channels,
            list(reversed(config.hidden)),
            latent_dim,
            kernel_size=config.kernel_size,
            activation=config.activation,
            init=config.init,
            **planes,
        )
    except ValueError as e:
        raise _conv_sizes_error(e) from None


class MLP:
    """Multi-layer perceptrons (:func:`pyrovae.nets.mlp`): ``hidden`` widths, encoder side;
    the decoder mirrors them. Reads any data shape (it flattens).

    Example:

    >>> import torch
    >>> from pyrovae.config import RunConfig
    >>> from pyrovae.models import Bernoulli
    >>> from pyrovae.networks import MLP
    >>> config = RunConfig(hidden=[32, 16])
    >>> encoder = MLP.encoder(config, (1, 8, 8), out_features=4)  # 64 → 32 → 16 → 4
    >>> encoder(torch.zeros(5, 64)).shape
    torch.Size([5, 4])
    >>> decoder, head = MLP.decoder(config, 2, (1, 8, 8), Bernoulli(64))  # 2 → 16 → 32 → 64
    >>> decoder(torch.zeros(5, 2)).shape
    torch.Size([5, 64])
    """

    options: tuple[Option, ...] = ()
    #: reads flat rows of any data: images or tables
    needs_images = False

    @staticmethod
    def encoder(config: Any, shape: Sequence[int], out_features: int) -> nn.Module:
        from pyrovae.nets import mlp

        return mlp(math.prod(shape), config.hidden, out_features, config.activation, config.init)

    @staticmethod
    def decoder(config: Any, latent_dim: int, shape: Sequence[int], likelihood) -> tuple:
        from pyrovae.nets import mlp

        hidden = list(reversed(config.hidden))
        net = mlp(latent_dim, hidden, likelihood.out_features, config.activation, config.init)
        return net, likelihood


class Conv:
    """Stride-2 convolutions of ``conv_channels`` and an MLP of ``hidden``
    (:mod:`pyrovae.nets.conv`); the decoder mirrors them. Needs images.

    Example:

    >>> import torch
    >>> from pyrovae.config import RunConfig
    >>> from pyrovae.models import GaussianLearned
    >>> from pyrovae.networks import Conv
    >>> config = RunConfig(conv_channels=[8, 16], hidden=[32])
    >>> Conv.encoder(config, (1, 8, 8), out_features=4)(torch.zeros(5, 64)).shape
    torch.Size([5, 4])
    >>> decoder, head = Conv.decoder(config, 2, (1, 8, 8), GaussianLearned(64))
    >>> decoder(torch.zeros(5, 2)).shape  # two planes per channel: means and log-variances
    torch.Size([5, 128])
    """

    options = (CONV_CHANNELS, KERNEL_SIZE)
    #: the data must be images, (C, H, W) (:func:`pyrovae.data.check_run_data`)
    needs_images = True

    @staticmethod
    def encoder(config: Any, shape: Sequence[int], out_features: int) -> nn.Module:
        from pyrovae.nets.conv import ConvEncoder

        image = _images(shape, "conv encoder")
        try:
            return ConvEncoder(
                image,
                config.conv_channels,
                config.hidden,
                out_features,
                config.kernel_size,
                config.activation,
                config.init,
            )
        except ValueError as e:
            raise _conv_sizes_error(e) from None

    @staticmethod
    def decoder(config: Any, latent_dim: int, shape: Sequence[int], likelihood) -> tuple:
        image = _images(shape, "conv decoder")
        if likelihood.out_features % likelihood.data_dim:
            raise ConfigError(
                f"the conv decoder emits whole image planes, and the {type(likelihood).__name__} "
                "likelihood's parameters are not; use --decoder mlp"
            )
        per_channel = likelihood.out_features // likelihood.data_dim
        return _conv_decoder(config, image, latent_dim, planes_per_channel=per_channel), likelihood


class PixelCNN:
    """A gated PixelCNN over the pixels, conditioned on a map the conv decoder makes from z.

    The likelihood p(x|z) = Π_i p(x_i | x_<i, z) is autoregressive in raster
    order (:class:`~pyrovae.distributions.autoregressive.Autoregressive`); each
    conditional is the chosen pixelwise likelihood (bernoulli for binary data;
    a Gaussian head for grey). Scoring is one teacher-forced pass; sampling and
    "means" go pixel by pixel (H·W passes). With such a decoder the ELBO optimum
    can leave z unused; β and the prior decide how much the code carries (Chen et
    al. 2017; Alemi et al. 2018).

    Example:

    >>> import torch
    >>> from pyrovae.config import RunConfig
    >>> from pyrovae.models import Bernoulli
    >>> from pyrovae.networks import PixelCNN
    >>> config = RunConfig(
    ...     conv_channels=[8], hidden=[16], pixelcnn_layers=1, pixelcnn_channels=8,
    ...     pixelcnn_cond_channels=2,
    ... )
    >>> decoder, head = PixelCNN.decoder(config, 2, (1, 8, 8), Bernoulli(64))
    >>> type(head).__name__, head.out_features  # the conv decoder emits a (2, 8, 8) map
    ('Autoregressive', 128)
    >>> decoder(torch.zeros(5, 2)).shape
    torch.Size([5, 128])
    """

    options = (
        CONV_CHANNELS,
        KERNEL_SIZE,
        PIXELCNN_LAYERS,
        PIXELCNN_CHANNELS,
        PIXELCNN_KERNEL,
        PIXELCNN_COND,
    )
    needs_images = True
    needs = (
        Needs(
            "likelihood",
            (
                "auto",
                "bernoulli",
                "gaussian-fixed",
                "mse",
                "gaussian-shared",
                "bounded-gaussian",
                "gaussian-learned",
            ),
            "its conditionals are one pixel's likelihood, and BAGGINS scores whole batches",
            "choose a pixelwise likelihood (bernoulli, gaussian-fixed, bounded-gaussian, ...)",
        ),
    )

    @staticmethod
    def check_options(pixelcnn_kernel: int, **_: Any) -> str | None:
        if pixelcnn_kernel % 2 == 0:
            return f"pixelcnn_kernel must be odd, got {pixelcnn_kernel}"
        return None

    @staticmethod
    def decoder(config: Any, latent_dim: int, shape: Sequence[int], likelihood) -> tuple:
        from pyrovae.distributions.autoregressive import Autoregressive

        image = _images(shape, "pixelcnn decoder")
        try:
            wrapped = Autoregressive(
                likelihood,
                image,
                cond_channels=config.pixelcnn_cond_channels,
                channels=config.pixelcnn_channels,
                layers=config.pixelcnn_layers,
                kernel_size=config.pixelcnn_kernel,
            )
        except ValueError as e:
            raise ConfigError(f"pixelcnn decoder: {e}") from None
        net = _conv_decoder(config, image, latent_dim, planes=config.pixelcnn_cond_channels)
        return net, wrapped
