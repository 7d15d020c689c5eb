"""Figures for pyrovae experiments (matplotlib, Agg, PNG).

Every ``plot_*`` function draws on its own :class:`matplotlib.figure.Figure` (never registered
with pyplot, so no global state is touched and nothing is left open), writes exactly one PNG
atomically (temporary file in the target folder, then :func:`os.replace`), creates missing
parent folders and returns the :class:`~pathlib.Path` written.  Array inputs may be torch
tensors (detached and moved to the CPU) or numpy arrays.

Figures
-------
* :func:`plot_curves` -- learning curves (e.g. train/test ELBO per epoch).
* :func:`plot_image_grid` -- a tiled grid of images (samples, data).
* :func:`plot_reconstructions` -- originals above their reconstructions.
* :func:`plot_manifold` -- the learned 2-D data manifold, Kingma & Welling (2013), fig. 4.
* :func:`plot_rate_distortion` -- the rate-distortion plane of Alemi et al. (2018).
* :func:`plot_histogram` -- a histogram with optional reference lines (e.g. PSIS k-hat, 0.7).
* :func:`plot_heatmap` -- an annotated heatmap (e.g. batch size x number of samples).

Helpers (pure, no drawing): :func:`tile_images` (the tiling used by the image figures),
:func:`latent_grid` (the manifold's latent points) and :func:`manifold_tiles` (the tiled array
that :func:`plot_manifold` renders).

Data shapes
-----------
The image figures take the shape of one data point, :attr:`pyrovae.data.Dataset.shape`:
``(H, W)`` or ``(1, H, W)`` draws grey images, ``(3, H, W)`` colour images (rows flattened in
``(C, H, W)`` order, values mapped from ``[vmin, vmax]`` to the display's range), and ``(D,)``
-- a table, which has no image -- makes :func:`plot_image_grid` and
:func:`plot_reconstructions` draw the rows as a heatmap (one line per data point, one column per
value, with a colour bar) instead. :func:`plot_manifold` and :func:`manifold_tiles` need images
and raise ``ValueError`` for a table: callers skip the manifold when :func:`is_image_shape` is
false.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "is_image_shape",
    "latent_grid",
    "manifold_tiles",
    "plot_curves",
    "plot_heatmap",
    "plot_histogram",
    "plot_image_grid",
    "plot_manifold",
    "plot_rate_distortion",
    "plot_reconstructions",
    "tile_images",
]

DPI = 100
CURVE_FIGSIZE = (6.4, 4.0)
RD_FIGSIZE = (6.4, 5.0)
HIST_FIGSIZE = (6.4, 4.0)
_SEPARATOR = float("nan")  # separators/blank cells in rendered grids: drawn as the "bad" colour
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


# --------------------------------------------------------------------------- helpers


def _to_numpy(x: Any) -> np.ndarray:
    """A float64 numpy copy of a tensor / array / nested sequence."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _finite_float(v: Any) -> float | None:
    """``float(v)`` if that is a finite number, otherwise ``None`` (None, NaN, text...)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, RuntimeError):
        return None
    return f if math.isfinite(f) else None


def _new_figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (temp file in the same folder + os.replace)."""
    from pyrovae.run import atomic_write

    try:
        return atomic_write(Path(path), lambda fh: fig.savefig(fh, format="png", dpi=DPI))
    finally:
        fig.clear()


def _note(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _note_figure(path, title: str | None, figsize=CURVE_FIGSIZE, text: str = "no data") -> Path:
    fig = _new_figure(figsize)
    ax = fig.add_subplot()
    ax.set_axis_off()
    _note(ax, text)
    if title:
        ax.set_title(title)
    return _save(fig, path)


# --------------------------------------------------------------------------- curves


def plot_curves(
    metrics: Sequence[Mapping[str, float]],
    path,
    keys: Sequence[str] = ("train_elbo", "test_elbo"),
    x_key: str = "epoch",
    ylabel: str = "nats per data point",
    title: str | None = None,
) -> Path:
    """Learning curves: one line per metric in ``keys`` against ``x_key``.

    ``metrics`` is one mapping per logged row (e.g. per epoch).  Points whose value is missing,
    ``None`` or non-finite are skipped; a key with no finite value in any row gets no line.  Rows
    without ``x_key`` use their position in ``metrics``.  With nothing to draw the figure says
    "no data".
    """
    fig = _new_figure(CURVE_FIGSIZE)
    ax = fig.add_subplot()
    drawn = 0
    for key in keys:
        xy = []
        for i, row in enumerate(metrics):
            x, y = _finite_float(row.get(x_key, i)), _finite_float(row.get(key))
            if x is not None and y is not None:
                xy.append((x, y))
        if not xy:
            continue
        xs, ys = zip(*xy, strict=True)
        ax.plot(xs, ys, marker="o" if len(xy) <= 50 else None, markersize=3, label=key)
        drawn += 1
    if drawn:
        ax.legend()
        ax.grid(True, alpha=0.3)
    else:
        _note(ax)
    ax.set_xlabel(x_key)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return _save(fig, path)


# --------------------------------------------------------------------------- image grids


def is_image_shape(shape: Sequence[int]) -> bool:
    """Whether data points of ``shape`` are images the figures can draw: ``(H, W)``,
    ``(1, H, W)`` or ``(3, H, W)`` (a table's ``(D,)`` is not)."""
    shape = tuple(int(s) for s in shape)
    return len(shape) == 2 or (len(shape) == 3 and shape[0] in (1, 3))


def _image_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """``shape`` as ``(C, H, W)``; ``ValueError`` for a table or another channel count."""
    if not is_image_shape(shape):
        raise ValueError(
            f"shape {tuple(shape)} is not an image of 1 or 3 channels: give (H, W) or (C, H, W)"
        )
    shape = tuple(int(s) for s in shape)
    return (1, *shape) if len(shape) == 2 else shape  # type: ignore[return-value]


def tile_images(
    images,
    image_shape: Sequence[int],
    nrow: int | None = None,
    pad: int = 1,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Tile ``N`` images into one float64 array (row-major, ``nrow`` rows).

    ``image_shape`` is ``(H, W)`` or ``(C, H, W)`` with C = 1 or 3. ``images`` is ``(N, C*H*W)``
    or any shape with ``N`` leading and ``C*H*W`` values per image, in ``(C, H, W)`` order.  The
    grid has ``nrow`` rows (default ``ceil(sqrt(N))``) and ``ncol = ceil(N / nrow)`` columns;
    image ``k`` sits at row ``k // ncol``, column ``k % ncol``.  Tiles are separated by ``pad``
    pixels of ``pad_value`` (no outer border) and cells past the last image are filled with
    ``pad_value``.  Result shape: ``(nrow*H + (nrow-1)*pad, ncol*W + (ncol-1)*pad)`` for grey
    images, with a trailing axis of 3 (R, G, B) for colour ones.
    """
    c, h, w = _image_shape(image_shape)
    arr = _to_numpy(images)
    n = arr.shape[0] if arr.ndim else 0
    if n == 0:
        raise ValueError("tile_images needs at least one image")
    if arr[0].size != c * h * w:
        shown = (h, w) if c == 1 and len(image_shape) == 2 else (c, h, w)
        raise ValueError(f"images of shape {tuple(arr.shape[1:])} do not match {shown}")
    arr = arr.reshape(n, c, h, w).transpose(0, 2, 3, 1)  # (N, H, W, C)
    nrow = math.ceil(math.sqrt(n)) if nrow is None else int(nrow)
    if nrow < 1 or pad < 0:
        raise ValueError("nrow must be >= 1 and pad >= 0")
    ncol = math.ceil(n / nrow)
    out = np.full((nrow * h + (nrow - 1) * pad, ncol * w + (ncol - 1) * pad, c), float(pad_value))
    for k in range(n):
        r, col = divmod(k, ncol)
        out[r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = arr[k]
    return out[..., 0] if c == 1 else out


def _tile_centres(count: int, size: int, pad: int = 1) -> np.ndarray:
    """Pixel coordinates of the centres of ``count`` tiles of ``size`` px along one axis."""
    return np.arange(count) * (size + pad) + (size - 1) / 2


def _pixel_exact_axes(shape, title, xticks, yticks):
    """A figure whose axes show ``shape`` data pixels at an integer magnification, at integer
    pixel offsets, so every tile and every 1-px separator is drawn the same width."""
    h, w = shape
    k = min(12, max(1, math.ceil(600 / max(h, w))))  # screen pixels per data pixel
    ylab_chars = max((len(str(t)) for t in (yticks or ((), ()))[1]), default=0)
    left = 8 + (7 * ylab_chars + 40 if ylab_chars else 0)
    bottom = 8 + (45 if xticks and len(xticks[1]) else 0)
    top = 8 + (30 if title else 0)
    fig_w = max(left + w * k + 12, 9 * len(title or "") + 20)
    fig_h = bottom + h * k + top
    left += (fig_w - (left + w * k + 12)) // 2  # centre the image if the title is wider
    fig = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, w * k / fig_w, h * k / fig_h))
    return fig, ax


def _render_tiled(
    array: np.ndarray,
    path,
    *,
    vmin: float | None,
    vmax: float | None,
    title: str | None = None,
    xticks: tuple[Sequence[float], Sequence[str]] | None = None,
    yticks: tuple[Sequence[float], Sequence[str]] | None = None,
    xlabel: str = "",
    ylabel: str = "",
) -> Path:
    """Draw a tiled grey ``(H, W)`` or colour ``(H, W, 3)`` array (NaN = separator, drawn
    white) and save it."""
    finite = array[np.isfinite(array)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    fig, ax = _pixel_exact_axes(array.shape[:2], title, xticks, yticks)
    if array.ndim == 3:  # colour: [lo, hi] to [0, 1], separators white
        rgb = np.clip((array - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
        ax.imshow(np.where(np.isnan(array), 1.0, rgb), interpolation="nearest")
    else:
        cmap = matplotlib.colormaps["gray"].with_extremes(bad="white")
        ax.imshow(array, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    if xticks is None and yticks is None:
        ax.set_axis_off()
    else:
        ax.set_xticks(*(xticks or ([], [])))
        ax.set_yticks(*(yticks or ([], [])))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        for spine in ax.spines.values():
            spine.set_visible(False)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _plot_rows(
    groups: Sequence[tuple[str, np.ndarray]],
    path,
    *,
    vmin: float | None,
    vmax: float | None,
    title: str | None,
) -> Path:
    """Table rows as a heatmap: one line per data point, one column per value, the groups
    (e.g. originals, reconstructions) stacked with a blank line between them and labelled."""
    dim = groups[0][1].shape[1]
    blank = np.full((1, dim), np.nan)
    stacked, centres, labels, top = [], [], [], 0
    for i, (label, rows) in enumerate(groups):
        if i:
            stacked.append(blank)
            top += 1
        stacked.append(rows)
        centres.append(top + (len(rows) - 1) / 2)
        labels.append(label)
        top += len(rows)
    array = np.concatenate(stacked)
    finite = array[np.isfinite(array)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    fig = _new_figure(
        (min(12.0, max(5.0, 0.12 * dim + 3)), min(10.0, max(3.0, 0.2 * len(array) + 1.5)))
    )
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    image = ax.imshow(array, cmap=cmap, vmin=lo, vmax=hi, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax)
    ax.set_xlabel("column")
    if len(groups) > 1 or labels[0]:
        ax.set_yticks(centres, labels)
    else:
        ax.set_ylabel("data point")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_image_grid(
    images,
    image_shape: Sequence[int],
    path,
    nrow: int | None = None,
    title: str | None = None,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
) -> Path:
    """Images tiled in a grid (see :func:`tile_images`) with white 1-px separators.

    ``image_shape`` is the data's shape: ``(H, W)`` or ``(1, H, W)`` grey, ``(3, H, W)``
    colour, or ``(D,)`` for table rows, drawn as a heatmap (``nrow`` is then ignored).
    ``vmin``/``vmax`` fix the value scale (default ``[0, 1]``); ``None`` uses the data's min/max.
    """
    arr = _to_numpy(images)
    if arr.ndim == 0 or arr.shape[0] == 0:
        return _note_figure(path, title)
    if len(image_shape) == 1:
        rows = arr.reshape(arr.shape[0], -1)
        return _plot_rows([("", rows)], path, vmin=vmin, vmax=vmax, title=title)
    tiled = tile_images(arr, image_shape, nrow=nrow, pad=1, pad_value=_SEPARATOR)
    return _render_tiled(tiled, path, vmin=vmin, vmax=vmax, title=title)


def plot_reconstructions(
    originals,
    reconstructions,
    image_shape,
    path,
    title: str | None = None,
    vmin=0.0,
    vmax=1.0,
) -> Path:
    """Originals (upper row) above their reconstructions (lower row), rows labelled.

    At most 10 images per row: larger batches become several (original, reconstruction) row
    pairs.  Both inputs hold ``N`` images, flattened or ``(N, H, W)`` / ``(N, C, H, W)``.  For
    table rows (``image_shape == (D,)``) the originals and the reconstructions are two labelled
    blocks of one heatmap.
    """
    size = math.prod(int(s) for s in image_shape)
    orig = _to_numpy(originals).reshape(-1, size)
    recon = _to_numpy(reconstructions).reshape(-1, size)
    if orig.shape[0] != recon.shape[0]:
        raise ValueError(f"{orig.shape[0]} originals but {recon.shape[0]} reconstructions")
    n = orig.shape[0]
    if n == 0:
        return _note_figure(path, title)
    if len(image_shape) == 1:
        groups = [("original", orig), ("reconstruction", recon)]
        return _plot_rows(groups, path, vmin=vmin, vmax=vmax, title=title)
    _, h, _ = _image_shape(image_shape)
    ncol = min(n, 10)
    npair = math.ceil(n / ncol)
    rows = []
    for p in range(npair):
        for src in (orig, recon):
            block = np.full((ncol, size), _SEPARATOR)
            chunk = src[p * ncol : (p + 1) * ncol]
            block[: len(chunk)] = chunk
            rows.append(block)
    tiled = tile_images(np.concatenate(rows), image_shape, nrow=2 * npair, pad_value=_SEPARATOR)
    labels = ["original", "reconstruction"] * npair
    return _render_tiled(
        tiled,
        path,
        vmin=vmin,
        vmax=vmax,
        title=title,
        xticks=([], []),
        yticks=(_tile_centres(2 * npair, h), labels),
    )


# --------------------------------------------------------------------------- manifold


def _grid_probabilities(grid_size: int, eps: float | None) -> torch.Tensor:
    if grid_size < 1:
        raise ValueError("grid_size must be >= 1")
    if eps is None:
        return (torch.arange(grid_size, dtype=torch.float64) + 0.5) / grid_size
    if not 0.0 < eps < 0.5:
        raise ValueError("eps must lie in (0, 0.5)")
    return torch.linspace(eps, 1.0 - eps, grid_size, dtype=torch.float64)


def latent_grid(grid_size: int = 20, dims: int = 2, eps: float | None = None) -> torch.Tensor:
    """Latent points for the manifold figure (Kingma & Welling 2013, fig. 4).

    Probabilities ``p_i`` equally spaced in the open unit interval -- the cell midpoints
    ``(i + 0.5) / grid_size`` by default, or ``linspace(eps, 1 - eps, grid_size)`` when ``eps`` is
    given -- are mapped through the inverse CDF of N(0, 1), so that the grid covers the prior
    evenly in probability.  Returns ``(grid_size**2, dims)`` in the default dtype, row-major as
    the image is read: point ``r * grid_size + c`` has first coordinate ``z[c]`` (increasing left
    to right) and second coordinate ``z[grid_size - 1 - r]`` (decreasing down the rows).  For
    ``dims > 2`` the remaining coordinates are 0 (a slice through the prior's centre).
    """
    if dims < 2:
        raise ValueError("latent_grid needs dims >= 2")
    p = _grid_probabilities(grid_size, eps)
    z = torch.distributions.Normal(0.0, 1.0).icdf(p)
    z2, z1 = torch.meshgrid(z.flip(0), z, indexing="ij")
    out = torch.zeros(grid_size * grid_size, dims, dtype=torch.float64)
    out[:, 0] = z1.reshape(-1)
    out[:, 1] = z2.reshape(-1)
    return out.to(torch.get_default_dtype())


def manifold_tiles(
    decode: Callable[[torch.Tensor], torch.Tensor],
    image_shape,
    grid_size: int = 20,
    pad: int = 1,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Decode :func:`latent_grid` ``(grid_size)`` in one call (under ``torch.no_grad()``) and
    tile the decoded images ``grid_size x grid_size`` with :func:`tile_images` (images only:
    ``ValueError`` for a table's shape)."""
    _image_shape(image_shape)
    z = latent_grid(grid_size)
    with torch.no_grad():
        decoded = decode(z)
    decoded = _to_numpy(decoded)
    if decoded.shape[0] != z.shape[0]:
        raise ValueError(f"decode returned {decoded.shape[0]} images for {z.shape[0]} points")
    return tile_images(decoded, image_shape, nrow=grid_size, pad=pad, pad_value=pad_value)


def plot_manifold(
    decode: Callable[[torch.Tensor], torch.Tensor],
    image_shape,
    path,
    grid_size: int = 20,
    title: str | None = None,
    vmin=0.0,
    vmax=1.0,
) -> Path:
    """The learned data manifold of a 2-D latent model (Kingma & Welling 2013, fig. 4).

    ``decode`` maps ``(M, 2)`` latent points (CPU, default dtype) to ``(M, D)`` image means; it is
    called once on :func:`latent_grid` ``(grid_size)``.  Each tile is the decoded mean at one grid
    point; z1 grows to the right, z2 grows upwards, and a few ticks are labelled with the z values.
    ``image_shape`` is ``(H, W)`` or ``(C, H, W)``; a table (``(D,)``) has no manifold figure
    (``ValueError``).
    """
    _, h, w = _image_shape(image_shape)
    tiled = manifold_tiles(decode, image_shape, grid_size, pad=1, pad_value=_SEPARATOR)
    z = torch.distributions.Normal(0.0, 1.0).icdf(_grid_probabilities(grid_size, None)).numpy()
    idx = np.unique(np.linspace(0, grid_size - 1, min(grid_size, 5)).round().astype(int))
    xticks = (_tile_centres(grid_size, w)[idx], [f"{z[i]:.2f}" for i in idx])
    yticks = (_tile_centres(grid_size, h)[idx], [f"{z[grid_size - 1 - i]:.2f}" for i in idx])
    return _render_tiled(
        tiled,
        path,
        vmin=vmin,
        vmax=vmax,
        title=title,
        xticks=xticks,
        yticks=yticks,
        xlabel="$z_1$",
        ylabel="$z_2$",
    )


# --------------------------------------------------------------------------- rate-distortion


def _padded_range(values: np.ndarray, include_zero: bool = True) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = hi - lo if hi > lo else max(1.0, abs(hi))
    return lo - 0.06 * span, hi + 0.06 * span


def _draw_elbo_contours(ax, totals: np.ndarray, xlim, ylim) -> None:
    """Dashed lines R + D = c for a few c spanning the data (c is -ELBO)."""
    lo, hi = float(totals.min()), float(totals.max())
    if hi - lo < 1e-9:
        lo, hi = lo - max(1.0, 0.1 * abs(lo)), hi + max(1.0, 0.1 * abs(hi))
    xs = np.array(xlim)
    for i, c in enumerate(MaxNLocator(nbins=5).tick_values(lo, hi)):
        label = "R + D = c  (−ELBO contours)" if i == 0 else None
        ax.plot(xs, c - xs, ls="--", lw=0.8, color="0.6", zorder=1, label=label)
        x_t = max(xlim[0], c - ylim[1])
        if x_t < xlim[1] and ylim[0] <= c - x_t <= ylim[1]:
            ax.annotate(
                f"{c:g}",
                (x_t, c - x_t),
                xytext=(3, -9),
                textcoords="offset points",
                fontsize=7,
                color="0.45",
            )


def _draw_entropy_bound(ax, entropy: float, xlim, ylim) -> None:
    """The line D = H - R and the infeasible region R + D < H below it (shaded)."""
    xs = np.linspace(xlim[0], xlim[1], 200)
    bound = entropy - xs
    ax.plot(xs, bound, color="crimson", lw=1.5, zorder=2, label=f"D = H − R  (H = {entropy:.4g})")
    ax.fill_between(xs, ylim[0], np.maximum(bound, ylim[0]), color="crimson", alpha=0.08, lw=0)
    if entropy - xlim[0] > ylim[0] + 0.1 * (ylim[1] - ylim[0]):
        ax.text(
            0.02,
            0.02,
            "infeasible: R + D < H",
            transform=ax.transAxes,
            fontsize=8,
            color="crimson",
        )


def plot_rate_distortion(
    points: Sequence[Mapping],
    path,
    title: str | None = None,
    entropy: float | None = None,
) -> Path:
    """The rate-distortion plane of Alemi et al. (2018), "Fixing a Broken ELBO".

    Each point is a mapping with ``rate`` (R, nats) and ``distortion`` (D, nats) and optionally a
    ``label`` (written next to the point, e.g. "β=0.5") and a ``series`` (one colour/marker per
    series, shown in the legend, e.g. one per prior).  Points with a non-finite R or D are skipped.
    Dashed lines mark R + D = c (constant -ELBO).  With the data entropy ``entropy`` = H the line
    D = H - R, the edge of the feasible region R + D >= H, is drawn and the region below shaded.
    """
    pts = []
    for p in points:
        r, d = _finite_float(p.get("rate")), _finite_float(p.get("distortion"))
        if r is not None and d is not None:
            pts.append((r, d, p.get("label"), p.get("series")))
    fig = _new_figure(RD_FIGSIZE)
    ax = fig.add_subplot()
    ax.set_xlabel("rate R (nats)")
    ax.set_ylabel("distortion D (nats)")
    if title:
        ax.set_title(title)
    if not pts:
        _note(ax)
        return _save(fig, path)
    rates = np.array([p[0] for p in pts])
    dists = np.array([p[1] for p in pts])
    xlim, ylim = _padded_range(rates), _padded_range(dists)
    _draw_elbo_contours(ax, rates + dists, xlim, ylim)
    if entropy is not None:
        _draw_entropy_bound(ax, float(entropy), xlim, ylim)
    series = list(dict.fromkeys(p[3] for p in pts))
    colours = matplotlib.colormaps["tab10"].colors
    for i, s in enumerate(series):
        sel = [p for p in pts if p[3] == s]
        ax.scatter(
            [p[0] for p in sel],
            [p[1] for p in sel],
            marker=_MARKERS[i % len(_MARKERS)],
            color=colours[i % len(colours)],
            zorder=3,
            label=None if s is None else str(s),
        )
    for r, d, label, _ in pts:
        if label is not None:
            ax.annotate(str(label), (r, d), xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()  # outside the axes: it covers no point
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncols=len(labels))
    return _save(fig, path)


# --------------------------------------------------------------------------- histogram / heatmap


def plot_histogram(
    values,
    path,
    bins: int = 30,
    xlabel: str = "",
    title: str | None = None,
    vlines: Sequence[float] = (),
) -> Path:
    """Histogram of the finite entries of ``values`` (e.g. PSIS k-hat per data point) with dashed
    vertical reference lines at ``vlines`` (e.g. 0.7); the number of non-finite entries dropped,
    if any, is noted in the legend."""
    arr = _to_numpy(values).reshape(-1)
    finite = arr[np.isfinite(arr)]
    fig = _new_figure(HIST_FIGSIZE)
    ax = fig.add_subplot()
    if finite.size:
        ax.hist(finite, bins=bins, color="steelblue", edgecolor="white", linewidth=0.5)
    else:
        _note(ax)
    for i, v in enumerate(vlines):
        ax.axvline(float(v), ls="--", color=f"C{(i + 3) % 10}", label=f"{float(v):g}")
    dropped = arr.size - finite.size
    if dropped:
        ax.plot([], [], " ", label=f"{dropped} non-finite dropped")
    if len(vlines) or dropped:
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_heatmap(
    matrix,
    row_labels,
    col_labels,
    path,
    title: str | None = None,
    xlabel: str = "",
    ylabel: str = "",
    fmt: str = "{:.1f}",
) -> Path:
    """Heatmap of a 2-D ``matrix`` with every cell annotated by ``fmt`` (e.g. a study of batch
    size (rows) x number of samples (columns)); NaN cells are blank and annotated "–"."""
    m = _to_numpy(matrix)
    if m.ndim != 2 or m.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"matrix shape {m.shape} does not match the row/column labels")
    nr, nc = m.shape
    fig = _new_figure((min(14.0, max(4.0, 0.9 * nc + 2.5)), min(12.0, max(3.0, 0.5 * nr + 1.5))))
    ax = fig.add_subplot()
    finite = m[np.isfinite(m)]
    if finite.size == 0:
        _note(ax)
    else:
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.9")
        im = ax.imshow(m, cmap=cmap, aspect="auto", vmin=finite.min(), vmax=finite.max())
        fig.colorbar(im, ax=ax)
        for (i, j), v in np.ndenumerate(m):
            if not np.isfinite(v):
                ax.text(j, i, "–", ha="center", va="center", fontsize=8, color="0.3")
                continue
            r, g, b, _ = im.cmap(im.norm(v))
            colour = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(nc), [str(c) for c in col_labels])
    ax.set_yticks(range(nr), [str(r) for r in row_labels])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return _save(fig, path)
