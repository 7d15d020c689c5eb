"""UCI optical-recognition handwritten digits, embedded in the package so it works offline.

File: ``pyrovae/data/embedded/digits.csv.gz`` (origin, licence and sha256 in
``embedded/README.md``; the loader verifies the sha256). It is the copy scikit-learn ships,
1797 lines of 65 comma-separated integers: 64 pixels of an 8 x 8 image in row-major order, each a
count 0..16 of "on" pixels in a 4 x 4 block of the original 32 x 32 bitmap, then the label 0..9.
Pixels are divided by 16 into ``[0, 1]``.

Split: the file has none, so a fixed one is drawn once:
``perm = numpy.random.default_rng(0).permutation(1797)``; train is ``perm[:1297]``, valid
``perm[1297:1547]`` and test ``perm[1547:]`` (1297 / 250 / 250 images, each in permutation order;
see :func:`pyrovae.data.dataset.permutation_split`).

Source: Alpaydin & Kaynak, UCI Machine Learning Repository, CC BY 4.0.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from importlib import resources

import numpy as np
import torch

from .dataset import DataError, Dataset, permutation_split

FILE = "digits.csv.gz"
SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
IMAGE_SHAPE = (8, 8)
N_IMAGES = 1797
N_VALID = 250
N_TEST = 250
SPLIT_SEED = 0
MAX_VALUE = 16

_REINSTALL = "the pyrovae installation is damaged; reinstall it"


def embedded_file():
    """The embedded file, as an :mod:`importlib.resources` traversable."""
    return resources.files(__package__).joinpath("embedded", FILE)


def embedded_status() -> dict:
    """The :func:`pyrovae.data.dataset_status` row of the embedded file."""
    file = embedded_file()
    try:
        raw = file.read_bytes()
    except OSError:
        raw = None
    return {
        "dataset": "digits",
        "file": FILE,
        "path": str(file),
        "present": raw is not None,
        "sha256_ok": None if raw is None else hashlib.sha256(raw).hexdigest() == SHA256,
        "used_by": ("digits",),
        "url": None,
    }


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """The embedded images as ``uint8`` ``(1797, 64)`` counts 0..16, and ``int64`` labels."""
    try:
        raw = embedded_file().read_bytes()
    except OSError as e:
        raise DataError(f"cannot read the embedded {FILE} ({e}); {_REINSTALL}") from e
    actual = hashlib.sha256(raw).hexdigest()
    if actual != SHA256:
        raise DataError(f"embedded {FILE} has sha256 {actual}, expected {SHA256}; {_REINSTALL}")
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64)
    pixels, labels = table[:, :-1], table[:, -1]
    if table.shape != (N_IMAGES, 65) or pixels.min() < 0 or pixels.max() > MAX_VALUE:
        raise DataError(f"embedded {FILE} has an unexpected layout; {_REINSTALL}")
    return pixels.astype(np.uint8), labels


def load_digits(data_dir: object = None, download: bool = True) -> Dataset:
    """The 8 x 8 digits, 1297 / 250 / 250, grey levels in ``[0, 1]``, with labels.

    Embedded in the package: ``data_dir`` and ``download`` are accepted for a uniform
    loader signature and ignored.
    """
    pixels, labels = read_digits()
    x = torch.from_numpy(pixels.astype(np.float32) / np.float32(MAX_VALUE))
    y = torch.from_numpy(labels)
    train, valid, test = permutation_split(N_IMAGES, N_VALID, N_TEST, SPLIT_SEED)
    return Dataset(
        name="digits",
        train=x[train],
        valid=x[valid],
        test=x[test],
        image_shape=IMAGE_SHAPE,
        binary=False,
        dynamic_binarization=False,
        source="embedded",
        train_labels=y[train],
        test_labels=y[test],
        valid_labels=y[valid],
    )
