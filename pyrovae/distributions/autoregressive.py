r"""An autoregressive image likelihood: a gated PixelCNN decoder as a Pyro distribution.

A PixelCNN decoder (van den Oord et al. 2016, "Conditional Image Generation with
PixelCNN Decoders"; used as a VAE decoder by Gulrajani et al. 2017, PixelVAE)
factorises the likelihood over pixels in raster order,

.. math::

    p(x \mid s) = \prod_{i,j} p(x_{ij} \mid x_{<ij}, s),
    \qquad p(x_{ij} \mid x_{<ij}, s) = \prod_c q(x_{c,ij} \mid \theta_{c,ij}),

where ``s`` is a spatial conditioning map computed from ``z`` by the decoder
network, ``θ = f(x_{<ij}, s)`` the output of a
:class:`~pyrovae.nets.pixelcnn.GatedPixelCNN` at pixel ``(i, j)``, and ``q`` the
per-pixel distribution of a *pixelwise* likelihood head (Bernoulli, Gaussian, …).
The channels of one pixel are conditionally independent given the earlier pixels.

* :class:`AutoregressiveImage` — the distribution ``p(x | s)``: ``log_prob`` is one
  teacher-forced pass of the network; ``sample`` draws the pixels one at a time.
* :class:`Autoregressive` — the likelihood head that wraps a pixelwise head and owns
  the network; its ``out_features`` is the size of the flat conditioning map.
"""

from __future__ import annotations

import contextlib

import pyro
import torch
from pyro.distributions import TorchDistribution
from pyro.distributions.torch import Independent
from torch.distributions import constraints

from pyrovae.models.likelihoods import Likelihood
from pyrovae.nets.pixelcnn import GatedPixelCNN

_EMPTY = torch.Size()


def _check_head(head: Likelihood, shape: tuple[int, int, int]) -> int:
    """The parameters per pixel and channel of a pixelwise ``head`` for images of ``shape``."""
    if not getattr(head, "pixelwise", False):
        raise ValueError(
            f"an autoregressive likelihood needs a pixelwise head (one distribution per pixel "
            f"given its parameters); {type(head).__name__} is not"
        )
    c, h, w = shape
    if head.data_dim != c * h * w:
        raise ValueError(
            f"the head has data_dim {head.data_dim} but images of shape {tuple(shape)} have "
            f"{c * h * w} pixels"
        )
    if head.out_features % head.data_dim:
        raise ValueError(f"{type(head).__name__}.out_features is not a multiple of data_dim")
    return head.out_features // head.data_dim


def teacher_forced_params(
    net: GatedPixelCNN, cond: torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's parameters for every pixel of ``x`` in one pass, and ``x`` broadcast to them.

    :param cond: flat conditioning maps, ``(..., S·H·W)``.
    :param x: flat images, ``(..., C·H·W)``, broadcasting with ``cond``'s leading dims.
    :returns: ``(params, x)`` of shapes ``(*batch, P·C·H·W)`` (the head's layout: ``P``
        blocks of ``C·H·W``) and ``(*batch, C·H·W)``.
    """
    c, h, w = net.shape
    batch = torch.broadcast_shapes(x.shape[:-1], cond.shape[:-1])
    x = x.expand(batch + x.shape[-1:])
    cond = cond.expand(batch + cond.shape[-1:])
    out = net(x.reshape(-1, c, h, w), cond.reshape(-1, net.cond_channels, h, w))
    return out.reshape(batch + (-1,)), x


class AutoregressiveImage(TorchDistribution):
    r"""``p(x | s) = ∏_{ij} p(x_ij | x_<ij, s)``, a gated PixelCNN over flat images.

    :param net: the network giving each pixel's parameters from the earlier pixels and ``s``.
    :param head: a pixelwise likelihood head (``head.pixelwise``) with ``data_dim = C·H·W``;
        its distribution of the network's output is ``p(x_ij | x_<ij, s)`` at each pixel.
    :param cond: the flat conditioning maps ``s``, ``(..., S·H·W)``, each ``(S, H, W)``
        flattened; the leading dims are the batch shape.
    :param shape: ``(C, H, W)`` of the images; the event shape is ``(C·H·W,)``.

    ``log_prob`` costs one pass of the network. ``sample`` (no gradients) costs one
    vertical pass, advanced a row at a time, and per pixel a horizontal pass over at most
    ``R + 1`` columns of its row (:meth:`GatedPixelCNN.pixel`), plus the head on ``D``
    values per pixel: for 64 images of 28×28 at the default sizes, about 8 full passes.

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.distributions import Autoregressive
    >>> from pyrovae.models import Bernoulli
    >>> pyro.set_rng_seed(0)
    >>> head = Autoregressive(Bernoulli(16), (1, 4, 4), cond_channels=2, channels=4, layers=1)
    >>> p = head(torch.zeros(5, head.out_features))  # an AutoregressiveImage
    >>> x = p.sample()  # pixel by pixel
    >>> x.shape, p.log_prob(x).shape
    (torch.Size([5, 16]), torch.Size([5]))
    """

    arg_constraints = {"cond": constraints.real_vector}
    has_rsample = False

    def __init__(
        self,
        net: GatedPixelCNN,
        head: Likelihood,
        cond: torch.Tensor,
        shape: tuple[int, int, int],
        validate_args: bool | None = None,
    ):
        shape = tuple(int(n) for n in shape)
        if shape != net.shape:
            raise ValueError(f"shape {shape} differs from the network's {net.shape}")
        self.params_per_channel = _check_head(head, shape)
        if self.params_per_channel != net.params_per_channel:
            raise ValueError(
                f"the head needs {self.params_per_channel} parameters per pixel and channel, "
                f"the network gives {net.params_per_channel}"
            )
        c, h, w = shape
        if cond.dim() < 1 or cond.shape[-1] != net.cond_channels * h * w:
            raise ValueError(
                f"cond must have {net.cond_channels}·{h}·{w} = {net.cond_channels * h * w} "
                f"features in its last dim, got shape {tuple(cond.shape)}"
            )
        self.net, self.head, self.cond, self.image_shape = net, head, cond, shape
        super().__init__(cond.shape[:-1], torch.Size([c * h * w]), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> AutoregressiveImage:
        new = self._get_checked_instance(AutoregressiveImage, _instance)
        batch_shape = torch.Size(batch_shape)
        new.net, new.head, new.image_shape = self.net, self.head, self.image_shape
        new.params_per_channel = self.params_per_channel
        new.cond = self.cond.expand(batch_shape + self.cond.shape[-1:])
        super(AutoregressiveImage, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @classmethod
    def infer_shapes(cls, **arg_shapes):
        """Not inferable: the event shape is the image ``shape`` argument's value, not an
        argument's shape (as for Pyro's ``LKJ``)."""
        raise NotImplementedError

    def _heads_validate(self) -> contextlib.AbstractContextManager:
        """The head's distributions validate as this one does: off if it was built with
        ``validate_args=False``, else as the global flag says."""
        if self._validate_args:
            return contextlib.nullcontext()
        return pyro.validation_enabled(False)

    @property
    def support(self) -> constraints.Constraint:
        """The support of the head's distribution, e.g. ``independent(boolean, 1)``."""
        return self.head(self.cond.new_zeros(1, self.head.out_features)).support

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``Σ_ij log p(x_ij | x_<ij, s)`` by teacher forcing: one pass of the network.

        :param value: flat images ``(..., C·H·W)`` broadcasting with the batch shape.
        """
        if self._validate_args and value.shape[-1:] != self.event_shape:
            raise ValueError(
                f"value has event shape {tuple(value.shape[-1:])}, "
                f"expected {tuple(self.event_shape)}"
            )
        params, value = teacher_forced_params(self.net, self.cond, value)
        with self._heads_validate():
            return self.head.log_prob(params, value)

    def sample(self, sample_shape: torch.Size = _EMPTY) -> torch.Tensor:
        """Ancestral sampling in raster order, all channels of a pixel at once."""
        return self._ancestral(sample_shape)[0]

    def sample_with_log_prob(
        self, sample_shape: torch.Size = _EMPTY
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A sample and ``Σ_ij log p(x_ij | x_<ij, s)`` from the parameters that drew it.

        The second output equals ``log_prob`` of the first (a check of the sampler).
        """
        x, log_prob, _ = self._ancestral(sample_shape)
        return x, log_prob

    def conditional_means(self, sample_shape: torch.Size = _EMPTY) -> torch.Tensor:
        r"""The conditional means along one ancestral sample: ``E[x_ij | x̃_<ij, s]`` at each pixel.

        ``x̃`` is drawn pixel by pixel as in :meth:`sample`; at each pixel the head's mean
        given the previously *sampled* pixels is stored and the drawn value is kept. This
        is random, and it is not ``E[x | s]``, which has no closed form; it shows the
        model's expectation at each step of one generated image (a "mean image" of
        PixelCNN decoders without their sampling noise at the pixel itself).
        """
        return self._ancestral(sample_shape)[2]

    @property
    def mean(self) -> torch.Tensor:
        """:meth:`conditional_means` of one ancestral sample (``E[x]`` is intractable)."""
        return self.conditional_means()

    def _ancestral(
        self, sample_shape: torch.Size = _EMPTY
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with self._heads_validate():
            return self._draw(sample_shape)

    @torch.no_grad()
    def _draw(
        self, sample_shape: torch.Size = _EMPTY
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, Σ log p(x_ij | x_<ij), conditional means)`` of one ancestral pass."""
        shape = self._extended_shape(sample_shape)
        c, h, w = self.image_shape
        n = shape[:-1].numel()
        cond = self.cond.expand(shape[:-1] + self.cond.shape[-1:])
        cond = cond.reshape(n, self.net.cond_channels, h, w)
        x = cond.new_zeros(n, c, h, w)
        means = torch.zeros_like(x)
        params = cond.new_zeros(n, self.params_per_channel, c, h, w)
        log_prob = cond.new_zeros(n)
        rows = self.net.vertical_rows(x, cond)  # reads row i - 1 of x when row i is drawn
        for i, contexts in enumerate(rows):
            for j in range(w):
                params[..., i, j] = self.net.pixel(x, contexts, i, j).view(n, -1, c)
                flat = params.view(n, -1)
                base = _pixelwise_base(self.head(flat))
                x[:, :, i, j] = base.sample().view(n, c, h, w)[:, :, i, j]
                means[:, :, i, j] = self.head.mean(flat).view(n, c, h, w)[:, :, i, j]
                pixel_lp = base.log_prob(x.view(n, -1)).view(n, c, h, w)[:, :, i, j]
                log_prob += pixel_lp.sum(-1)
        return x.view(shape), log_prob.view(shape[:-1]), means.view(shape)


def _pixelwise_base(d: TorchDistribution) -> TorchDistribution:
    """The per-pixel distribution of a pixelwise head's ``Independent(base, 1)``."""
    if not (isinstance(d, Independent) and d.reinterpreted_batch_ndims == 1):
        raise TypeError(f"a pixelwise head must return Independent(base, 1), got {type(d)}")
    return d.base_dist


class Autoregressive(Likelihood):
    """A PixelCNN likelihood around a pixelwise head: ``p(x | z) = ∏ p(x_ij | x_<ij, s(z))``.

    The decoder network maps ``z`` to the flat conditioning map ``s`` (``out_features =
    cond_channels·H·W`` numbers, an ``(S, H, W)`` map flattened); the
    :class:`~pyrovae.nets.pixelcnn.GatedPixelCNN` owned by this head turns ``s`` and the
    earlier pixels into the parameters of ``head`` at each pixel (location-dependent
    conditioning, van den Oord et al. 2016, section 2.3; the PixelVAE decoder of
    Gulrajani et al. 2017).

    :param head: a pixelwise head (``head.pixelwise``: Bernoulli, the Gaussians with fixed,
        shared, learned or bounded σ); its ``data_dim`` must be ``C·H·W``.
    :param shape: ``(C, H, W)`` of the images.
    :param cond_channels: ``S``, the channels of the conditioning map.
    :param channels: channels of the :class:`GatedPixelCNN`'s stacks.
    :param layers: gated layers of the :class:`GatedPixelCNN` after the first.
    :param kernel_size: kernel size of the :class:`GatedPixelCNN`, odd and ``>= 3``.
    :raises ValueError: for a head that is not pixelwise (e.g. BAGGINS, whose σ² is the
        batch's).

    Example:

    >>> import pyro
    >>> import torch
    >>> from pyrovae.distributions import Autoregressive
    >>> from pyrovae.models import VAE, Bernoulli
    >>> pyro.set_rng_seed(0)
    >>> head = Autoregressive(Bernoulli(16), (1, 4, 4), cond_channels=2, channels=4, layers=1)
    >>> head.out_features  # the decoder emits an (S, H, W) = (2, 4, 4) conditioning map
    32
    >>> model = VAE(16, latent_dim=2, hidden=[8], likelihood=head)
    >>> model.sample(3).shape
    torch.Size([3, 16])
    """

    #: ``mean(h)`` is the conditional means along one ancestral sample, not E[x | z]
    exact_mean = False

    def __init__(
        self,
        head: Likelihood,
        shape: tuple[int, int, int],
        cond_channels: int = 8,
        channels: int = 32,
        layers: int = 5,
        kernel_size: int = 5,
    ):
        if len(shape) != 3:
            raise ValueError(f"shape must be (C, H, W), got {tuple(shape)!r}")
        shape = tuple(int(n) for n in shape)
        params = _check_head(head, shape)
        super().__init__(head.data_dim)
        self.head = head
        self.shape = shape
        self.net = GatedPixelCNN(shape, params, cond_channels, channels, layers, kernel_size)

    @property
    def out_features(self) -> int:
        """``cond_channels·H·W``: the flat conditioning map the decoder network emits."""
        _, h, w = self.shape
        return self.net.cond_channels * h * w

    @property
    def requires_binary(self) -> bool:
        return self.head.requires_binary

    def forward(self, h: torch.Tensor) -> AutoregressiveImage:
        return AutoregressiveImage(self.net, self.head, h, self.shape)

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        params, x = teacher_forced_params(self.net, h, x)
        return self.head.log_prob(params, x)

    def mean(self, h: torch.Tensor) -> torch.Tensor:
        """:meth:`AutoregressiveImage.conditional_means`: random, not ``E[x | z]``."""
        return self(h).conditional_means()

    def fit_to_data(
        self, model, guide, train: torch.Tensor, *, evaluation: bool = False, batch_size: int = 1000
    ) -> None:
        self.head.fit_to_data(model, guide, train, evaluation=evaluation, batch_size=batch_size)

    def check_data(self, x: torch.Tensor) -> None:
        self.head.check_data(x)
