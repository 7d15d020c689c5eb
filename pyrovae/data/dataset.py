"""The :class:`Dataset` container shared by every loader, and :class:`DataError`.

A :class:`Dataset` holds three fixed splits (train / valid / test) as flat ``float32`` tensors of
shape ``(N, D)``. For images, ``D = C * H * W`` for ``image_shape == (H, W)`` and ``channels ==
C``, and each row is an image of shape ``(C, H, W)`` flattened in row-major order (torch's
layout: all of channel 0, then channel 1, ...). For a table (``image_shape`` None) a row is D
numbers. :attr:`Dataset.shape` is the one shape every part reads: ``(C, H, W)`` or ``(D,)``.

Values lie in ``[0, 1]`` (``unit_interval=True``, every built-in dataset, and a user's data
scaled to ``[0, 1]``); a user's standardised or unscaled data (``unit_interval=False``) need only
be finite. The container checks these invariants when it is built, so a loader that produces
anything else fails loudly instead of training on bad data.

A split too large for memory is a :class:`RowReader` instead of a tensor (the training split of
a large ``.npy`` file, :class:`pyrovae.data.files.NpyRows`): indexing it with a batch of row
indices reads those rows from disk. Its values are checked by its loader, a chunk at a time, and
not again here. :func:`iter_chunks` walks a tensor or a reader alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

SPLITS: tuple[str, ...] = ("train", "valid", "test")


class DataError(Exception):
    """A dataset cannot be found, fetched or read.

    The message is a single user-facing line naming the problem and how to fix it, so the CLI can
    print it as-is instead of a traceback.
    """


@runtime_checkable
class RowReader(Protocol):
    """A 2-D ``float32`` split that is read on demand instead of held in memory.

    ``reader[idx]`` (an int, a slice, or a 1-D integer tensor / array of row indices) returns
    a ``float32`` tensor of those rows, as ``tensor[idx]`` would; ``reader.chunks(rows)`` yields
    the split in order, ``rows`` rows at a time. Anything else a tensor offers (``.max()``,
    ``.to()``, arithmetic) is deliberately missing: reading a whole split must be explicit.

    Example:

    A training split kept on disk (``on_disk="always"``) is a reader:

    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> import torch
    >>> from pyrovae.data import RowReader, load_dataset
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "faces.npy")
    >>> np.save(path, np.random.default_rng(0).integers(0, 256, size=(100, 6, 5), dtype=np.uint8))
    >>> data = load_dataset(path, on_disk="always")
    >>> isinstance(data.train, RowReader), isinstance(data.train, torch.Tensor), data.on_disk
    (True, False, True)
    >>> data.train[torch.tensor([3, 0, 7])].shape  # reads three rows from the file
    torch.Size([3, 30])
    >>> [len(chunk) for chunk in data.train.chunks(32)]
    [32, 32, 16]
    >>> folder.cleanup()
    """

    shape: torch.Size
    dtype: torch.dtype

    def __len__(self) -> int: ...

    def __getitem__(self, index: Any) -> torch.Tensor: ...

    def dim(self) -> int: ...

    def chunks(self, rows: int) -> Iterator[torch.Tensor]: ...


def iter_chunks(x: torch.Tensor | RowReader, rows: int) -> Iterator[torch.Tensor]:
    """The rows of a split in order, at most ``rows`` at a time, as tensors (views of a tensor;
    fresh reads of a :class:`RowReader`). Memory stays bounded by one chunk either way."""
    if isinstance(x, torch.Tensor):
        yield from x.split(int(rows))
    else:
        yield from x.chunks(int(rows))


@dataclass(frozen=True)
class SplitStats:
    """One split's size and values, as :func:`pyrovae.data.inspect.split_stats` measures them.

    :ivar rows: the number of data points.
    :ivar low: the smallest value (NaN for an empty split, or when some value is not finite).
    :ivar high: the largest value (NaN for an empty split, or when some value is not finite).
    :ivar binary: every value is 0 or 1 (True for an empty split).
    :ivar finite: no value is NaN or infinite.

    Example:

    >>> from pyrovae.data import load_dataset, statistics
    >>> statistics(load_dataset("digits"))["test"]
    SplitStats(rows=250, low=0.0, high=1.0, binary=False, finite=True)
    """

    rows: int
    low: float
    high: float
    binary: bool
    finite: bool


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset of flattened images (or table rows) split into train / valid / test.

    :ivar name: registry name, e.g. ``"mnist-binarized"``, or the file name of a user's data.
    :ivar train: the training split, a ``float32`` tensor of shape ``(N_train, D)`` (or a
        :class:`RowReader` of that shape, for data kept on disk).
    :ivar valid: the validation split, likewise ``(N_valid, D)``.
    :ivar test: the test split, likewise ``(N_test, D)``.
    :ivar image_shape: ``(H, W)`` with ``channels * H * W == D``, or None for rows that are
        not images (a table).
    :ivar binary: every value the model sees is in ``{0, 1}``.
    :ivar dynamic_binarization: ``train`` holds grey-level probabilities and the trainer draws
        ``x ~ Bernoulli(train)`` afresh for each batch; ``valid`` and ``test`` are already
        binarised once, so evaluation is deterministic.
    :ivar source: folder the files were read from, ``"embedded"``, the path of a user's file,
        or ``"<numpy array>"``-like text for data given as an object.
    :ivar train_labels: ``int64`` class labels of ``train``, where the file format has them
        (``valid_labels`` and ``test_labels`` likewise), aligned with the split's rows.
    :ivar channels: ``C``, 1 (grey) or 3 (colour) for images; 1 for a table.
    :ivar unit_interval: every value lies in ``[0, 1]`` (checked); when False, values need only
        be finite (a user's standardised or unscaled data).
    :ivar stats: per-split value statistics computed by the loader
        (:func:`pyrovae.data.inspect.split_stats`), or None to compute them when asked
        (:func:`pyrovae.data.inspect.statistics`).

    Example:

    >>> from pyrovae.data import load_dataset
    >>> data = load_dataset("digits")
    >>> data
    Dataset(name='digits', splits=1297/250/250, shape=(1, 8, 8), binary=False, ...)
    >>> data.test.shape, data.test.dtype, data.data_dim, data.image_shape, data.channels
    (torch.Size([250, 64]), torch.float32, 64, (8, 8), 1)
    >>> data.test_labels[:5]
    tensor([0, 8, 5, 1, 4])
    """

    name: str
    train: torch.Tensor | RowReader
    valid: torch.Tensor | RowReader
    test: torch.Tensor | RowReader
    image_shape: tuple[int, int] | None
    binary: bool
    dynamic_binarization: bool
    source: str
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    valid_labels: torch.Tensor | None = None
    channels: int = 1
    unit_interval: bool = True
    stats: Mapping[str, SplitStats] | None = None

    def __post_init__(self) -> None:
        if self.image_shape is None:
            if self.channels != 1:
                raise ValueError(f"{self.name}: channels needs an image_shape")
            dim = self.train.shape[-1] if _is_split(self.train) else -1
        else:
            height, width = self.image_shape
            dim = self.channels * height * width
        if self.dynamic_binarization and not self.binary:
            raise ValueError(f"{self.name}: dynamic_binarization requires binary=True")
        if self.binary and not self.unit_interval:
            raise ValueError(f"{self.name}: binary data lies in [0, 1]; set unit_interval=True")
        for split in SPLITS:
            x = getattr(self, split)
            if not _is_split(x) or x.dtype != torch.float32 or x.dim() != 2:
                raise ValueError(f"{self.name}.{split} must be a 2-D float32 tensor")
            if x.shape[1] != dim:
                raise ValueError(
                    f"{self.name}.{split} has {x.shape[1]} columns, image_shape {self.image_shape} "
                    f"needs {dim}"
                )
            if isinstance(x, torch.Tensor):  # a RowReader's loader checks it, chunk by chunk
                self._check_values(split, x)
            labels = getattr(self, f"{split}_labels")
            if labels is not None and (labels.dtype != torch.int64 or labels.shape != x.shape[:1]):
                raise ValueError(f"{self.name}.{split}_labels must be int64 of shape ({len(x)},)")

    def _check_values(self, split: str, x: torch.Tensor) -> None:
        if self.unit_interval:
            if x.numel() and (x.min() < 0 or x.max() > 1):
                raise ValueError(f"{self.name}.{split} has values outside [0, 1]")
        elif not torch.isfinite(x).all():
            raise ValueError(f"{self.name}.{split} has NaN or infinite values")
        must_be_binary = self.binary and not (split == "train" and self.dynamic_binarization)
        if must_be_binary and not torch.logical_or(x == 0, x == 1).all():
            raise ValueError(f"{self.name}.{split} is declared binary but is not 0/1")

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one data point: ``(C, H, W)`` for images, ``(D,)`` for a table."""
        if self.image_shape is None:
            return (self.data_dim,)
        return (self.channels, *self.image_shape)

    @property
    def data_dim(self) -> int:
        """The number of pixels ``D`` of one flattened image."""
        return self.train.shape[1]

    @property
    def on_disk(self) -> bool:
        """Some split is a :class:`RowReader`, read from disk batch by batch."""
        return any(not isinstance(getattr(self, s), torch.Tensor) for s in SPLITS)

    def split(self, name: str) -> torch.Tensor | RowReader:
        """Return the ``"train"``, ``"valid"`` or ``"test"`` split."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def __repr__(self) -> str:
        sizes = "/".join(str(len(getattr(self, s))) for s in SPLITS)
        return (
            f"Dataset(name={self.name!r}, splits={sizes}, shape={self.shape}, "
            f"binary={self.binary}, dynamic_binarization={self.dynamic_binarization}, "
            f"source={self.source!r})"
        )


def _is_split(x: object) -> bool:
    return isinstance(x, (torch.Tensor, RowReader))


def permutation_split(
    n: int, n_valid: int, n_test: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed train / valid / test indices for a dataset that ships without a split.

    ``perm = numpy.random.default_rng(seed).permutation(n)``; train is ``perm[: n - n_valid -
    n_test]``, valid the next ``n_valid`` entries and test the last ``n_test``, each kept in
    permutation order.
    """
    perm = np.random.default_rng(seed).permutation(n)
    n_train = n - n_valid - n_test
    return perm[:n_train], perm[n_train : n_train + n_valid], perm[n_train + n_valid :]
