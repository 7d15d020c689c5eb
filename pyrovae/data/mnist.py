"""MNIST (LeCun, Cortes & Burges) from the four official IDX files, grey or dynamically binarised.

Files, in ``<data_dir>/mnist/`` (gzip of the IDX format, as published; sha256 in
:mod:`pyrovae.data.download`)::

    train-images-idx3-ubyte.gz  60000 x 28 x 28 uint8     t10k-images-idx3-ubyte.gz  10000 x 28 x 28
    train-labels-idx1-ubyte.gz  60000 uint8 in 0..9       t10k-labels-idx1-ubyte.gz  10000

IDX format: a big-endian header ``0x00 0x00 <dtype> <ndim>`` (magic ``0x00000803`` for uint8
images with 3 dims, ``0x00000801`` for uint8 labels with 1 dim), then ``ndim`` big-endian uint32
sizes, then the values in row-major order.

Split (the usual one): train = the first 50000 training images, valid = the last 10000 training
images, test = the 10000 t10k images. Pixels are ``uint8 / 255`` in ``[0, 1]``.

``"mnist"`` keeps the grey levels (``binary=False``). ``"mnist-dynamic"`` keeps the grey levels of
``train`` as Bernoulli probabilities that the trainer samples afresh for each batch
(``dynamic_binarization=True``), while ``valid`` and ``test`` are binarised once, as
``torch.rand(shape, generator=torch.Generator().manual_seed(BINARIZATION_SEED)) < p`` (valid
first, then test, from the same generator), so evaluation is deterministic.

Licence: MNIST is distributed under CC BY-SA 3.0.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .dataset import DataError, Dataset
from .download import ensure_files

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"

IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions
LABELS_MAGIC = 0x00000801  # uint8, 1 dimension
IMAGE_SHAPE = (28, 28)
N_TRAIN = 50000  # the first 50000 training images; the last 10000 are the validation split
BINARIZATION_SEED = 0  # seed of the one-off binarisation of mnist-dynamic's valid and test


def read_idx(path: str | os.PathLike[str], magic: int) -> np.ndarray:
    """Read an IDX file (gzip-compressed when its name ends in ``.gz``) of the given magic."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path} ({e}); delete it and download it again") from e
    kind = "images" if magic == IMAGES_MAGIC else "labels"
    if len(data) < 4 or struct.unpack_from(">I", data)[0] != magic:
        found = f"{struct.unpack_from('>I', data)[0]:#010x}" if len(data) >= 4 else "nothing"
        raise DataError(
            f"{path} is not an IDX {kind} file (magic number {found}, expected {magic:#010x}); "
            "delete it and download it again"
        )
    ndim = magic & 0xFF
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DataError(f"{path} has a truncated IDX header; delete it and download it again")
    shape = struct.unpack_from(f">{ndim}I", data, 4)
    expected = int(np.prod(shape))
    if len(data) - offset != expected:
        raise DataError(
            f"{path} holds {len(data) - offset} values but its IDX header {shape} announces "
            f"{expected}; delete it and download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _read_pair(images_path: Path, labels_path: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape != (count, *IMAGE_SHAPE) or labels.shape != (count,):
        raise DataError(
            f"{images_path} and {labels_path} hold {images.shape} images and {labels.shape} "
            f"labels, expected ({count}, 28, 28) and ({count},); delete them and download again"
        )
    if labels.max() > 9:
        raise DataError(f"{labels_path} has labels outside 0..9; delete it and download it again")
    return images.reshape(count, -1), labels


def _grey(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels.astype(np.float32)).div_(255.0)


def _labels(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(labels.astype(np.int64))


def _read_mnist(
    data_dir: str | os.PathLike[str] | None, download: bool, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    paths = ensure_files("mnist", data_dir, download, dataset=name)
    train_x, train_y = _read_pair(paths[TRAIN_IMAGES], paths[TRAIN_LABELS], 60000)
    test_x, test_y = _read_pair(paths[TEST_IMAGES], paths[TEST_LABELS], 10000)
    return train_x, train_y, test_x, test_y, str(paths[TRAIN_IMAGES].parent)


def load_mnist(data_dir: str | os.PathLike[str] | None = None, download: bool = True) -> Dataset:
    """Grey-level MNIST, 50000 / 10000 / 10000, pixels in ``[0, 1]``."""
    train_x, train_y, test_x, test_y, source = _read_mnist(data_dir, download, "mnist")
    return Dataset(
        name="mnist",
        train=_grey(train_x[:N_TRAIN]),
        valid=_grey(train_x[N_TRAIN:]),
        test=_grey(test_x),
        image_shape=IMAGE_SHAPE,
        binary=False,
        dynamic_binarization=False,
        source=source,
        train_labels=_labels(train_y[:N_TRAIN]),
        test_labels=_labels(test_y),
        valid_labels=_labels(train_y[N_TRAIN:]),
    )


def load_mnist_dynamic(
    data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> Dataset:
    """MNIST for dynamic binarisation: grey ``train`` probabilities, fixed binary valid/test."""
    train_x, train_y, test_x, test_y, source = _read_mnist(data_dir, download, "mnist-dynamic")
    generator = torch.Generator().manual_seed(BINARIZATION_SEED)
    valid = _grey(train_x[N_TRAIN:])
    valid = (torch.rand(valid.shape, generator=generator) < valid).to(torch.float32)
    test = _grey(test_x)
    test = (torch.rand(test.shape, generator=generator) < test).to(torch.float32)
    return Dataset(
        name="mnist-dynamic",
        train=_grey(train_x[:N_TRAIN]),
        valid=valid,
        test=test,
        image_shape=IMAGE_SHAPE,
        binary=True,
        dynamic_binarization=True,
        source=source,
        train_labels=_labels(train_y[:N_TRAIN]),
        test_labels=_labels(test_y),
        valid_labels=_labels(train_y[N_TRAIN:]),
    )
