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

Your own data — a ``.npy`` / ``.npz`` / ``.pt`` file, a folder of PNG/JPEG images, a CSV table,
a numpy array, a torch tensor or a ``torch.utils.data.Dataset`` — is loaded by the same
:func:`load_dataset`, with the options of :data:`OPTIONS` (scaling, binarisation, split,
shape; see :mod:`pyrovae.data.files`), and a ``.npy`` file larger than memory is read from disk
batch by batch. :func:`describe` is the summary printed at load and by ``pyrovae datasets``.

Example::

    from pyrovae.data import describe, load_dataset

    data = load_dataset("mnist-binarized")  # downloads into ~/.cache/pyrovae on first use
    x = data.split("train")                 # float32 (50000, 784), values in {0, 1}
    mine = load_dataset("faces.npy", binarize="dynamic")  # your (N, H, W) uint8 array
    print(describe(mine))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrovae import registry
from pyrovae.options import Option

from .binarized_mnist import load_binarized_mnist
from .dataset import DataError, Dataset, RowReader, iter_chunks
from .digits import embedded_status, load_digits
from .download import file_status, resolve_data_dir
from .files import OPTIONS as USER_OPTIONS
from .files import DataOptions, load_user_data
from .frey import load_frey
from .inspect import describe, statistics
from .mnist import load_mnist, load_mnist_dynamic

__all__ = [
    "DATASET_NAMES",
    "DataError",
    "Dataset",
    "RowReader",
    "check_run_data",
    "dataset_status",
    "describe",
    "iter_chunks",
    "load_binarized_mnist",
    "load_configured",
    "load_dataset",
    "load_digits",
    "load_frey",
    "load_mnist",
    "load_mnist_dynamic",
    "resolve_data_dir",
    "statistics",
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
#: the options of the data section: the data folder, then those of a user's data
#: (:data:`pyrovae.data.files.OPTIONS`: scaling, binarize, data_seed, valid_fraction,
#: test_fraction, data_shape, channels_last, resize, on_disk)
OPTIONS = (DATA_DIR, *USER_OPTIONS)

#: what :func:`load_dataset` accepts as a source besides a name
Source = str | os.PathLike | np.ndarray | torch.Tensor | torch.utils.data.Dataset


def load_dataset(
    source: Source,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    **options: Any,
) -> Dataset:
    """Load a built-in dataset by name, or your own data.

    :param source: one of :data:`DATASET_NAMES`; or the path of a ``.npy``, ``.npz``, ``.pt``
        or ``.csv`` file or of a folder of images (a string that is not a dataset name is a
        path); or a numpy array, a torch tensor or a map-style ``torch.utils.data.Dataset``
        (items a tensor or a ``(tensor, label)`` pair).
    :param data_dir: the folder of the built-in datasets' files; defaults to ``$PYROVAE_DATA``,
        then the per-user cache folder (see :func:`resolve_data_dir`). Ignored by the
        embedded ``"digits"`` and by your own data.
    :param download: fetch missing files of a built-in dataset from their canonical URLs (or
        ``$PYROVAE_MIRROR``); when ``False`` a missing file is a :class:`DataError` naming
        what to put where.
    :param options: for your own data, the options of :data:`pyrovae.data.files.OPTIONS`
        (``scaling="unit"``, ``binarize="none"``, ``data_seed=0``,
        ``valid_fraction=0.1``, ``test_fraction=0.1``, ``data_shape=()``,
        ``channels_last=False``, ``resize=()``, ``on_disk="auto"``). A built-in dataset
        has its own fixed scaling and split and takes none of them.
    :returns: the :class:`Dataset`, its three splits as flat ``float32`` rows.
    :raises DataError: unknown name and no such file, an unreadable or invalid file (the
        message names it and the fix), a failed download, or an option a built-in dataset
        refuses.

    Example:

    >>> import numpy as np
    >>> from pyrovae.data import load_dataset
    >>> digits = load_dataset("digits")  # embedded in the package: no files, no network
    >>> digits.train.shape, digits.shape
    (torch.Size([1297, 64]), (1, 8, 8))
    >>> faces = np.random.default_rng(0).integers(0, 256, size=(100, 6, 5), dtype=np.uint8)
    >>> mine = load_dataset(faces, binarize="static")  # pixels / 255, binarised; 80/10/10 split
    >>> [len(mine.split(s)) for s in ("train", "valid", "test")], mine.binary
    ([80, 10, 10], True)
    >>> load_dataset("digits", binarize="static")
    Traceback (most recent call last):
        ...
    pyrovae.data.dataset.DataError: --binarize applies to your own data; the built-in 'digits' ...
    """
    parsed = DataOptions.parse(**options)
    if isinstance(source, str) and source in registry.DATASETS:
        if parsed.changed():
            raise DataError(
                f"--{parsed.changed()[0].replace('_', '-')} applies to your own data; the "
                f"built-in {source!r} has a fixed scaling and split: leave it at its default"
            )
        return _load_builtin(source, data_dir, download)
    return load_user_data(source, parsed)


def _load_builtin(name: str, data_dir, download: bool) -> Dataset:
    if data_dir is not None and name != "digits" and not Path(data_dir).expanduser().is_dir():
        raise DataError(
            f"data folder {data_dir} does not exist; create it (missing files are downloaded "
            "into it) or point --data-dir at the folder holding mnist/, binarized_mnist/, frey/"
        )
    return registry.DATASETS.get(name)(data_dir, download)


def load_configured(config: Any, download: bool = True) -> Dataset:
    """The dataset a run configuration names, with its data options, checked against the
    parts the configuration chooses (before anything is built or written).

    Reads ``config.dataset`` (a name or a path), ``config.data_dir`` and the options of
    :data:`OPTIONS`. Beyond :func:`load_dataset`'s own checks, the data must suit the run:
    conv and PixelCNN networks need images, and a Bernoulli likelihood needs values in
    ``[0, 1]`` and, unless ``relaxed_bernoulli``, binary ones.

    :param config: a :class:`pyrovae.config.RunConfig`.
    :raises DataError: one line naming the data, the problem and the fix.
    """
    options = {o.name: config[o.name] for o in USER_OPTIONS if o.name in config}
    data = load_dataset(config.dataset, config.data_dir, download, **options)
    check_run_data(data, config)
    return data


def check_run_data(data: Dataset, config: Any) -> None:
    """Raise a one-line :class:`DataError` if the configured parts cannot take ``data``."""
    where = data.source if data.source != "embedded" else data.name
    if data.image_shape is None:
        for key in ("encoder", "decoder"):
            part = config.part(key) if key in config else None
            if part is not None and getattr(part, "needs_images", False):
                raise DataError(
                    f"{where} is table rows of {data.data_dim} numbers but --{key} "
                    f"{config[key]} needs images; pass --data-shape H,W or C,H,W (C·H·W = "
                    f"{data.data_dim}) if they are images, or use --{key} mlp"
                )
    likelihood = config.for_data(data.binary).part("likelihood")
    if not getattr(likelihood, "requires_binary", False):
        return
    if not data.unit_interval:
        raise DataError(
            f"{where} has values outside [0, 1] but the {config.for_data(data.binary).likelihood} "
            "likelihood scores values in [0, 1]; pass --scaling unit or minmax, or choose a "
            "Gaussian likelihood"
        )
    if not data.binary and not config.get("relaxed_bernoulli", False):
        binarise = (
            "use a binarised dataset (mnist-binarized, mnist-dynamic)"
            if data.name in registry.DATASETS
            else "pass --binarize static or dynamic"
        )
        raise DataError(
            f"{where} holds grey values (not 0/1) but the bernoulli likelihood needs binary "
            f"data; {binarise}, --relaxed-bernoulli, or a Gaussian likelihood (e.g. "
            "--likelihood gaussian-fixed)"
        )


def dataset_status(data_dir: str | os.PathLike[str] | None = None) -> list[dict]:
    """One dict per dataset file, embedded ones included, for ``pyrovae datasets``.

    Keys: ``dataset`` (its :data:`DATASET_NAMES` entry), ``file`` (file name), ``path``
    (``str``), ``present`` (bool), ``sha256_ok`` (bool, or ``None`` when absent), ``used_by``
    (every dataset name that reads the file) and ``url`` (where it is downloaded from, ``None``
    for embedded files). A present file is hashed at most once per process.
    """
    return [embedded_status(), *file_status(data_dir)]
