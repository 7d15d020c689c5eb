r"""A gated PixelCNN (van den Oord et al. 2016) conditioned on a spatial map.

:class:`GatedPixelCNN` maps images ``x`` of shape ``(N, C, H, W)`` and a
conditioning map ``s`` of shape ``(N, S, H, W)`` to the parameters of
``p(x_ij | x_<ij, s)`` at every pixel, with the autoregressive property that
the output at pixel ``(i, j)`` depends on ``x`` only at pixels strictly before
``(i, j)`` in raster order. One pass therefore scores a whole image (teacher
forcing), and sampling draws the pixels one at a time.

**Architecture** (van den Oord et al. 2016, "Conditional Image Generation with
PixelCNN Decoders", sections 2.1–2.3). Every layer keeps two stacks:

* the *vertical* stack ``v``, whose convolution of kernel ``(p+1) × k``
  (``p = k // 2``) sees the rows ``i-p..i`` of the layer below, columns
  ``j-p..j+p``;
* the *horizontal* stack ``h``, whose convolution of kernel ``1 × (p+1)`` sees
  the columns ``j-p..j`` of the same row (``j-p..j-1`` in the first layer,
  mask type A, which must not see the pixel itself).

The vertical pre-activation, *shifted down one row*, is added to the
horizontal one through a 1×1 convolution: the horizontal stack then sees every
row above, including the pixels above-right of ``(i, j)`` that a masked
``k × k`` convolution stack misses (the "blind spot", section 2.2). Each stack
applies the gated activation unit with location-dependent conditioning
(eq. 5, ``s = m(h)``)

.. math::

    y = \tanh(W_f * x + V_f * s) \odot \sigma(W_g * x + V_g * s),

``V * s`` a 1×1 convolution of the conditioning map; the horizontal stack adds
a 1×1 convolution of ``y`` to its input (a residual connection; not in the
first layer, whose input is the image). Two 1×1 convolutions with ReLUs
(``ReLU → 1×1 → ReLU → 1×1``) produce the outputs.

All convolutions are made causal by padding and cropping (shifts), not by
masked weights: every layer is *row causal* (output rows ``≤ i`` depend only on
input rows ``≤ i``), so running the network on the first ``i + 1`` rows gives
exactly the first ``i + 1`` rows of the full output. Sampling uses more of the
structure (:meth:`GatedPixelCNN.vertical_rows`, :meth:`GatedPixelCNN.pixel`):
the horizontal stack of row ``i`` sees the rows above only through the
vertical stack's *context* (the shifted link plus ``V * s``), which is final
once row ``i - 1`` is, so the vertical stack advances one row per image row
(one full vertical pass per sample in all); and within the row the horizontal
stack is column causal with a reach of ``R`` columns (below), so pixel
``(i, j)`` costs one horizontal pass over columns ``j - R .. j`` of one row.

**Channels.** The ``C`` channels of a pixel are conditionally independent
given the previous pixels: every output plane at ``(i, j)`` sees all channels
of the earlier pixels and none of pixel ``(i, j)``. This is a valid
autoregressive order (pixels in raster order, the channels of one pixel
jointly) but simpler than the paper's R → G → B order inside a pixel.

**Receptive field.** With ``L = layers`` gated layers after the first and
``R = (L + 1) p``, the output at ``(i, j)`` depends on exactly the pixels

.. math::

    \{(i, j') : j - R \le j' \le j - 1\} \;\cup\;
    \{(i', j') : i - 1 - R \le i' \le i - 1,\ |j' - j| \le R\}

inside the image, all channels: ``R`` pixels to the left in the same row and
a ``(R + 1) × (2R + 1)`` block of the rows above, with no blind spot.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


def _down(t: torch.Tensor) -> torch.Tensor:
    """Shift the rows of ``t`` (…, H, W) down by one, zeros on top: ``out[i] = t[i - 1]``."""
    return F.pad(t, (0, 0, 1, 0))[..., :-1, :]


def _gate(t: torch.Tensor) -> torch.Tensor:
    """The gated activation unit ``tanh(a) ⊙ σ(b)`` of the two halves of the channels."""
    a, b = t.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer with a vertical and a horizontal stack (van den Oord et al. 2016, fig. 2).

    :param in_channels: channels of the layer below (the image's ``C`` in the first layer).
    :param channels: channels of both stacks after the gate.
    :param cond_channels: channels of the conditioning map.
    :param kernel_size: ``k``, odd; the vertical kernel is ``(k//2 + 1) × k``.
    :param mask_a: the first layer: the horizontal stack does not see the pixel itself
        (kernel ``1 × k//2`` over columns ``j-p..j-1``) and has no residual connection.
    :param vertical_output: False for the last layer, whose vertical stack only feeds
        its own horizontal stack (no gate, no ``V * s`` there).

    Example:

    >>> from pyrovae.nets import GatedPixelCNN
    >>> net = GatedPixelCNN((1, 6, 6), params_per_channel=1, cond_channels=2, channels=8, layers=2)
    >>> [layer.mask_a for layer in net.layers]  # the first layer does not see the pixel itself
    [True, False, False]
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        cond_channels: int,
        kernel_size: int,
        mask_a: bool = False,
        vertical_output: bool = True,
    ):
        super().__init__()
        p = kernel_size // 2
        self.p = p
        self.mask_a = mask_a
        self.v_conv = nn.Conv2d(in_channels, 2 * channels, (p + 1, kernel_size))
        self.h_conv = nn.Conv2d(in_channels, 2 * channels, (1, p if mask_a else p + 1))
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)
        # V_f and V_g, stacked, of each stack
        self.v_cond = nn.Conv2d(cond_channels, 2 * channels, 1) if vertical_output else None
        self.h_cond = nn.Conv2d(cond_channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)

    def vertical_pre(self, v: torch.Tensor) -> torch.Tensor:
        """``W * v``, the vertical convolution over rows ``i-p..i``, columns ``j-p..j+p``."""
        return self.v_conv(F.pad(v, (self.p, self.p, self.p, 0)))

    def vertical_out(self, pre: torch.Tensor, cond: torch.Tensor) -> torch.Tensor | None:
        """``gate(W * v + V * s)``, the next layer's input; ``None`` in the last layer."""
        return None if self.v_cond is None else _gate(pre + self.v_cond(cond))

    def context(self, pre_above: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """What the horizontal stack adds from outside its row: ``1×1(↓(W * v)) + V * s``.

        :param pre_above: :meth:`vertical_pre` shifted down one row (row ``i`` holds row
            ``i - 1``, zeros in row 0): the rows strictly above.
        """
        return self.link(pre_above) + self.h_cond(cond)

    def horizontal(self, h: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The horizontal stack: ``h + 1×1(gate(W * h + context))`` (no ``h +`` if mask A)."""
        pre = self.h_conv(F.pad(h, (self.p, 0)))
        if self.mask_a:
            pre = pre[..., :-1]  # output j sees input columns j-p..j-1
        out = self.h_out(_gate(pre + context))
        return out if self.mask_a else h + out


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


class GatedPixelCNN(nn.Module):
    """A gated PixelCNN without blind spot, conditioned on a spatial map (module docstring).

    :param shape: ``(C, H, W)`` of the images.
    :param params_per_channel: ``P``, the parameters of each channel's conditional
        (1 for a Bernoulli's logit, 2 for a Gaussian's mean and scale).
    :param cond_channels: ``S``, the channels of the conditioning map ``s`` (``V * s``).
    :param channels: channels of the vertical and horizontal stacks.
    :param layers: ``L``, the gated layers after the first (mask A) one.
    :param kernel_size: ``k``, odd and ``>= 3``.

    Output planes: ``out.view(N, P, C, H, W)[:, j, c]`` is parameter ``j`` of channel ``c``.

    Example:

    Row causality: the first rows of the output depend on the first rows of the image alone.

    >>> import pyro
    >>> import torch
    >>> from pyrovae.nets import GatedPixelCNN
    >>> pyro.set_rng_seed(0)
    >>> net = GatedPixelCNN((1, 6, 6), params_per_channel=1, cond_channels=2, channels=8, layers=2)
    >>> x, cond = torch.rand(1, 1, 6, 6), torch.randn(1, 2, 6, 6)
    >>> out = net(x, cond)
    >>> out.shape
    torch.Size([1, 1, 6, 6])
    >>> torch.allclose(net(x[:, :, :3], cond[:, :, :3]), out[:, :, :3], atol=1e-6)
    True
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        params_per_channel: int,
        cond_channels: int,
        channels: int = 32,
        layers: int = 5,
        kernel_size: int = 5,
    ):
        super().__init__()
        if len(shape) != 3:
            raise ValueError(f"shape must be (C, H, W), got {tuple(shape)!r}")
        self.shape = tuple(_check_int("each of shape (C, H, W)", n, 1) for n in shape)
        self.params_per_channel = _check_int("params_per_channel", params_per_channel, 1)
        self.cond_channels = _check_int("cond_channels", cond_channels, 1)
        channels = _check_int("channels", channels, 1)
        layers = _check_int("layers", layers, 0)
        kernel_size = _check_int("kernel_size", kernel_size, 3)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        c = self.shape[0]
        self.layers = nn.ModuleList(
            GatedLayer(
                channels if k else c,
                channels,
                cond_channels,
                kernel_size,
                mask_a=k == 0,
                vertical_output=k < layers,
            )
            for k in range(layers + 1)
        )
        self.output = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
            nn.ReLU(),
            nn.Conv2d(channels, self.params_per_channel * c, 1),
        )

    @property
    def receptive_radius(self) -> int:
        """``R = (L + 1) · (k // 2)``: how far the output at a pixel sees (module docstring)."""
        return len(self.layers) * (self.kernel_size // 2)

    def _check(self, x: torch.Tensor, cond: torch.Tensor) -> None:
        c, h, w = self.shape
        if x.dim() != 4 or x.shape[1] != c or x.shape[2] > h or x.shape[3] != w:
            raise ValueError(f"x must be (N, {c}, <= {h}, {w}), got {tuple(x.shape)}")
        if cond.shape != (x.shape[0], self.cond_channels, *x.shape[2:]):
            raise ValueError(
                f"cond must be (N, {self.cond_channels}, H, W) like x {tuple(x.shape)}, "
                f"got {tuple(cond.shape)}"
            )

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Parameters of ``p(x_ij | x_<ij, s)`` at every pixel, ``(N, P·C, H, W)``.

        :param x: images ``(N, C, H, W)``; the first ``r`` rows alone give exactly the
            first ``r`` rows of the output (row causality).
        :param cond: the conditioning map ``s``, ``(N, S, H, W)``, cropped like ``x``.
        """
        self._check(x, cond)
        return self.horizontal(x, self.vertical(x, cond))

    def vertical(self, x: torch.Tensor, cond: torch.Tensor) -> list[torch.Tensor]:
        """The vertical stack's contexts (:meth:`GatedLayer.context`), one per layer.

        Each is ``(N, 2·channels, H, W)``; its row ``i`` depends on ``x`` at rows ``< i``
        only (and on ``s`` at row ``i``).
        """
        v, contexts = x, []
        for layer in self.layers:
            pre = layer.vertical_pre(v)
            contexts.append(layer.context(_down(pre), cond))
            v = layer.vertical_out(pre, cond)
        return contexts

    def vertical_rows(self, x: torch.Tensor, cond: torch.Tensor) -> Iterator[list[torch.Tensor]]:
        """:meth:`vertical` one row at a time, for sampling: yields the contexts of row ``i``.

        The ``i``-th item equals ``[c[:, :, i : i + 1] for c in self.vertical(x, cond)]``,
        computed incrementally (each layer's input rows are kept), so all rows together
        cost one vertical pass. ``x`` is read lazily: row ``i - 1`` when row ``i`` is
        requested, so the caller may fill ``x`` in place, row by row, while iterating.
        """
        self._check(x, cond)
        n, _, h, w = x.shape
        p = self.kernel_size // 2
        # each layer's vertical input, padded p rows on top and p columns on each side
        inputs = [
            x.new_zeros(n, layer.v_conv.in_channels, p + h, w + 2 * p) for layer in self.layers
        ]
        above = [
            x.new_zeros(n, layer.v_conv.out_channels, 1, w) for layer in self.layers
        ]  # ↓(W * v) of row 0
        for i in range(h):
            row = cond[:, :, i : i + 1]
            yield [layer.context(a, row) for layer, a in zip(self.layers, above)]
            if i == h - 1:
                return
            inputs[0][:, :, p + i, p : p + w] = x[:, :, i]
            for k, layer in enumerate(self.layers):
                above[k] = layer.v_conv(inputs[k][:, :, i : i + p + 1])  # rows i-p..i
                out = layer.vertical_out(above[k], row)
                if out is not None:
                    inputs[k + 1][:, :, p + i, p : p + w] = out[:, :, 0]

    def horizontal(self, x: torch.Tensor, contexts: list[torch.Tensor]) -> torch.Tensor:
        """The horizontal stack and the output layers, given :meth:`vertical`'s contexts.

        Row by row and column causal with a reach of ``R`` columns: on columns
        ``[j - R : j + 1]`` of a row (``x`` and the contexts cropped alike) the last
        output column is exactly column ``j`` of the full output.
        """
        h = x
        for layer, context in zip(self.layers, contexts):
            h = layer.horizontal(h, context)
        return self.output(h)

    def pixel(self, x: torch.Tensor, contexts: list[torch.Tensor], i: int, j: int) -> torch.Tensor:
        """The output at pixel ``(i, j)`` alone, ``(N, P·C)``, from one row segment.

        Layer ``k`` of ``0..L`` runs on the ``(L + 1 - k) p + 1`` columns ending at ``j``
        (at most), the output layers on column ``j``: the columns whose values still
        reach ``(i, j)`` (column causality, reach ``p`` a layer).

        :param x: images ``(N, C, H', W)`` with ``H' > i``; only pixels before ``(i, j)``
            in row ``i`` are read.
        :param contexts: the contexts of row ``i``, each ``(N, 2·channels, 1, W)``
            (an item of :meth:`vertical_rows`).
        """
        p, n_layers = self.kernel_size // 2, len(self.layers)
        h = x[:, :, i : i + 1, : j + 1]
        for k, (layer, context) in enumerate(zip(self.layers, contexts)):
            start = max(0, j + 1 - (n_layers - k) * p - 1)
            h = layer.horizontal(h[..., start - (j + 1) :], context[..., start : j + 1])
        return self.output(h[..., -1:])[:, :, 0, 0]
