"""Frey Face: 1965 greyscale 28 x 20 frames of Brendan Frey's face (distributed by Sam Roweis).

File, in ``<data_dir>/frey/`` (sha256 in :mod:`pyrovae.data.download`)::

    frey_rawface.mat   MATLAB 5 file, variable ``ff``: uint8, shape (560, 1965)

Frame ``i`` is ``ff.T.reshape(-1, 28, 20)[i]`` (28 rows, 20 columns); pixels are ``uint8 / 255``.

Split: the file has none, so a fixed one is drawn once:
``perm = numpy.random.default_rng(0).permutation(1965)``; train is ``perm[:1565]``, valid
``perm[1565:1765]`` and test ``perm[1765:]`` (1565 / 200 / 200 frames, each in permutation order;
see :func:`pyrovae.data.dataset.permutation_split`). Consecutive video frames are near-duplicates,
so valid/test are not independent of train: the split measures fit, not generalisation to new
faces.

Canonical source: https://cs.nyu.edu/~roweis/data/frey_rawface.mat (research use, no stated
licence).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.io
import torch

from .dataset import DataError, Dataset, permutation_split
from .download import ensure_files

FILE = "frey_rawface.mat"
IMAGE_SHAPE = (28, 20)
N_FRAMES = 1965
N_VALID = 200
N_TEST = 200
SPLIT_SEED = 0


def read_frey(path: str | os.PathLike[str]) -> np.ndarray:
    """Read ``frey_rawface.mat`` into a ``uint8`` array of frames, shape ``(1965, 28, 20)``."""
    path = Path(path)
    try:
        ff = scipy.io.loadmat(path, variable_names=["ff"]).get("ff")
    except Exception as e:  # scipy raises ValueError, MatReadError, OSError, ... on bad files
        reason = " ".join(str(e).split())
        raise DataError(
            f"cannot read {path} as a MATLAB file ({reason}); delete it and download it again"
        ) from e
    if ff is None or ff.dtype != np.uint8 or ff.shape != (28 * 20, N_FRAMES):
        found = "no variable ff" if ff is None else f"ff of {ff.dtype} {ff.shape}"
        raise DataError(
            f"{path} holds {found}, expected ff of uint8 (560, {N_FRAMES}); delete it and "
            "download it again"
        )
    return ff.T.reshape(-1, *IMAGE_SHAPE)


def load_frey(data_dir: str | os.PathLike[str] | None = None, download: bool = True) -> Dataset:
    """Frey Face, 1565 / 200 / 200 frames of 28 x 20, grey levels in ``[0, 1]``."""
    path = ensure_files("frey", data_dir, download, dataset="frey")[FILE]
    frames = read_frey(path).reshape(N_FRAMES, -1).astype(np.float32) / np.float32(255)
    train, valid, test = (
        torch.from_numpy(frames[idx])
        for idx in permutation_split(N_FRAMES, N_VALID, N_TEST, SPLIT_SEED)
    )
    return Dataset(
        name="frey",
        train=train,
        valid=valid,
        test=test,
        image_shape=IMAGE_SHAPE,
        binary=False,
        dynamic_binarization=False,
        source=str(path.parent),
    )
