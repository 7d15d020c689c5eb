"""Datasets of images for VAEs, as flat ``float32`` tensors in ``[0, 1]`` with fixed splits.

===================  =======  =====================  ======  ==================================
name                 image    train / valid / test   values  files
===================  =======  =====================  ======  ==================================
``digits``           8 x 8    1297 / 250 / 250       grey    embedded (works offline)
``mnist``            28 x 28  50000 / 10000 / 10000  grey    ``<data_dir>/mnist/``
``mnist-dynamic``    28 x 28  50000 / 10000 / 10000  binary  ``<data_dir>/mnist/``
``mnist-binarized``  28 x 28  50000 / 10000 / 10000  binary  ``<data_dir>/binarized_mnist/``
``frey``             28 x 20  1565 / 200 / 200       grey    ``<data_dir>/frey/``
===================  =======  =====================  ======  ==================================

Each loader's module documents its file format, split and source. The data folder is resolved by
:func:`resolve_data_dir`; missing files are downloaded and every file's sha256 is checked (see
:mod:`pyrovae.data.download`). Every failure is a one-line :class:`DataError`.

Example::

    from pyrovae.data import load_dataset

    data = load_dataset("mnist-binarized")  # downloads into ~/.cache/pyrovae on first use
    x = data.split("train")                 # float32 (50000, 784), values in {0, 1}
"""

from __future__ import annotations

import os
from pathlib import Path

from pyrovae import registry
from pyrovae.options import Option

from .binarized_mnist import load_binarized_mnist
from .dataset import DataError, Dataset
from .digits import embedded_status, load_digits
from .download import file_status, resolve_data_dir
from .frey import load_frey
from .mnist import load_mnist, load_mnist_dynamic

__all__ = [
    "DATASET_NAMES",
    "DataError",
    "Dataset",
    "dataset_status",
    "load_binarized_mnist",
    "load_dataset",
    "load_digits",
    "load_frey",
    "load_mnist",
    "load_mnist_dynamic",
    "resolve_data_dir",
]

#: the built-in datasets; :data:`pyrovae.registry.DATASETS` maps each name to its loader
DATASET_NAMES: tuple[str, ...] = registry.DATASETS.names()

DATA_DIR = Option(
    "data_dir",
    None,
    "Folder of dataset files; none = $PYROVAE_DATA, else ~/.cache/pyrovae.",
    type=Path,
    nullable=True,
    resumable=True,
)
#: the options every dataset reads (a loader may declare more)
OPTIONS = (DATA_DIR,)


def load_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, download: bool = True
) -> Dataset:
    """Load a dataset by its :data:`DATASET_NAMES` entry.

    Args:
        name: one of :data:`DATASET_NAMES`.
        data_dir: the data folder; defaults to ``$PYROVAE_DATA``, then the per-user cache folder
            (see :func:`resolve_data_dir`). Ignored by the embedded ``"digits"``.
        download: fetch missing files from their canonical URLs (or ``$PYROVAE_MIRROR``);
            when ``False`` a missing file is a :class:`DataError` naming what to put where.

    Raises:
        DataError: unknown name, missing or corrupt file, or a failed download.
    """
    if name not in registry.DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if data_dir is not None and name != "digits" and not Path(data_dir).expanduser().is_dir():
        raise DataError(
            f"data folder {data_dir} does not exist; create it (missing files are downloaded "
            "into it) or point --data-dir at the folder holding mnist/, binarized_mnist/, frey/"
        )
    return registry.DATASETS.get(name)(data_dir, download)


def dataset_status(data_dir: str | os.PathLike[str] | None = None) -> list[dict]:
    """One dict per dataset file, embedded ones included, for ``pyrovae datasets``.

    Keys: ``dataset`` (its :data:`DATASET_NAMES` entry), ``file`` (file name), ``path``
    (``str``), ``present`` (bool), ``sha256_ok`` (bool, or ``None`` when absent), ``used_by``
    (every dataset name that reads the file) and ``url`` (where it is downloaded from, ``None``
    for embedded files). A present file is hashed at most once per process.
    """
    return [embedded_status(), *file_status(data_dir)]
