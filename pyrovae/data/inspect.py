"""What a dataset holds, in a few lines: the summary printed at load and by ``pyrovae datasets``.

:func:`split_stats` reads a split once, a chunk of rows at a time (a split kept on disk is never
read whole), and returns its size, value range and whether it is binary. Loaders of a user's
data compute these while they check the data and keep them on the :class:`Dataset`
(``stats``); :func:`statistics` returns those, or computes them for a built-in dataset.
:func:`describe` turns them into the summary::

    faces.npy: 1437 / 179 / 181 (train / valid / test) grey images of 1 x 8 x 8
      values in [0, 1], grey levels (not binary); held in memory
      source /home/me/faces.npy

Parts that need the data's shape or scale (image plots, the manifold, conv networks, the
VampPrior's pseudo-inputs, BAGGINS's data scale) read :attr:`Dataset.shape` and
:func:`statistics`, never a built-in dataset's name.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

import torch

from .dataset import SPLITS, Dataset, RowReader, SplitStats, iter_chunks

#: values read per chunk when a split is scanned (float32: 4 MiB)
CHUNK_VALUES = 1 << 20


def chunk_rows(dim: int) -> int:
    """Rows per chunk for rows of ``dim`` values: about :data:`CHUNK_VALUES` values."""
    return max(1, CHUNK_VALUES // max(1, int(dim)))


def split_stats(x: torch.Tensor | RowReader) -> SplitStats:
    """Size, range, binariness and finiteness of a 2-D split, read a chunk at a time."""
    return chunk_stats(iter_chunks(x, chunk_rows(x.shape[1])), int(x.shape[0]))


@torch.no_grad()
def chunk_stats(chunks: Iterable[torch.Tensor], rows: int) -> SplitStats:
    """:class:`SplitStats` of a split of ``rows`` rows given as chunks, in any order."""
    low, high = math.inf, -math.inf
    binary = finite = True
    for chunk in chunks:
        if not chunk.numel():
            continue
        chunk_low, chunk_high = (v.item() for v in torch.aminmax(chunk))  # NaN propagates
        if not (math.isfinite(chunk_low) and math.isfinite(chunk_high)):
            finite = False
        low, high = min(low, chunk_low), max(high, chunk_high)
        if binary:  # a full pass only while every chunk so far was binary
            ends_binary = chunk_low in (0.0, 1.0) and chunk_high in (0.0, 1.0)
            binary = ends_binary and bool(torch.logical_or(chunk == 0, chunk == 1).all())
    if not finite or low > high:
        low = high = math.nan
    return SplitStats(rows=int(rows), low=low, high=high, binary=binary, finite=finite)


def statistics(dataset: Dataset) -> dict[str, SplitStats]:
    """Per-split :class:`SplitStats`: the loader's (``dataset.stats``), else measured now.

    Stored statistics whose sizes no longer match the splits (a dataset copied with
    ``dataclasses.replace`` and other splits) are measured again; give such a copy
    ``stats=None`` when its splits differ in values only.
    """
    stored = dataset.stats
    if stored is not None and all(stored[s].rows == len(dataset.split(s)) for s in SPLITS):
        return dict(stored)
    return {s: split_stats(dataset.split(s)) for s in SPLITS}


def value_range(dataset: Dataset) -> tuple[float, float]:
    """The smallest and largest value over all splits (what plots use as their grey scale)."""
    stats = [s for s in statistics(dataset).values() if s.rows]
    return min(s.low for s in stats), max(s.high for s in stats)


def describe(dataset: Dataset) -> str:
    """The dataset's summary, three lines: sizes and shape; values; source.

    Sizes per split, the shape of one data point (and whether it is a grey or colour image or a
    table row), the value range, whether the data is binary (or binarised afresh for each
    batch), and whether a split is read from disk per batch or held in memory.
    """
    stats = statistics(dataset)
    sizes = " / ".join(str(stats[s].rows) for s in SPLITS)
    return "\n".join(
        (
            f"{dataset.name}: {sizes} (train / valid / test) {_kind(dataset)}",
            f"  {_values(dataset)}; {_storage(dataset)}",
            f"  source {dataset.source}",
        )
    )


def _kind(dataset: Dataset) -> str:
    shape = " x ".join(str(s) for s in dataset.shape)
    if dataset.image_shape is None:
        return f"table rows of {dataset.data_dim} numbers"
    colour = "colour" if dataset.channels == 3 else "grey"
    return f"{colour} images of {shape} (C x H x W)"


def _values(dataset: Dataset) -> str:
    low, high = value_range(dataset)
    text = f"values in [{low:.4g}, {high:.4g}]"
    if dataset.dynamic_binarization:
        return f"{text}, binary: train binarised afresh for each batch, valid and test once"
    if dataset.binary:
        return f"{text}, binary (0/1)"
    return f"{text}, {'grey levels' if dataset.unit_interval else 'real numbers'} (not binary)"


def _storage(dataset: Dataset) -> str:
    on_disk = [s for s in SPLITS if not isinstance(dataset.split(s), torch.Tensor)]
    if not on_disk:
        return "held in memory"
    where = ", ".join(on_disk)
    path = getattr(dataset.split(on_disk[0]), "path", None)
    size = f" ({_bytes(os.path.getsize(path))} file)" if path and os.path.exists(path) else ""
    return f"{where} read from disk per batch{size}, the rest held in memory"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
