"""Statically binarised MNIST (Larochelle & Murray, 2011), the "static binarised MNIST" of NADE,
IWAE and most VAE papers.

Files, in ``<data_dir>/binarized_mnist/`` (sha256 in :mod:`pyrovae.data.download`)::

    binarized_mnist_train.amat   50000 images
    binarized_mnist_valid.amat   10000 images
    binarized_mnist_test.amat    10000 images (in class order)

``.amat`` is a text format: one image per line, 784 space-separated values ``0``/``1`` in
row-major 28 x 28 order. The published files are uncompressed; a gzip of each (``.amat.gz``) is
accepted too. The splits are the published ones; there are no labels. Published pixel means are
0.1306 / 0.1311 / 0.1325.

Canonical source: http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/
(research use, no stated licence).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from .dataset import DataError, Dataset
from .download import ensure_files

IMAGE_SHAPE = (28, 28)
N_PIXELS = 784
SPLIT_SIZES = {"train": 50000, "valid": 10000, "test": 10000}
_LINE = 2 * N_PIXELS  # "0 1 ... 0\n": one digit and one separator per value


def _parse_strict(data: bytes) -> np.ndarray | None:
    """Parse canonical ``.amat`` bytes (single spaces, ``\\n`` endings) or return ``None``."""
    if len(data) % _LINE:
        return None
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, _LINE)
    digits, separators = rows[:, 0::2], rows[:, 1::2]
    if not ((digits | 1) == ord("1")).all():  # every value is "0" or "1"
        return None
    if not ((separators[:, :-1] == ord(" ")).all() and (separators[:, -1] == ord("\n")).all()):
        return None
    return (digits == ord("1")).astype(np.uint8)


def parse_amat(data: bytes, origin: str = "<bytes>") -> np.ndarray:
    """Parse ``.amat`` text into a ``uint8`` array of shape ``(N, 784)`` with values 0/1.

    The canonical layout is parsed with a few vectorised passes; other whitespace (tabs, CRLF,
    repeated spaces, trailing blanks, empty lines) falls back to a line-by-line normalisation.
    """
    parsed = _parse_strict(data)
    if parsed is not None:
        return parsed
    lines, numbers = [], []
    for number, line in enumerate(data.split(b"\n"), start=1):
        tokens = line.split()
        if tokens:
            lines.append(b" ".join(tokens))
            numbers.append(number)
    parsed = _parse_strict(b"\n".join(lines) + b"\n") if lines else np.zeros((0, N_PIXELS))
    if parsed is not None:
        return parsed.astype(np.uint8)
    for number, line in zip(numbers, lines, strict=True):
        tokens = line.split()
        if len(tokens) != N_PIXELS or not set(tokens) <= {b"0", b"1"}:
            raise DataError(
                f"{origin} line {number} has {len(tokens)} values, expected {N_PIXELS} values "
                "0/1; the file is corrupt or not a binarised-MNIST .amat file; delete it and "
                "download it again"
            )
    raise DataError(
        f"{origin} is not a binarised-MNIST .amat file; delete it and download it again"
    )


def read_amat(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a ``.amat`` or ``.amat.gz`` file into a ``uint8`` array of shape ``(N, 784)``."""
    path = Path(path)
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path} ({e}); delete it and download it again") from e
    return parse_amat(data, str(path))


def _split(paths: dict[str, Path], split: str) -> torch.Tensor:
    path = paths[f"binarized_mnist_{split}.amat"]
    pixels = read_amat(path)
    if len(pixels) != SPLIT_SIZES[split]:
        raise DataError(
            f"{path} has {len(pixels)} images, expected {SPLIT_SIZES[split]}; delete it and "
            "download it again"
        )
    return torch.from_numpy(pixels.astype(np.float32))


def load_binarized_mnist(
    data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> Dataset:
    """Static binarised MNIST, 50000 / 10000 / 10000, values in ``{0, 1}``."""
    paths = ensure_files("binarized_mnist", data_dir, download, dataset="mnist-binarized")
    return Dataset(
        name="mnist-binarized",
        train=_split(paths, "train"),
        valid=_split(paths, "valid"),
        test=_split(paths, "test"),
        image_shape=IMAGE_SHAPE,
        binary=True,
        dynamic_binarization=False,
        source=str(next(iter(paths.values())).parent),
    )
