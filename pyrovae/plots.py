"""Figures for pyrovae experiments (matplotlib, Agg, PNG).

Every ``plot_*`` function draws on its own :class:`matplotlib.figure.Figure` (never registered
with pyplot, so no global state is touched and nothing is left open), writes exactly one PNG
atomically (temporary file in the target folder, then :func:`os.replace`), creates missing
parent folders and returns the :class:`~pathlib.Path` written.  Array inputs may be torch
tensors (detached and moved to the CPU) or numpy arrays.

Figures
-------
* :func:`plot_training` -- a run's training curves in panels: ELBO, rate, distortion, and the
  learning rate and β where they change.
* :func:`plot_curves` -- learning curves of any metrics against one x key.
* :func:`plot_image_grid` -- a tiled grid of images (samples, data), rows optionally labelled.
* :func:`plot_reconstructions` -- each input above its reconstruction, in full rows of pairs.
* :func:`plot_manifold` -- the learned 2-D data manifold, Kingma & Welling (2013), fig. 4.
* :func:`plot_rate_distortion` -- the rate-distortion plane of Alemi et al. (2018); its parts
  :func:`draw_rate_distortion` and :func:`annotate_rate_distortion` draw on any axes.
* :func:`plot_histogram` -- a histogram with optional reference lines (e.g. PSIS k-hat, 0.7).
* :func:`plot_heatmap` -- an annotated heatmap (e.g. batch size x number of samples).

Labels that must not collide
----------------------------
:func:`place_labels` puts a text next to each of a set of points where, measured with the
renderer, it overlaps no label already placed, no point and no axes edge; :func:`label_points`
adds the fallback (a number at the point and a key beside the axes) for the labels that find
no room.  :func:`text_boxes`, :func:`overlaps` and :func:`outside` measure a finished figure
the same way: the tests use them to check that no two texts overlap and that every text lies
inside the figure.  :func:`capture_figures` keeps the figures the ``plot_*`` functions save, so
that they can be measured.

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

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation, Text
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

__all__ = [
    "annotate_rate_distortion",
    "capture_figures",
    "draw_rate_distortion",
    "freeze_layout",
    "is_image_shape",
    "label_points",
    "latent_grid",
    "manifold_tiles",
    "metric_label",
    "outside",
    "overlaps",
    "place_labels",
    "plot_curves",
    "plot_heatmap",
    "plot_histogram",
    "plot_image_grid",
    "plot_manifold",
    "plot_rate_distortion",
    "plot_reconstructions",
    "plot_training",
    "text_boxes",
    "tile_images",
]

DPI = 100
CURVE_FIGSIZE = (6.4, 4.0)
RD_FIGSIZE = (6.4, 5.0)
HIST_FIGSIZE = (6.4, 4.0)
PANEL_HEIGHT = 1.9  # inches per panel of plot_training
_SEPARATOR = float("nan")  # separators/blank cells in rendered grids: drawn as the "bad" colour
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_CAPTURED: list[list[Figure]] = []  # the open capture_figures() blocks, innermost last


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


@contextlib.contextmanager
def capture_figures() -> Iterator[list[Figure]]:
    """Keep the figures that ``plot_*`` functions save inside the block.

    Normally a figure is cleared once written; inside ``with capture_figures() as figures:``
    each is also appended to ``figures`` intact, so a test can measure what was drawn
    (:func:`text_boxes`)::

        with capture_figures() as figures:
            plot_rate_distortion(points, "rd.png")
        assert not overlaps(text_boxes(figures[0]))
    """
    figures: list[Figure] = []
    _CAPTURED.append(figures)
    try:
        yield figures
    finally:
        _CAPTURED.remove(figures)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (temp file in the same folder + os.replace)."""
    from pyrovae.run import atomic_write

    try:
        return atomic_write(Path(path), lambda fh: fig.savefig(fh, format="png", dpi=DPI))
    finally:
        if _CAPTURED:
            _CAPTURED[-1].append(fig)
        else:
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


def _renderer(fig: Figure):
    """The figure's renderer, after the layout engine has placed the axes."""
    fig.draw_without_rendering()
    return fig.canvas.get_renderer()


# --------------------------------------------------------------------------- text boxes


def text_boxes(fig: Figure) -> list[tuple[str, Bbox]]:
    """Every text drawn in ``fig`` with its bounding box, as the renderer measures it.

    The figure is drawn (layout included) and every :class:`~matplotlib.text.Text` that
    draws a non-empty string is recorded -- titles, axis labels, the tick labels actually
    shown, legend entries, annotations -- with its box in display pixels (the text only:
    an annotation's arrow and a text's background patch are left out). The recording wraps
    :meth:`matplotlib.text.Text.draw` for the one draw (not thread-safe: a test helper).

    :returns: ``[(text, bbox), ...]`` in drawing order.
    """
    renderer = fig.canvas.get_renderer()
    drawn: dict[int, Text] = {}
    original = Text.draw

    def recording_draw(self, renderer):
        if self.get_visible() and self.get_text().strip():
            drawn[id(self)] = self
        return original(self, renderer)

    Text.draw = recording_draw  # type: ignore[method-assign]
    try:
        fig.draw(renderer)
    finally:
        Text.draw = original  # type: ignore[method-assign]
    return [(t.get_text(), _text_box(t, renderer)) for t in drawn.values()]


def _text_box(text: Text, renderer) -> Bbox:
    """The box of ``text``'s string alone (an annotation's arrow and a background left out),
    at its current position (an annotation's is recomputed from its anchor and offset)."""
    if not isinstance(text, Text):  # another artist (e.g. a legend): its whole box
        return text.get_window_extent(renderer)
    if isinstance(text, Annotation):
        text.update_positions(renderer)
    return Text.get_window_extent(text, renderer)


def _intersect(a: Bbox, b: Bbox, tol: float = 0.0) -> bool:
    """Whether boxes ``a`` and ``b`` share an area more than ``tol`` px deep each way."""
    return a.x0 < b.x1 - tol and b.x0 < a.x1 - tol and a.y0 < b.y1 - tol and b.y0 < a.y1 - tol


def overlaps(boxes: Sequence[tuple[str, Bbox]], tol: float = 1.0) -> list[tuple[str, str]]:
    """The pairs of texts of :func:`text_boxes` whose boxes overlap by more than ``tol``
    pixels in both directions (boxes that merely touch do not count)."""
    return [
        (ta, tb)
        for i, (ta, a) in enumerate(boxes)
        for tb, b in boxes[i + 1 :]
        if _intersect(a, b, tol)
    ]


def outside(boxes: Sequence[tuple[str, Bbox]], fig: Figure, tol: float = 1.0) -> list[str]:
    """The texts of :func:`text_boxes` that reach more than ``tol`` pixels beyond ``fig``."""
    frame = fig.bbox
    return [
        t
        for t, b in boxes
        if b.x0 < frame.x0 - tol
        or b.y0 < frame.y0 - tol
        or b.x1 > frame.x1 + tol
        or b.y1 > frame.y1 + tol
    ]


# --------------------------------------------------------------------------- label placement

#: unit directions tried around a point, in order: the four diagonals, then the sides
_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
_ALIGN = {-1: "right", 0: "center", 1: "left"}
_VALIGN = {-1: "top", 0: "center", 1: "bottom"}


def _marker_radius_px(fig: Figure) -> float:
    """Half the default marker size, in display pixels, plus a pixel."""
    return matplotlib.rcParams["lines.markersize"] / 2 * fig.dpi / 72 + 1


def place_labels(
    ax,
    xy: Sequence[tuple[float, float]],
    labels: Sequence[str | None],
    *,
    fontsize: float = 8,
    radii: Sequence[float] = (7, 12, 18, 26, 36),
    avoid: Sequence[Bbox] = (),
    points: Sequence[tuple[float, float]] | None = None,
    force: bool = False,
    **text_kw,
) -> list[Annotation | None]:
    """Write each label next to its point where it collides with nothing.

    For every point (data coordinates of ``ax``), candidate positions at offsets of ``radii``
    (points) in eight directions are tried in turn (the diagonals first, nearest ring first);
    the first whose text box, measured with the renderer, lies inside the axes and overlaps
    no label placed before, no point (a disc of the default marker size around each of
    ``points``, default ``xy``) and none of the ``avoid`` boxes (display pixels; e.g. a
    legend) is kept. Labels beyond the second ring get a thin leader line to their point.
    Crowded points go first. Call this after the figure's layout is final (it measures
    positions in pixels): :func:`label_points` does.

    :param labels: one text per point; ``None`` skips the point (it is still avoided).
    :param force: place a label that fits nowhere at its first candidate anyway.
    :param text_kw: passed to :meth:`~matplotlib.axes.Axes.annotate` (e.g. ``color``).
    :returns: one :class:`~matplotlib.text.Annotation` per label, ``None`` where none was
        placed (no label, the point outside the axes, or no free candidate).
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    frame = ax.bbox
    pts = np.asarray(xy if points is None else points, dtype=float).reshape(-1, 2)
    centres = to_px(pts) if len(pts) else np.zeros((0, 2))
    r = _marker_radius_px(fig)
    taken = [Bbox([[x - r, y - r], [x + r, y + r]]) for x, y in centres] + list(avoid)
    own = to_px(np.asarray(xy, dtype=float).reshape(-1, 2)) if len(xy) else np.zeros((0, 2))
    # crowded points first: the number of other points within 40 px
    crowd = [int((np.hypot(*(own - p).T) < 40).sum()) for p in own]
    order = sorted(range(len(labels)), key=lambda i: -crowd[i])
    out: list[Annotation | None] = [None] * len(labels)
    for i in order:
        x, y = own[i]
        if labels[i] is None or not (frame.x0 <= x <= frame.x1 and frame.y0 <= y <= frame.y1):
            continue
        ann = ax.annotate(
            str(labels[i]),
            xy[i],
            xytext=(0, 0),
            textcoords="offset points",
            fontsize=fontsize,
            annotation_clip=False,
            **text_kw,
        )
        first = None
        for k, radius in enumerate(radii):
            for dx, dy in _DIRECTIONS:
                norm = math.hypot(dx, dy)
                ann.xyann = (radius * dx / norm, radius * dy / norm)
                ann.set_horizontalalignment(_ALIGN[dx])
                ann.set_verticalalignment(_VALIGN[dy])
                box = _text_box(ann, renderer).padded(1)
                first = first or (ann.xyann, _ALIGN[dx], _VALIGN[dy], k)
                inside = (
                    box.x0 >= frame.x0
                    and box.x1 <= frame.x1
                    and box.y0 >= frame.y0
                    and box.y1 <= frame.y1
                )
                if inside and not any(_intersect(box, t) for t in taken):
                    break
            else:
                continue
            break
        else:  # no free candidate
            if not force:
                ann.remove()
                continue
            ann.xyann, ha, va, k = first
            ann.set_horizontalalignment(ha)
            ann.set_verticalalignment(va)
            box = _text_box(ann, renderer).padded(1)
        if k > 1:  # away from its point: a leader line (an annotation gets its arrow at birth)
            text, offset = ann.get_text(), ann.xyann
            ha, va = ann.get_horizontalalignment(), ann.get_verticalalignment()
            ann.remove()
            leader = {"arrowstyle": "-", "color": "0.55", "lw": 0.6}
            leader.update(shrinkA=1, shrinkB=r * 72 / fig.dpi)
            ann = ax.annotate(
                text,
                xy[i],
                xytext=offset,
                textcoords="offset points",
                fontsize=fontsize,
                ha=ha,
                va=va,
                annotation_clip=False,
                arrowprops=leader,
                **text_kw,
            )
        taken.append(box)
        out[i] = ann
    return out


def _merge_labels(labels: Sequence[str]) -> str:
    """Labels of points drawn on top of each other, as one: ``β=1, β=1.1`` -> ``β=1, 1.1``."""
    labels = [str(t) for t in labels]
    heads = {t.partition("=")[0] for t in labels}
    if len(labels) > 1 and len(heads) == 1 and all("=" in t for t in labels):
        return ", ".join([labels[0], *(t.partition("=")[2].strip() for t in labels[1:])])
    return ", ".join(labels)


def _clusters(px: np.ndarray, distance: float) -> list[list[int]]:
    """Groups of points (single linkage) closer than ``distance`` pixels, in input order."""
    parent = list(range(len(px)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(px)):
        for j in range(i):
            if math.hypot(*(px[i] - px[j])) < distance:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(px)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def label_points(
    ax,
    xy: Sequence[tuple[float, float]],
    labels: Sequence[str | None],
    *,
    fontsize: float = 8,
    key_title: str = "labels",
    avoid: Sequence[Any] = (),
    **text_kw,
) -> dict[int, str]:
    """Label points without collisions, falling back to numbers and a key when crowded.

    Points drawn on top of each other (closer than half a marker's width) share one
    label (``β=1.2, 1.4``). Each label is placed with :func:`place_labels`; a label that
    finds no room is replaced by a number at its point, listed with its text in a key
    beside the axes (a legend at its right), and the figure's layout is redone and the
    labels placed again (at most three rounds: the key takes room from the axes).
    ``avoid`` holds boxes (display pixels) or artists (measured again each round) that
    the labels must not cover.

    :returns: the key, ``{number: label}`` (empty when every label fitted).
    """
    fig = ax.figure
    xy = [tuple(map(float, p)) for p in xy]
    _renderer(fig)
    px = ax.transData.transform(np.asarray(xy).reshape(-1, 2)) if xy else np.zeros((0, 2))
    groups = _clusters(px, _marker_radius_px(fig) - 1)
    merged: list[tuple[tuple[float, float], str]] = []
    for g in groups:
        texts = [labels[i] for i in g if labels[i] is not None]
        if texts:
            centre = tuple(np.mean([xy[i] for i in g], axis=0))
            merged.append((centre, _merge_labels(texts)))
    numbered: dict[int, int] = {}  # merged index -> number
    placed: list[Annotation | None] = []
    key = None
    for round_ in range(4):
        for ann in placed:
            if ann is not None:
                ann.remove()
        # the layout is redone when the key (added below) has taken room from the axes
        renderer = _renderer(fig) if round_ else fig.canvas.get_renderer()
        blocked = [b if isinstance(b, Bbox) else _text_box(b, renderer) for b in avoid]
        texts = [str(numbered[i]) if i in numbered else t for i, (_, t) in enumerate(merged)]
        placed = place_labels(
            ax,
            [c for c, _ in merged],
            texts,
            fontsize=fontsize,
            points=xy,
            avoid=blocked,
            **text_kw,
        )
        failed = [i for i, a in enumerate(placed) if a is None and i not in numbered]
        if not failed or round_ == 3:
            break
        for i in failed:
            numbered[i] = len(numbered) + 1
        if key is None and ax.get_legend() is not None:
            ax.add_artist(ax.get_legend())  # keep the caller's legend beside the key
        if key is not None:
            key.remove()
        entries = sorted(numbered.items(), key=lambda t: t[1])
        line_px = 1.6 * (fontsize - 1) * fig.dpi / 72  # a legend row, in pixels
        fit = max(1, int(ax.bbox.height / line_px) - 2)
        key = ax.legend(
            [Line2D([], [], ls="none") for _ in entries],
            [f"{n}: {merged[i][1]}" for i, n in entries],
            title=key_title,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
            handlelength=0,
            handletextpad=0,
            ncols=math.ceil(len(entries) / fit),
            fontsize=fontsize - 1,
            title_fontsize=fontsize - 1,
        )
    # whatever still found no room goes at its first candidate
    missing = [i for i, a in enumerate(placed) if a is None]
    if missing:
        place_labels(
            ax,
            [merged[i][0] for i in missing],
            [str(numbered[i]) if i in numbered else merged[i][1] for i in missing],
            fontsize=fontsize,
            points=xy,
            avoid=blocked + [_text_box(a, renderer) for a in placed if a],
            force=True,
            **text_kw,
        )
    return {n: merged[i][1] for i, n in numbered.items()}


# --------------------------------------------------------------------------- curves

#: human labels of the metric keys runs log (``metrics.jsonl``, ``summary.json``)
KEY_LABELS = {
    "epoch": "epoch",
    "step": "step",
    "train_elbo": "train ELBO (nats)",
    "train_beta_elbo": "train −(D + βR) (nats)",
    "test_elbo": "test ELBO (nats)",
    "test_rate": "test rate R (nats)",
    "test_distortion": "test distortion D (nats)",
    "test_iw_log_likelihood": "test log p(x), importance-weighted (nats)",
    "test_mse": "test mean squared error",
    "lr": "learning rate",
    "beta": "β",
    "seconds": "seconds per epoch",
}


def metric_label(key: str) -> str:
    """The human label of a metric key: ``"test_elbo"`` -> ``"test ELBO (nats)"``; an
    unknown key has its underscores turned into spaces."""
    return KEY_LABELS.get(key, key.replace("_", " "))


def _series(metrics: Sequence[Mapping], key: str, x_key: str = "epoch"):
    """``(xs, ys)`` of the rows with a finite ``key`` (x: ``x_key``, else the row's index)."""
    xy = []
    for i, row in enumerate(metrics):
        x, y = _finite_float(row.get(x_key, i)), _finite_float(row.get(key))
        if x is not None and y is not None:
            xy.append((x, y))
    return tuple(map(list, zip(*xy, strict=True))) if xy else ([], [])


def _robust_bottom(lines: Sequence[tuple[list, list]]) -> tuple[float | None, float | None]:
    """A lower y limit that leaves out the first epochs when they lie far below the rest.

    Over all lines, the values after the first tenth of the points (at least the first point)
    set the range; if some earlier value lies below that range by more than its width, the
    axis starts just below the range. :returns: ``(bottom, last x cut off)`` or
    ``(None, None)`` when nothing is cut off.
    """
    n = max((len(ys) for _, ys in lines), default=0)
    if n < 8:
        return None, None
    skip = max(1, n // 10)
    rest = [y for _, ys in lines for y in ys[skip:]]
    if not rest:
        return None, None
    lo, hi = min(rest), max(rest)
    width = max(hi - lo, 1e-12)
    if min(y for _, ys in lines for y in ys) >= lo - width:
        return None, None
    bottom = lo - 0.08 * width
    cut = [x for xs, ys in lines for x, y in zip(xs, ys) if y < bottom]
    return bottom, max(cut)


def _draw_lines(ax, metrics, keys: Sequence[tuple[str, str]], x_key: str) -> int:
    """One line per ``(key, label)`` with a finite value; returns the number drawn."""
    lines = []
    for key, label in keys:
        xs, ys = _series(metrics, key, x_key)
        if not xs:
            continue
        style = {"marker": "o", "markersize": 3} if len(xs) <= 50 else {}
        ax.plot(xs, ys, label=label, **style)
        lines.append((xs, ys))
    bottom, cut = _robust_bottom(lines)
    if bottom is not None:
        ax.set_ylim(bottom=bottom)
        first = min(x for xs, _ in lines for x in xs)
        what = f"{metric_label(x_key)} {cut:g}" if cut == first else f"{x_key}s ≤ {cut:g}"
        ax.plot([], [], " ", label=f"({what}: below the axis)")
    return len(lines)


def plot_curves(
    metrics: Sequence[Mapping[str, float]],
    path,
    keys: Sequence[str] = ("train_elbo", "test_elbo"),
    x_key: str = "epoch",
    ylabel: str = "nats per data point",
    title: str | None = None,
) -> Path:
    """Learning curves: one line per metric in ``keys`` against ``x_key``, in one panel.

    ``metrics`` is one mapping per logged row (e.g. per epoch).  Points whose value is missing,
    ``None`` or non-finite are skipped; a key with no finite value in any row gets no line.  Rows
    without ``x_key`` use their position in ``metrics``.  Lines are labelled with
    :func:`metric_label`.  With nothing to draw the figure says "no data".  A run's own figure
    is :func:`plot_training`.
    """
    fig = _new_figure(CURVE_FIGSIZE)
    ax = fig.add_subplot()
    if _draw_lines(ax, metrics, [(k, metric_label(k)) for k in keys], x_key):
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    else:
        _note(ax)
    ax.set_xlabel(metric_label(x_key))
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _changes(metrics: Sequence[Mapping], key: str) -> bool:
    values = {_finite_float(row.get(key)) for row in metrics} - {None}
    return len(values) > 1


def plot_training(metrics: Sequence[Mapping[str, float]], path, title: str | None = None) -> Path:
    """A run's training curves (``metrics.jsonl`` rows), one panel per quantity, by epoch.

    Panels: the ELBO (the training pass's mean over the epoch's steps -- or, when β ≠ 1,
    the objective −(D + βR) -- and the test ELBO), the test rate R, the test distortion D,
    then the learning rate (log scale) if it changes and β if it changes. All numbers are per
    data point in nats. When the first epochs lie far below the rest, a panel's axis leaves
    them out and its legend says so.
    """
    panels: list[tuple[str, list[tuple[str, str]]]] = [
        (
            "ELBO (nats)",
            [
                ("train_elbo", "train (mean over the epoch)"),
                ("train_beta_elbo", "train −(D + βR) (mean over the epoch)"),
                ("test_elbo", "test"),
            ],
        ),
        ("test rate R (nats)", [("test_rate", "test")]),
        ("test distortion D (nats)", [("test_distortion", "test")]),
    ]
    if _changes(metrics, "lr"):
        panels.append(("learning rate", [("lr", "learning rate")]))
    if _changes(metrics, "beta"):
        panels.append(("β", [("beta", "β (the epoch's last step)")]))
    fig = _new_figure((CURVE_FIGSIZE[0], 0.7 + PANEL_HEIGHT * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (ylabel, keys) in zip(axes, panels, strict=True):
        if _draw_lines(ax, metrics, keys, "epoch"):
            if len(ax.get_legend_handles_labels()[1]) > 1 or ylabel.startswith("ELBO"):
                ax.legend(fontsize=7)
            ax.grid(True, alpha=0.3)
        else:
            _note(ax)
        ax.set_ylabel(ylabel, fontsize=9)
        if ylabel == "learning rate":
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("epoch")
    if title:
        fig.suptitle(title)
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


def _text_px(text: str, fontsize: float | None = None) -> tuple[float, float]:
    """Width and height in pixels (at :data:`DPI`) of ``text`` as the renderer draws it."""
    fig = Figure(dpi=DPI)
    FigureCanvasAgg(fig)
    box = fig.text(0, 0, text, fontsize=fontsize).get_window_extent(fig.canvas.get_renderer())
    return box.width, box.height


def _pixel_exact_axes(shape, title, xticks, yticks, xlabel: str = "", ylabel: str = ""):
    """A figure whose axes show ``shape`` data pixels at an integer magnification, at integer
    pixel offsets, so every tile and every 1-px separator is drawn the same width. The margins
    are the measured sizes of the tick labels, axis labels and title."""
    h, w = shape
    k = min(12, max(1, math.ceil(600 / max(h, w))))  # screen pixels per data pixel
    ylabels = [str(t) for t in (yticks or ((), ()))[1]]
    left = 8
    if ylabels:
        left += math.ceil(max(_text_px(t)[0] for t in ylabels)) + 8
    if ylabel:
        left += math.ceil(_text_px(ylabel)[1]) + 6
    bottom = 8
    if xticks and len(xticks[1]):
        bottom += math.ceil(max(_text_px(str(t))[1] for t in xticks[1])) + 8
    if xlabel:
        bottom += math.ceil(_text_px(xlabel)[1]) + 6
    title_w, title_h = _text_px(title, matplotlib.rcParams["axes.titlesize"]) if title else (0, 0)
    top = 8 + (math.ceil(title_h) + 10 if title else 0)
    fig_w = max(left + w * k + 12, math.ceil(title_w) + 24)
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
    tick_marks: bool = True,
) -> Path:
    """Draw a tiled grey ``(H, W)`` or colour ``(H, W, 3)`` array (NaN = separator, drawn
    white) and save it; ``tick_marks=False`` keeps the tick labels without their marks."""
    finite = array[np.isfinite(array)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    fig, ax = _pixel_exact_axes(array.shape[:2], title, xticks, yticks, xlabel, ylabel)
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
        if not tick_marks:  # labels of rows or columns, not of positions
            ax.tick_params(length=0)
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
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Images tiled in a grid (see :func:`tile_images`) with white 1-px separators.

    ``image_shape`` is the data's shape: ``(H, W)`` or ``(1, H, W)`` grey, ``(3, H, W)``
    colour, or ``(D,)`` for table rows, drawn as a heatmap (``nrow`` is then ignored).
    ``vmin``/``vmax`` fix the value scale (default ``[0, 1]``); ``None`` uses the data's min/max.
    ``row_labels`` (one per row; ``nrow`` defaults to their number) are written left of the
    rows, e.g. ``["data", "β = 0.1", ...]``.
    """
    arr = _to_numpy(images)
    if arr.ndim == 0 or arr.shape[0] == 0:
        return _note_figure(path, title)
    if row_labels is not None:
        row_labels = [str(t) for t in row_labels]
        nrow = len(row_labels) if nrow is None else nrow
        if nrow != len(row_labels):
            raise ValueError(f"{len(row_labels)} row labels for {nrow} rows; give one per row")
    if len(image_shape) == 1:
        rows = arr.reshape(arr.shape[0], -1)
        if row_labels is not None:
            groups = [(lab, g) for lab, g in zip(row_labels, np.array_split(rows, nrow))]
            return _plot_rows(groups, path, vmin=vmin, vmax=vmax, title=title)
        return _plot_rows([("", rows)], path, vmin=vmin, vmax=vmax, title=title)
    tiled = tile_images(arr, image_shape, nrow=nrow, pad=1, pad_value=_SEPARATOR)
    if row_labels is None:
        return _render_tiled(tiled, path, vmin=vmin, vmax=vmax, title=title)
    h = _image_shape(image_shape)[1]
    return _render_tiled(
        tiled,
        path,
        vmin=vmin,
        vmax=vmax,
        title=title,
        xticks=([], []),
        yticks=(_tile_centres(nrow, h), row_labels),
        tick_marks=False,
    )


def _columns(n: int, most: int = 10) -> int:
    """Columns for ``n`` images in full rows: ``n`` itself up to ``most``, else the largest
    divisor of ``n`` between ``most // 2 + 1`` and ``most`` (16 -> 8), else ``most``."""
    if n <= most:
        return n
    return next((d for d in range(most, most // 2, -1) if n % d == 0), most)


def plot_reconstructions(
    originals,
    reconstructions,
    image_shape,
    path,
    title: str | None = None,
    vmin=0.0,
    vmax=1.0,
    labels: tuple[str, str] = ("input", "reconstruction"),
) -> Path:
    """Pairs of rows: inputs, and right below each input its reconstruction; rows labelled.

    The images are laid out in full rows of at most 10 columns (:func:`_columns`: 16 images
    are two pairs of rows of 8; only an ``N`` with no divisor from 6 to 10 above 10 leaves
    blank cells in its last pair), and the pairs are set apart by a wider gap than the two
    rows of a pair. Both inputs hold ``N`` images, flattened or ``(N, H, W)`` /
    ``(N, C, H, W)``. For table rows (``image_shape == (D,)``) the inputs and the
    reconstructions are two labelled blocks of one heatmap.
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
        groups = [(labels[0], orig), (labels[1], recon)]
        return _plot_rows(groups, path, vmin=vmin, vmax=vmax, title=title)
    _, h, _ = _image_shape(image_shape)
    ncol = _columns(n)
    npair = math.ceil(n / ncol)
    gap = max(3, h // 4)  # between pairs; 1 px between the rows of a pair
    blocks, centres, top = [], [], 0.0
    for p in range(npair):
        rows = []
        for src in (orig, recon):
            row = np.full((ncol, size), _SEPARATOR)
            chunk = src[p * ncol : (p + 1) * ncol]
            row[: len(chunk)] = chunk
            rows.append(row)
        pair = tile_images(np.concatenate(rows), image_shape, nrow=2, pad_value=_SEPARATOR)
        if p:
            blocks.append(np.full((gap, *pair.shape[1:]), _SEPARATOR))
            top += gap
        blocks.append(pair)
        centres += [top + (h - 1) / 2, top + h + 1 + (h - 1) / 2]
        top += pair.shape[0]
    return _render_tiled(
        np.concatenate(blocks),
        path,
        vmin=vmin,
        vmax=vmax,
        title=title,
        xticks=([], []),
        yticks=(centres, list(labels) * npair),
        tick_marks=False,
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

#: the style of the ELBO contours R + D = c of the rate-distortion plane
CONTOUR_STYLE = {"ls": "--", "lw": 0.8, "color": "0.6"}
CONTOUR_LABEL = "R + D = −ELBO (dashed; labels: nats)"


def _data_range(values: Sequence[float], pad: float = 0.1) -> tuple[float, float]:
    """A padded axis range around ``values``; zero is included only when it lengthens the
    range by at most half (so the data is never squeezed into a corner of the axes)."""
    lo, hi = float(min(values)), float(max(values))
    if hi == lo:
        d = max(0.5, 0.1 * abs(hi))
        return lo - d, hi + d
    span = hi - lo
    if 0 < lo <= 0.5 * span:
        lo = 0.0
    elif -0.5 * span <= hi < 0:
        hi = 0.0
    span = hi - lo
    return lo - pad * span, hi + pad * span


def _rd_points(points: Sequence[Mapping]) -> list[tuple[float, float, Any, Any]]:
    pts = []
    for p in points:
        r, d = _finite_float(p.get("rate")), _finite_float(p.get("distortion"))
        if r is not None and d is not None:
            pts.append((r, d, p.get("label"), p.get("series")))
    return pts


def _draw_entropy_bound(ax, entropy: float, xlim, ylim) -> None:
    """The line R + D = H and the infeasible region R + D < H below it (shaded)."""
    xs = np.linspace(xlim[0], xlim[1], 200)
    bound = entropy - xs
    if not (bound > ylim[0]).any():  # entirely below the view: nothing to show
        return
    ax.plot(xs, bound, color="crimson", lw=1.5, zorder=2, label=f"R + D = H  (H = {entropy:.4g})")
    ax.fill_between(
        xs,
        ylim[0],
        np.maximum(bound, ylim[0]),
        color="crimson",
        alpha=0.08,
        lw=0,
        label="R + D < H: infeasible",
    )


def _contour_values(ax, totals: Sequence[float], min_px: float = 24.0) -> list[float]:
    """Round values c of R + D spanning ``totals`` whose lines, inside the view, lie at
    least ``min_px`` pixels apart (at most 5; none if even two would be closer)."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    sx, sy = ax.bbox.width / (x1 - x0), ax.bbox.height / (y1 - y0)
    lo, hi = float(min(totals)), float(max(totals))
    if hi - lo < 1e-9:
        lo, hi = lo - max(1.0, 0.1 * abs(lo)), hi + max(1.0, 0.1 * abs(hi))
    for nbins in (4, 3, 2, 1):
        values = [
            float(c) for c in MaxNLocator(nbins=nbins).tick_values(lo, hi) if x0 + y0 < c < x1 + y1
        ]
        if len(values) < 2:
            return values
        step = values[1] - values[0]
        if len(values) <= 5 and step / math.hypot(1 / sx, 1 / sy) >= min_px:  # line spacing
            return values
    return []


def draw_rate_distortion(
    ax,
    points: Sequence[Mapping],
    entropy: float | None = None,
    *,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    contours: bool = True,
    series: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Draw a rate-distortion plane on ``ax`` (without the point labels).

    The points (mappings with ``rate``, ``distortion`` and optional ``label`` and
    ``series``; non-finite ones skipped) get one colour and marker per series, in the order
    of ``series`` (default: first appearance), so several panels can share a legend. The
    axes show the data: zero is on an axis only when it is near the data
    (:func:`_data_range`), or give ``xlim``/``ylim``. With the data entropy ``entropy`` = H,
    the line R + D = H (where the bounds H − D ≤ I(X;Z) ≤ R meet) is drawn and the infeasible
    region R + D < H shaded. With ``contours``, dashed lines R + D = c (constant −ELBO) at
    round values, at least 24 px apart, are drawn (this lays the figure out to measure).
    Then :func:`annotate_rate_distortion` writes the labels.

    :returns: ``{"points": [(R, D, label, series), ...], "contours": [(c, line), ...]}``.
    """
    pts = _rd_points(points)
    ax.set_xlabel("rate R (nats)")
    ax.set_ylabel("distortion D (nats)")
    drawn: dict[str, Any] = {"points": pts, "contours": []}
    if not pts:
        _note(ax)
        return drawn
    xlim = xlim or _data_range([p[0] for p in pts])
    ylim = ylim or _data_range([p[1] for p in pts])
    if entropy is not None:
        _draw_entropy_bound(ax, float(entropy), xlim, ylim)
    order = list(series) if series is not None else []
    order += [s for s in dict.fromkeys(p[3] for p in pts) if s not in order]
    colours = matplotlib.colormaps["tab10"].colors
    for i, s in enumerate(order):
        sel = [p for p in pts if p[3] == s]
        if not sel:
            continue
        ax.scatter(
            [p[0] for p in sel],
            [p[1] for p in sel],
            marker=_MARKERS[i % len(_MARKERS)],
            color=colours[i % len(colours)],
            zorder=3,
            label=None if s is None else str(s),
        )
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.grid(True, alpha=0.3)
    if contours:
        _renderer(ax.figure)
        xs = np.array(xlim)
        for i, c in enumerate(_contour_values(ax, [p[0] + p[1] for p in pts])):
            label = CONTOUR_LABEL if i == 0 else None
            (line,) = ax.plot(xs, c - xs, zorder=1, label=label, **CONTOUR_STYLE)
            drawn["contours"].append((c, line))
    return drawn


def _label_contours(ax, contours, avoid: Sequence[Bbox], fontsize: float) -> list[Text]:
    """Write each contour's value on its line where the text meets nothing in ``avoid``;
    a line whose value finds no room is removed (a drawn contour is always labelled)."""
    renderer = ax.figure.canvas.get_renderer()  # laid out by the caller
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    frame, taken, texts = ax.bbox, list(avoid), []
    for c, line in contours:
        lo, hi = max(x0, c - y1), min(x1, c - y0)  # the visible stretch of R + D = c
        text = ax.text(
            lo,
            c - lo,
            f"{c:g}",
            fontsize=fontsize,
            color="0.35",
            ha="center",
            va="center",
            zorder=2,
            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none"},
        )
        for t in (0.88, 0.12, 0.5, 0.7, 0.3, 0.95, 0.05, 0.8, 0.2, 0.6, 0.4):
            r = lo + t * (hi - lo)
            text.set_position((r, c - r))
            box = text.get_window_extent(renderer).padded(1)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1
            inside = inside and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(_intersect(box, b) for b in taken):
                taken.append(box)
                texts.append(text)
                break
        else:
            text.remove()
            line.remove()
    return texts


def annotate_rate_distortion(ax, drawn: Mapping[str, Any], fontsize: float = 8) -> dict[int, str]:
    """Label what :func:`draw_rate_distortion` drew: each contour with its value (on the
    line, where there is room) and each point with its label (:func:`label_points`: no
    overlaps, numbers and a key when crowded). Call it once the figure has its legend and
    title, so the layout no longer moves.

    :returns: the key of numbered labels (see :func:`label_points`).
    """
    pts = drawn["points"]
    if not pts:
        return {}
    _renderer(ax.figure)
    centres = ax.transData.transform([(p[0], p[1]) for p in pts])
    r = _marker_radius_px(ax.figure)
    # a contour label keeps 12 px from every labelled point: room for the point's label
    pad = 12 if any(p[2] is not None for p in pts) else 0
    marks = [Bbox([[x - r - pad, y - r - pad], [x + r + pad, y + r + pad]]) for x, y in centres]
    texts = _label_contours(ax, drawn["contours"], marks, fontsize - 1)
    return label_points(
        ax,
        [(p[0], p[1]) for p in pts],
        [None if p[2] is None else str(p[2]) for p in pts],
        fontsize=fontsize,
        avoid=texts,
    )


def freeze_layout(fig: Figure) -> None:
    """Lay ``fig`` out one last time and keep that layout (labels placed in pixels stay put)."""
    fig.draw_without_rendering()
    fig.set_layout_engine("none")


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
    The axes show the data (zero only when it is near); dashed lines mark R + D = c (constant
    −ELBO), labelled with c.  With the data entropy ``entropy`` = H the line R + D = H, the edge
    of the feasible region, is drawn and the region below shaded.  Labels never overlap each
    other, a point or the axes' edges: crowded ones become numbers with a key beside the axes
    (:func:`label_points`).
    """
    fig = _new_figure(RD_FIGSIZE)
    ax = fig.add_subplot()
    if title:
        ax.set_title(title)
    drawn = draw_rate_distortion(ax, points, entropy)
    handles, labels = ax.get_legend_handles_labels()  # outside the axes: it covers no point
    if handles:
        fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncols=2)
    annotate_rate_distortion(ax, drawn)
    freeze_layout(fig)
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
