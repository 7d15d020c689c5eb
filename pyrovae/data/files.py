"""Your own data: arrays, tensors, torch datasets, ``.npy`` / ``.npz`` / ``.pt`` files, folders of
images and CSV tables, as a :class:`~pyrovae.data.Dataset`.

Sources (:func:`load_user_data`)
    ``.npy``
        one array (never unpickled). A large one is kept on disk (``on_disk``, below).
    ``.npz`` / ``.pt``
        one array (``.pt``: one tensor, loaded with ``weights_only=True``), or a dict of
        arrays named ``train``, ``valid`` and ``test`` (and optionally ``train_labels``,
        ``valid_labels``, ``test_labels``), which are then the splits; or one array with
        ``labels``.
    a folder of images
        PNG and JPEG files (hidden files skipped; anything else is an error), read with Pillow
        in sorted order of their paths relative to the folder. Grey images (Pillow modes 1, L,
        I;16) give one channel, colour ones (RGB, P, CMYK, YCbCr) three; an alpha channel is
        dropped when every pixel is opaque and refused otherwise (its hidden colours are
        undefined). All images must have one size and one kind, unless ``resize`` is given
        (Pillow's Lanczos filter). When every image sits in a sub-folder, the sorted
        sub-folder names are the class labels, as with torchvision's ``ImageFolder``.
    a CSV file
        one row per data point, numbers separated by commas; a first line that is not all
        numbers is a header and skipped. Every row needs the same number of values, and no
        value may be missing, NaN or infinite.
    a numpy array, a torch tensor, or a map-style ``torch.utils.data.Dataset``
        as the arrays above; a torch dataset's items are tensors or ``(tensor, label)`` pairs.

Shape of a data point
    An array ``(N, H, W)`` is grey images; ``(N, C, H, W)`` images with C = 1 (grey) or 3
    (colour); with ``channels_last`` a 4-D array is read as ``(N, H, W, C)``. ``(N, D)`` and
    a CSV are table rows of D numbers, unless ``data_shape`` gives the shape of one point
    (``H,W``, ``C,H,W`` or ``D``), which also reshapes any other array whose points have that
    many values. Rows are stored flat in ``(C, H, W)`` order.

Split
    ``train`` / ``valid`` / ``test`` arrays are used as they are. One array of N points is
    split by :func:`~pyrovae.data.dataset.permutation_split` with ``n_valid = floor(N ·
    valid_fraction)``, ``n_test = floor(N · test_fraction)`` and seed ``data_seed``: the same
    file, fractions and seed give the same split in every format.

Scaling (``scaling``)
    ``unit`` (default): unsigned 8-bit and 16-bit integers are divided by 255 and 65535 (the
    image convention); any other values must already lie in ``[0, 1]`` or loading fails.
    ``minmax``: ``(x − min) / (max − min)``, ``standardize``: ``(x − mean) / sd``; both with
    the statistics of the whole source (every split), per column for a table and over all
    values for images (a constant column is only shifted). ``none``: the values as they are.
    The arithmetic is float32 (float64 for 64-bit and 32-bit-integer sources); the result is
    float32. Standardised or unscaled data is ``unit_interval=False``: finite, any range.

Binarisation (``binarize``, needs values in ``[0, 1]``)
    ``static``: value ``v`` at column ``d`` of row ``i`` of an array becomes ``u < v`` with
    ``u`` the ``(i·D + d)``-th output of SplitMix64 seeded with ``data_seed`` (the three
    arrays of a ``train``/``valid``/``test`` file use three streams): a function of the file,
    not of the split or the order rows are read in. ``dynamic``: the training split keeps its
    values as probabilities and the trainer draws ``Bernoulli`` afresh for each batch; valid
    and test are binarised once, as ``static`` does.

Data larger than memory (``on_disk``, ``.npy`` only)
    The training rows stay in the file and a :class:`NpyRows` reads each batch with positional
    reads (``os.preadv``) of the rows it needs: the process holds one batch, not the file.
    ``auto`` does so when the training split would take more than a quarter of the machine's
    memory as float32; valid and test are always read into memory. The file is opened with
    ``numpy.load(mmap_mode="r")`` to read its header, but rows are not read through a map: on
    Linux every page a process touches in a file map counts in its resident set, and a read
    fault maps a whole large folio of the page cache (measured here: ~1.5 MB per 784-byte
    row), so a map would make random batches cost far more resident memory than plain reads.
    The checks at load read the file a chunk at a time in the same way.

Checks, at load and before anything is written: a one-line :class:`DataError` naming the
file and the fix for NaN or infinite values, ragged or non-numeric CSV rows, images of mixed
sizes or kinds, an empty folder, files that are not images, values outside ``[0, 1]`` under
``unit`` scaling, binarisation of data outside ``[0, 1]``, and an array whose shape is not an
image. Whether the model's parts accept the data is checked by
:func:`pyrovae.data.load_configured`.
"""

from __future__ import annotations

import csv
import io
import math
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrovae.options import ConfigError, Option

from .dataset import SPLITS, DataError, Dataset, SplitStats, permutation_split
from .inspect import chunk_rows, chunk_stats, split_stats

SCALINGS = ("unit", "minmax", "standardize", "none")
BINARIZATIONS = ("none", "static", "dynamic")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TABLE_SUFFIXES = (".csv",)
#: ``on_disk="auto"`` keeps the training rows on disk above this share of physical memory
AUTO_MEMORY_SHARE = 0.25


def _check_shape(shape: list[int]) -> str | None:
    if len(shape) > 3:
        return "must be D, H,W or C,H,W"
    if len(shape) == 3 and shape[0] not in (1, 3):
        return "must have 1 (grey) or 3 (colour) channels first, as C,H,W"
    return None


def _check_resize(shape: list[int]) -> str | None:
    return None if len(shape) in (0, 2) else "must be H,W"


SCALING = Option(
    "scaling",
    "unit",
    "Your data: unit (values in [0, 1]; 8/16-bit integers divided by 255/65535), minmax "
    "(the data's range to [0, 1]), standardize (mean 0, sd 1) or none (as they are).",
    choices=SCALINGS,
)
BINARIZE = Option(
    "binarize",
    "none",
    "Your data: none, static (each value v becomes 1 with probability v, once, seeded) or "
    "dynamic (train drawn afresh for each batch; valid and test once).",
    choices=BINARIZATIONS,
)
DATA_SEED = Option(
    "data_seed", 0, "Your data: seed of the train/valid/test split and of binarisation.", low=0
)
VALID_FRACTION = Option(
    "valid_fraction",
    0.1,
    "Your data (one array): share of points held out to validate.",
    low=0,
    below=1,
)
TEST_FRACTION = Option(
    "test_fraction",
    0.1,
    "Your data (one array): share of points held out to test.",
    above=0,
    below=1,
)
DATA_SHAPE = Option(
    "data_shape",
    [],
    "Your data: shape of one point where the file cannot tell it: H,W (grey), C,H,W "
    "(C = 1 or 3) or D (a table row).",
    type=list,
    low=1,
    check=_check_shape,
)
CHANNELS_LAST = Option(
    "channels_last", False, "Your data: read 4-D arrays as (N, H, W, C), not (N, C, H, W)."
)
RESIZE = Option(
    "resize",
    [],
    "Your image folder: resize every image to H,W (Pillow's Lanczos filter).",
    type=list,
    low=1,
    check=_check_resize,
)
ON_DISK = Option(
    "on_disk",
    "auto",
    "Your .npy file: read each training batch from the file instead of memory; auto = when "
    "the training split would take over a quarter of memory.",
    choices=("auto", "always", "never"),
)
#: the options of a user's data, in ``--help`` order
OPTIONS: tuple[Option, ...] = (
    SCALING,
    BINARIZE,
    DATA_SEED,
    VALID_FRACTION,
    TEST_FRACTION,
    DATA_SHAPE,
    CHANNELS_LAST,
    RESIZE,
    ON_DISK,
)


@dataclass(frozen=True)
class DataOptions:
    """The values of :data:`OPTIONS` (see the module docstring for what each does).

    Example:

    >>> from pyrovae.data.files import DataOptions
    >>> options = DataOptions.parse(binarize="dynamic", resize=[16, 16])
    >>> options.changed(), options.resize
    (['binarize', 'resize'], (16, 16))
    >>> DataOptions.parse(scaling="log")
    Traceback (most recent call last):
        ...
    pyrovae.data.dataset.DataError: scaling must be one of ...
    """

    scaling: str = SCALING.default
    binarize: str = BINARIZE.default
    data_seed: int = DATA_SEED.default
    valid_fraction: float = VALID_FRACTION.default
    test_fraction: float = TEST_FRACTION.default
    data_shape: tuple[int, ...] = ()
    channels_last: bool = False
    resize: tuple[int, ...] = ()
    on_disk: str = ON_DISK.default

    @classmethod
    def parse(cls, **values: Any) -> DataOptions:
        """Checked options from keyword values; an unknown name or a bad value is a
        :class:`DataError`."""
        known = {o.name: o for o in OPTIONS}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise DataError(f"unknown data option {unknown[0]!r}; choose from {', '.join(known)}")
        parsed = {}
        for name, value in values.items():
            try:
                parsed[name] = known[name].parse(value)
            except ConfigError as e:
                raise DataError(str(e)) from None
        for name in ("data_shape", "resize"):
            if name in parsed:
                parsed[name] = tuple(parsed[name])
        return cls(**parsed)

    def changed(self) -> list[str]:
        """The names of the options that differ from their defaults."""
        default = DataOptions()
        return [o.name for o in OPTIONS if getattr(self, o.name) != getattr(default, o.name)]


# --------------------------------------------------------------------------- .npy on disk


class NpyFile:
    """A ``.npy`` file's header, and positional reads of its rows (nothing is mapped or cached).

    :param path: the file; :func:`numpy.load` with ``mmap_mode="r"`` validates its header.
    :raises DataError: not a ``.npy`` file, truncated, pickled or structured.
    """

    def __init__(self, path: Path):
        header = _open_npy(path, mmap_mode="r")
        self.path = str(path)
        self.shape: tuple[int, ...] = tuple(header.shape)
        self.dtype = header.dtype
        self.offset = int(header.offset)
        self.fortran = bool(header.ndim > 1 and not header.flags.c_contiguous)
        del header  # unmaps the file
        self.row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        self._fd: int | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_lock": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The rows ``rows`` (sorted, distinct file row indices) as an array ``(n, *item)``.

        Rows less than 64 KiB apart are read as one span and picked out of it.
        """
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        if not len(rows) or not self.row_bytes:
            return out
        flat = out.reshape(len(rows), -1).view(np.uint8)
        gap = max(1, (64 << 10) // self.row_bytes)
        breaks = np.flatnonzero(np.diff(rows) > gap) + 1
        for start, stop in zip((0, *breaks), (*breaks, len(rows))):
            first, last = int(rows[start]), int(rows[stop - 1])
            if stop - start == last - first + 1:  # a contiguous run: read straight into place
                self._read_into(flat[start:stop], first)
            else:
                span = np.empty((last - first + 1, self.row_bytes), np.uint8)
                self._read_into(span, first)
                flat[start:stop] = span[rows[start:stop] - first]
        return out

    def _read_into(self, buffer: np.ndarray, row: int) -> None:
        view = memoryview(buffer).cast("B")
        position, done = self.offset + row * self.row_bytes, 0
        while done < len(view):
            got = self._pread(view[done:], position + done)
            if got <= 0:
                raise DataError(
                    f"{self.path} is shorter than its header says (truncated?); write it again"
                )
            done += got

    def _pread(self, view: memoryview, position: int) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        if hasattr(os, "preadv"):
            return os.preadv(self._fd, [view], position)
        with self._lock:  # no positional reads on this platform: seek, then read
            os.lseek(self._fd, position, os.SEEK_SET)
            data = os.read(self._fd, len(view))
        view[: len(data)] = data
        return len(data)


class NpyRows:
    """A split of a ``.npy`` file that stays on disk: a :class:`~pyrovae.data.dataset.RowReader`.

    ``rows[idx]`` reads the file rows of the split's entries ``idx`` (a batch, in any order)
    and returns them as the model sees them (``float32``, flat, scaled, binarised), exactly
    the values an in-memory copy would hold. Memory: one batch, and for :meth:`chunks` one
    chunk.

    :param file: the file.
    :param rows: the split's file row indices, in split order.
    :param transform: ``(raw rows, their file row indices) -> float32 (n, D)``.

    Example:

    >>> import os
    >>> import tempfile
    >>> import numpy as np
    >>> import torch
    >>> from pyrovae.data import load_dataset
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "rows.npy")
    >>> np.save(path, np.arange(200, dtype=np.float32).reshape(50, 4))
    >>> data = load_dataset(path, on_disk="always", scaling="none")
    >>> type(data.train).__name__
    'NpyRows'
    >>> in_memory = load_dataset(path, scaling="none")
    >>> torch.equal(data.train[torch.arange(len(data.train))], in_memory.train)
    True
    >>> folder.cleanup()
    """

    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self, file: NpyFile, rows: np.ndarray, transform: Transform):
        self.file = file
        self.rows = np.asarray(rows, dtype=np.int64)
        self.transform = transform
        self.shape = torch.Size((len(self.rows), transform.dim))

    @property
    def path(self) -> str:
        return self.file.path

    def __len__(self) -> int:
        return len(self.rows)

    def dim(self) -> int:
        return 2

    def size(self, dim: int | None = None) -> torch.Size | int:
        return self.shape if dim is None else self.shape[dim]

    def __getitem__(self, index: Any) -> torch.Tensor:
        if isinstance(index, (int, np.integer)):
            return self[[int(index)]][0]
        if isinstance(index, slice):
            file_rows = self.rows[index]
        else:
            index = torch.as_tensor(index)
            if index.dtype == torch.bool or index.dim() != 1:
                raise IndexError("index an on-disk split with a 1-D tensor of row indices")
            file_rows = self.rows[index.numpy()]
        return torch.from_numpy(self._read(file_rows))

    def _read(self, file_rows: np.ndarray) -> np.ndarray:
        unique, inverse = np.unique(file_rows, return_inverse=True)
        raw = self.file.read(unique)
        return self.transform(raw, unique)[inverse.reshape(-1)]

    def chunks(self, rows: int) -> Iterator[torch.Tensor]:
        """The split in split order, ``rows`` rows at a time."""
        for start in range(0, len(self), int(rows)):
            yield self[start : start + int(rows)]

    def scan(self) -> Iterator[torch.Tensor]:
        """The split's rows in file order, a chunk of the file at a time (for order-free
        statistics); a byte per file row marks the split's rows."""
        member = np.zeros(len(self.file), dtype=bool)
        member[self.rows] = True
        step = chunk_rows(self.shape[1])
        for start in range(0, len(member), step):
            rows = start + np.flatnonzero(member[start : start + step])
            if len(rows):
                yield torch.from_numpy(self.transform(self.file.read(rows), rows))

    def __getattr__(self, name: str):
        raise AttributeError(
            f"an on-disk split has no {name!r}: read it in batches (split[idx]) or chunks "
            "(pyrovae.data.iter_chunks), never whole"
        )

    def __repr__(self) -> str:
        return f"NpyRows({self.path!r}, rows={len(self)}, dim={self.shape[1]})"


def _open_npy(path: Path, mmap_mode: str | None) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        reason = " ".join(str(e).split())
        raise DataError(
            f"cannot read {path} as a .npy array ({reason}); save it again with numpy.save"
        ) from None
    _check_dtype(array.dtype, str(path))
    return array


def _check_dtype(dtype: np.dtype, origin: str) -> None:
    if dtype.names is not None or dtype.kind not in "buif":
        raise DataError(
            f"{origin} holds {dtype} values; save plain numbers (bool, integers or floats)"
        )


# --------------------------------------------------------------------------- raw sources


@dataclass
class Raw:
    """What a format's reader found: arrays of points, before shaping, splitting and scaling.

    :ivar name: the dataset's name (for messages).
    :ivar origin: where it came from (for messages).
    :ivar parts: ``{"all": array}``, or ``{"train": a, "valid": b, "test": c}``.
    :ivar labels: class labels per part, where the source has them.
    """

    name: str
    origin: str
    parts: dict[str, Any]
    labels: dict[str, np.ndarray] = field(default_factory=dict)


def read_source(source: Any, options: DataOptions) -> Raw:
    """Read ``source`` (a path, array, tensor or torch dataset) into a :class:`Raw`."""
    path = Path(source).expanduser() if isinstance(source, (str, os.PathLike)) else None
    is_npy = path is not None and path.suffix.lower() == ".npy"
    if options.on_disk == "always" and not is_npy:
        raise DataError(
            f"--on-disk always reads .npy files only and {_shown(source)} is not one; save the "
            "data with numpy.save, or pass --on-disk auto"
        )
    if options.resize and not (path is not None and path.is_dir()):
        raise DataError(
            f"--resize applies to folders of images and {_shown(source)} is not one; resize the "
            "images yourself, or leave --resize off"
        )
    if path is not None:
        return _read_path(path, options)
    if isinstance(source, np.ndarray):
        origin = f"<numpy array {source.dtype} {source.shape}>"
        return _from_arrays({"all": source}, "array", origin)
    if isinstance(source, torch.Tensor):
        origin = f"<torch tensor {source.dtype} {tuple(source.shape)}>"
        return _from_arrays({"all": _tensor_array(source)}, "tensor", origin)
    if isinstance(source, torch.utils.data.Dataset):
        return _from_torch_dataset(source)
    raise DataError(
        f"cannot load a dataset from a {type(source).__name__}; give a dataset name, a path, "
        "a numpy array, a torch tensor or a torch.utils.data.Dataset"
    )


def _shown(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"a {type(source).__name__}"


def _read_path(path: Path, options: DataOptions) -> Raw:
    if not path.exists():
        from pyrovae import registry

        raise DataError(
            f"unknown dataset {str(path)!r}; choose one of {', '.join(registry.DATASETS.names())}"
            ", or give the path of a .npy, .npz, .pt or .csv file or a folder of images (no "
            f"such file: {path.absolute()})"
        )
    path = path.resolve()
    if path.is_dir():
        return read_image_folder(path, options.resize)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _read_npy(path, options)
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".pt":
        return _read_pt(path)
    if suffix in TABLE_SUFFIXES:
        return Raw(path.name, str(path), {"all": read_csv(path)})
    raise DataError(
        f"{path} is not a dataset file pyrovae reads; give a .npy, .npz, .pt or .csv file or a "
        "folder of PNG/JPEG images"
    )


def _read_npy(path: Path, options: DataOptions) -> Raw:
    file = NpyFile(path)
    if _keep_on_disk(file, options):
        _check_points(file.shape, str(path))
        return Raw(path.name, str(path), {"all": file})
    return _from_arrays({"all": _open_npy(path, mmap_mode=None)}, path.name, str(path))


def _keep_on_disk(file: NpyFile, options: DataOptions) -> bool:
    if options.on_disk == "never":
        return False
    if file.fortran and len(file.shape) > 1:
        if options.on_disk == "always":
            raise DataError(
                f"{file.path} is stored in Fortran order, whose rows are not contiguous on disk; "
                "save it again with numpy.save(path, numpy.ascontiguousarray(a))"
            )
        return False
    if options.on_disk == "always":
        return True
    train_share = 1 - options.valid_fraction - options.test_fraction
    need = len(file) * train_share * math.prod(file.shape[1:]) * 4
    memory = _physical_memory()
    return memory is not None and need > AUTO_MEMORY_SHARE * memory


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _read_npz(path: Path) -> Raw:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError) as e:
        reason = " ".join(str(e).split())
        raise DataError(
            f"cannot read {path} as a .npz archive ({reason}); save it again with numpy.savez"
        ) from None
    return _named_arrays(arrays, path.name, str(path))


def _read_pt(path: Path) -> Raw:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle, zip and runtime errors of many kinds
        reason = " ".join(str(e).split("\n")[0].split())
        raise DataError(
            f"cannot read {path} as tensors ({reason}); save a tensor or a dict of tensors with "
            "torch.save"
        ) from None
    if isinstance(loaded, torch.Tensor):
        return _from_arrays({"all": _tensor_array(loaded)}, path.name, str(path))
    if isinstance(loaded, dict) and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return _named_arrays(
            {str(k): _tensor_array(v) for k, v in loaded.items()}, path.name, str(path)
        )
    raise DataError(
        f"{path} holds a {type(loaded).__name__}; save a tensor, or a dict of tensors named "
        "train, valid and test, with torch.save"
    )


def _tensor_array(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    if tensor.is_complex():
        raise DataError(f"a {tensor.dtype} tensor is not data pyrovae reads; give real numbers")
    return tensor.numpy()


def _named_arrays(arrays: dict[str, np.ndarray], name: str, origin: str) -> Raw:
    """One array (and optionally ``labels``), or arrays named ``train``, ``valid``, ``test``
    (and optionally ``<split>_labels``)."""
    if set(SPLITS) <= set(arrays):
        extra = set(arrays) - set(SPLITS) - {f"{s}_labels" for s in SPLITS}
        if not extra:
            parts = {s: arrays[s] for s in SPLITS}
            labels = {s: arrays[f"{s}_labels"] for s in SPLITS if f"{s}_labels" in arrays}
            return _from_arrays(parts, name, origin, labels)
    else:
        data = [k for k in arrays if k != "labels"]
        if len(data) == 1:
            labels = {"all": arrays["labels"]} if "labels" in arrays else {}
            return _from_arrays({"all": arrays[data[0]]}, name, origin, labels)
    found = ", ".join(sorted(arrays)) or "nothing"
    raise DataError(
        f"{origin} holds {found}; save one array (optionally with labels), or arrays named "
        "train, valid and test (optionally train_labels, valid_labels, test_labels)"
    )


def _check_points(shape: tuple[int, ...], origin: str) -> None:
    if len(shape) < 2:
        raise DataError(
            f"{origin} has shape {tuple(shape)}; give one point per row: (N, D) numbers, "
            "(N, H, W) grey or (N, C, H, W) images"
        )


def _from_arrays(
    parts: dict[str, np.ndarray], name: str, origin: str, labels: dict | None = None
) -> Raw:
    for key, array in parts.items():
        _check_dtype(array.dtype, origin)
        _check_points(array.shape, origin if key == "all" else f"{origin} ({key})")
    checked = {}
    for key, values in (labels or {}).items():
        values = np.asarray(values)
        if values.ndim != 1 or values.dtype.kind not in "iu" or len(values) != len(parts[key]):
            raise DataError(
                f"{origin} has labels of {values.dtype} {values.shape} for {len(parts[key])} "
                "points; give one integer label per point"
            )
        checked[key] = values.astype(np.int64)
    return Raw(name, origin, parts, checked)


def _from_torch_dataset(dataset: torch.utils.data.Dataset) -> Raw:
    kind = type(dataset).__name__
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise DataError(
            f"a {kind} has no length; give a map-style torch.utils.data.Dataset (with __len__)"
        ) from None
    points, labels = [], []
    for i in range(n):
        item = dataset[i]
        if isinstance(item, (tuple, list)):
            if len(item) != 2:
                raise DataError(
                    f"item {i} of the {kind} has {len(item)} parts; give a tensor or a "
                    "(tensor, label) pair per item"
                )
            item, label = item
            labels.append(int(label))
        if not isinstance(item, torch.Tensor):
            raise DataError(
                f"item {i} of the {kind} is a {type(item).__name__}; give a tensor or a "
                "(tensor, label) pair per item"
            )
        points.append(_tensor_array(item))
    if not points:
        raise DataError(f"the {kind} is empty; give a dataset with data points")
    if len({p.shape for p in points}) > 1:
        raise DataError(
            f"the {kind}'s items have shapes {points[0].shape} and "
            f"{next(p.shape for p in points if p.shape != points[0].shape)}; give items of one "
            "shape"
        )
    label_parts = {"all": np.asarray(labels)} if len(labels) == n else {}
    return _from_arrays({"all": np.stack(points)}, kind, f"<{kind} of {n} items>", label_parts)


# --------------------------------------------------------------------------- images


def read_image_folder(folder: Path, resize: tuple[int, ...] = ()) -> Raw:
    """A folder of PNG/JPEG images as ``uint8`` or ``uint16`` ``(N, C, H, W)`` (see the module
    docstring for modes, order, sizes and labels)."""
    from PIL import Image

    files = _image_files(folder)
    images, kinds = [], {}
    for path in files:
        array = _read_image(path, resize, Image)
        kinds.setdefault((array.shape, array.dtype.str), path)
        if len(kinds) > 1:
            _mixed_images(kinds, folder)
        images.append(array)
    parts = {"all": np.stack(images)}
    relative = [p.relative_to(folder).parts for p in files]
    labels = {}
    if all(len(r) == 2 for r in relative):
        classes = sorted({r[0] for r in relative})
        labels = {"all": np.array([classes.index(r[0]) for r in relative], dtype=np.int64)}
    return Raw(folder.name, str(folder), parts, labels)


def _image_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") for part in relative) or path.is_dir():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(
                f"{path} is not a PNG or JPEG file; a data folder holds only images (hidden "
                "files are skipped): move it out"
            )
        files.append(path)
    if not files:
        raise DataError(f"{folder} holds no images; put PNG or JPEG files in it")
    return files


def _read_image(path: Path, resize: tuple[int, ...], Image) -> np.ndarray:
    """One image as ``uint8`` or ``uint16`` ``(C, H, W)``."""
    try:
        with Image.open(path) as image:
            image.load()
            image = _plain_mode(image, path)
            if resize:
                image = image.resize((resize[1], resize[0]), Image.Resampling.LANCZOS)
            array = np.asarray(image)
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = " ".join(str(e).split())
        raise DataError(
            f"{path} cannot be read as an image ({reason}); replace or remove it"
        ) from None
    if array.dtype != np.uint8:  # 16-bit grey, read as Pillow's 32-bit mode I
        if array.min() < 0 or array.max() > 65535:
            raise DataError(f"{path} has values outside 16 bits; save 8-bit or 16-bit images")
        array = array.astype(np.uint16)
    array = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    return np.ascontiguousarray(array)


def _plain_mode(image, path: Path):
    """``image`` in mode L (8-bit grey), I (16-bit grey values) or RGB."""
    mode = image.mode
    if mode in ("L", "RGB", "I"):
        return image
    if mode.startswith("I;16"):
        return image.convert("I")
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("CMYK", "YCbCr", "RGB"):
        return image.convert("RGB")
    if mode in ("RGBA", "LA", "PA"):
        if np.asarray(image.getchannel("A")).min() < 255:
            raise DataError(
                f"{path} has transparent pixels (mode {mode}), whose colours are undefined; "
                "flatten the images onto a background (RGB or grey) first"
            )
        return image.convert("L" if mode == "LA" else "RGB")
    raise DataError(
        f"{path} has Pillow mode {mode}; save the images as 8-bit or 16-bit grey, or 8-bit RGB"
    )


def _mixed_images(kinds: dict, folder: Path) -> None:
    (shape_a, dtype_a), (shape_b, dtype_b) = list(kinds)[:2]
    file_a, file_b = kinds[(shape_a, dtype_a)], kinds[(shape_b, dtype_b)]
    if shape_a[1:] != shape_b[1:]:
        raise DataError(
            f"{folder} holds images of different sizes ({file_a.name} is "
            f"{shape_a[1]}x{shape_a[2]}, {file_b.name} is {shape_b[1]}x{shape_b[2]}); pass "
            "--resize H,W to resize them all"
        )
    what = {1: "grey", 3: "colour"}
    bits = {"|u1": "8-bit", "<u2": "16-bit", ">u2": "16-bit"}
    raise DataError(
        f"{folder} mixes {what[shape_a[0]]} {bits.get(dtype_a, dtype_a)} images ({file_a.name}) "
        f"with {what[shape_b[0]]} {bits.get(dtype_b, dtype_b)} ones ({file_b.name}); convert "
        "them to one kind"
    )


# --------------------------------------------------------------------------- CSV


def read_csv(path: Path) -> np.ndarray:
    """A CSV of numbers as ``float64`` ``(N, D)``; a first line that is not all numbers is a
    header. Any problem is a :class:`DataError` naming the line.

    numpy's parser reads well-formed files; a file it refuses, or one with a NaN or infinite
    value, is read again line by line to name the first bad line.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path} as text ({e}); save it as a UTF-8 CSV file") from None
    first = next((ln for ln in text.splitlines() if ln.strip()), None)
    if first is None:
        raise DataError(f"{path} is empty; write one data point per line")
    header = not all(_is_number(f) for f in next(csv.reader([first])))
    skip = text.splitlines().index(first) + 1 if header else 0
    try:
        with warnings.catch_warnings():  # "input contained no data": handled below
            warnings.simplefilter("ignore", UserWarning)
            values = np.loadtxt(
                io.StringIO(text), delimiter=",", skiprows=skip, ndmin=2, comments=None
            )
    except ValueError:
        values = None
    if values is not None and len(values) and np.isfinite(values).all():
        return values
    return _read_csv_lines(path, text, header)


def _read_csv_lines(path: Path, text: str, header: bool) -> np.ndarray:
    rows = list(csv.reader(io.StringIO(text)))
    numbered = [(i + 1, row) for i, row in enumerate(rows) if any(f.strip() for f in row)]
    if header:
        numbered = numbered[1:]
    if not numbered:
        raise DataError(f"{path} has a header but no rows of numbers; add the data points")
    width = len(numbered[0][1])
    values = np.empty((len(numbered), width), dtype=np.float64)
    for k, (line, row) in enumerate(numbered):
        if len(row) != width:
            raise DataError(
                f"{path} line {line} has {len(row)} values but line {numbered[0][0]} has "
                f"{width}; give every row the same number of columns"
            )
        for column, field_text in enumerate(row, start=1):
            value = _number(field_text)
            if value is None or not math.isfinite(value):
                shown = field_text.strip() or "an empty field"
                raise DataError(
                    f"{path} line {line}, column {column}: {shown!r} is not a finite number; "
                    "fill in or drop the missing or bad values"
                )
            values[k, column - 1] = value
    return values


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _is_number(text: str) -> bool:
    return _number(text) is not None


# --------------------------------------------------------------------------- shape


@dataclass(frozen=True)
class Layout:
    """How a source's points become flat rows.

    :ivar shape: the shape of one point, ``(C, H, W)`` or ``(D,)``.
    :ivar channels_last: points are ``(H, W, C)`` in the source and are transposed.
    """

    shape: tuple[int, ...]
    channels_last: bool = False

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    def rows(self, raw: np.ndarray) -> np.ndarray:
        """Source points ``(n, *item)`` as rows ``(n, D)`` in ``(C, H, W)`` order."""
        if self.channels_last:
            raw = np.moveaxis(raw, -1, 1)
        return raw.reshape(len(raw), self.dim)


def point_layout(item: tuple[int, ...], options: DataOptions, origin: str) -> Layout:
    """The :class:`Layout` of points of shape ``item`` in ``origin``, under ``options``."""
    if options.channels_last:
        if len(item) != 3:
            raise DataError(
                f"{origin} has points of shape {item}; --channels-last reads arrays of shape "
                "(N, H, W, C): leave it off for this one"
            )
        item = (item[2], item[0], item[1])
    given = options.data_shape
    if given:
        shape = (1, *given) if len(given) == 2 else tuple(given)
        if math.prod(shape) != math.prod(item):
            raise DataError(
                f"{origin} has points of {math.prod(item)} values {item} but --data-shape "
                f"{','.join(map(str, given))} needs {math.prod(shape)}; give the shape of one point"
            )
        return Layout(shape, options.channels_last)
    if len(item) == 1:
        return Layout(item)
    if len(item) == 2:
        return Layout((1, *item))
    if len(item) == 3 and item[0] in (1, 3):
        return Layout(item, options.channels_last)
    hint = (
        "pass --channels-last for (N, H, W, C) arrays"
        if len(item) == 3 and item[2] in (1, 3)
        else "pass --data-shape with the shape of one point (C,H,W with C = 1 or 3, or D)"
    )
    raise DataError(
        f"{origin} has points of shape {item}, which is not an image of 1 or 3 channels first; "
        f"{hint}"
    )


# --------------------------------------------------------------------------- scaling


@dataclass(frozen=True)
class Transform:
    """From source points to the rows a model sees: ``((x − shift) / divisor)``, then
    optionally binarised, as ``float32`` ``(n, D)``.

    :ivar layout: the points' :class:`Layout`.
    :ivar shift: subtracted first: a scalar (images) or a per-column ``(D,)`` array (tables).
    :ivar divisor: divides next: a scalar (images) or a per-column ``(D,)`` array (tables).
    :ivar work: the dtype the arithmetic is done in.
    :ivar binarize_seed: binarise with this seed (None: keep the values).
    :ivar stream: the SplitMix64 stream of the source array (0 for one array, 1–3 for
        train / valid / test arrays).
    """

    layout: Layout
    shift: np.ndarray
    divisor: np.ndarray
    work: np.dtype
    binarize_seed: int | None = None
    stream: int = 0

    @property
    def dim(self) -> int:
        return self.layout.dim

    def __call__(self, raw: np.ndarray, rows: np.ndarray) -> np.ndarray:
        x = self.layout.rows(raw).astype(self.work)
        if self.shift.any():
            x -= self.shift
        if (self.divisor != 1).any():
            x /= self.divisor
        x = x.astype(np.float32, copy=False)
        if self.binarize_seed is not None:
            noise = uniforms(self.binarize_seed, self.stream, rows, self.dim)
            x = (noise < x).astype(np.float32)
        return x

    def binarized(self, seed: int) -> Transform:
        return Transform(self.layout, self.shift, self.divisor, self.work, seed, self.stream)


_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on ``uint64`` arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, stream: int, rows: np.ndarray, dim: int) -> np.ndarray:
    """Uniforms in ``[0, 1)`` for rows ``rows`` of ``dim`` columns: entry ``(i, d)`` is the
    ``(rows[i]·dim + d)``-th output of SplitMix64 seeded with ``seed`` in stream ``stream``,
    so a value's noise depends on its place in the source alone."""
    with np.errstate(over="ignore"):
        state = _mix(np.array([seed], dtype=np.uint64)) + np.uint64(stream << 58)
        k = np.asarray(rows, dtype=np.uint64)[:, None] * np.uint64(dim)
        k = k + np.arange(dim, dtype=np.uint64)
        z = _mix(state + (k + np.uint64(1)) * _GAMMA)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _unit_divisor(dtype: np.dtype) -> float:
    return {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(np.dtype(dtype), 1.0)


def fit_transform(raw: Raw, layout: Layout, options: DataOptions) -> Transform:
    """The :class:`Transform` of ``options.scaling``, fitted to every part of ``raw``; every
    part holding floats is checked for NaN and infinite values on the way."""
    dtypes = {np.dtype(p.dtype) for p in raw.parts.values()}
    work = np.result_type(np.float32, *dtypes)
    per_column = len(layout.shape) == 1
    moments = _Moments(layout.dim if per_column else 1)
    need = options.scaling in ("minmax", "standardize")
    for key, part in raw.parts.items():
        if need or np.dtype(part.dtype).kind == "f":
            for start, chunk in _part_chunks(part, layout):
                _check_finite(chunk, start, key, raw)
                if need:
                    moments.add(chunk if per_column else chunk.reshape(-1, 1))
    shape = (layout.dim,) if per_column else ()
    shift, divisor = np.zeros(shape, work), np.ones(shape, work)
    if options.scaling == "unit":
        divisor[...] = _unit_divisor(next(iter(dtypes))) if len(dtypes) == 1 else 1.0
    elif options.scaling == "minmax":
        shift[...], divisor[...] = moments.low, _nonzero(moments.high - moments.low)
    elif options.scaling == "standardize":
        shift[...], divisor[...] = moments.mean, _nonzero(np.sqrt(moments.variance))
    return Transform(layout, shift, divisor, np.dtype(work))


def _nonzero(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 1.0)


class _Moments:
    """Running min, max, mean and variance per column (Chan et al.'s pairwise update)."""

    def __init__(self, columns: int):
        self.n = 0
        self.low = np.full(columns, np.inf)
        self.high = np.full(columns, -np.inf)
        self.mean = np.zeros(columns)
        self.m2 = np.zeros(columns)

    def add(self, chunk: np.ndarray) -> None:
        if not len(chunk):
            return
        chunk = chunk.astype(np.float64)
        n = len(chunk)
        mean = chunk.mean(0)
        m2 = ((chunk - mean) ** 2).sum(0)
        delta, total = mean - self.mean, self.n + n
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.n * n / total)
        self.n = total
        self.low = np.minimum(self.low, chunk.min(0))
        self.high = np.maximum(self.high, chunk.max(0))

    @property
    def variance(self) -> np.ndarray:
        return self.m2 / max(self.n, 1)


def _part_chunks(part: Any, layout: Layout) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, rows (n, D))`` of a part in file order, a chunk at a time."""
    step = chunk_rows(layout.dim)
    for start in range(0, len(part), step):
        stop = min(start + step, len(part))
        block = part.read(np.arange(start, stop)) if isinstance(part, NpyFile) else part[start:stop]
        yield start, layout.rows(np.asarray(block))


def _check_finite(chunk: np.ndarray, start: int, key: str, raw: Raw) -> None:
    if chunk.dtype.kind != "f" or np.isfinite(chunk).all():
        return
    row = start + int(np.flatnonzero(~np.isfinite(chunk).all(1))[0])
    where = f"row {row}" if key == "all" else f"row {row} of {key}"
    raise DataError(
        f"{raw.origin} has NaN or infinite values ({where} first); drop or fill those points "
        "(e.g. numpy.nan_to_num) and save again"
    )


# --------------------------------------------------------------------------- the dataset


def load_user_data(source: Any, options: DataOptions | None = None) -> Dataset:
    """A user's data (a path, array, tensor or torch dataset) as a checked :class:`Dataset`.

    See the module docstring for the formats, the split, scaling, binarisation and data kept on
    disk. Statistics of every split (:class:`~pyrovae.data.inspect.SplitStats`) are measured
    while checking and kept on the dataset.

    :raises DataError: a one-line message naming the file, the problem and the fix.
    """
    options = options or DataOptions()
    raw = read_source(source, options)
    layout = _layout(raw, options)
    transform = fit_transform(raw, layout, options)
    splits = _split(raw, options)
    _check_memory(raw, splits, layout)
    values = {
        split: _values(raw, split, part, rows, transform) for split, (part, rows) in splits.items()
    }
    stats = {split: _stats(x) for split, x in values.items()}
    _check_values(raw, stats, options)
    if options.binarize != "none":
        values, stats = _binarize(splits, values, stats, options)
    binary = options.binarize != "none" or all(s.binary for s in stats.values())
    unit = binary or all(not s.rows or (s.low >= 0 and s.high <= 1) for s in stats.values())
    labels = {split: _labels(raw, part, rows) for split, (part, rows) in splits.items()}
    shape = layout.shape
    return Dataset(
        name=raw.name,
        train=values["train"],
        valid=values["valid"],
        test=values["test"],
        image_shape=None if len(shape) == 1 else (shape[1], shape[2]),
        binary=binary,
        dynamic_binarization=options.binarize == "dynamic",
        source=raw.origin,
        train_labels=labels["train"],
        valid_labels=labels["valid"],
        test_labels=labels["test"],
        channels=1 if len(shape) == 1 else shape[0],
        unit_interval=unit,
        stats=stats,
    )


def _layout(raw: Raw, options: DataOptions) -> Layout:
    items = {key: tuple(part.shape[1:]) for key, part in raw.parts.items()}
    if len(set(items.values())) > 1:
        shown = ", ".join(f"{k} {v}" for k, v in items.items())
        raise DataError(f"{raw.origin} has splits of different point shapes ({shown}); give one")
    return point_layout(next(iter(items.values())), options, raw.origin)


def _split(raw: Raw, options: DataOptions) -> dict[str, tuple[str, np.ndarray]]:
    """``split -> (part, the split's row indices in that part, in split order)``."""
    if "all" not in raw.parts:
        return {s: (s, np.arange(len(raw.parts[s]), dtype=np.int64)) for s in SPLITS}
    n = len(raw.parts["all"])
    n_valid, n_test = math.floor(n * options.valid_fraction), math.floor(n * options.test_fraction)
    if n_test < 1 or n - n_valid - n_test < 1:
        raise DataError(
            f"{raw.origin} has {n} points: too few for a train and a test split at "
            f"--valid-fraction {options.valid_fraction:g} --test-fraction "
            f"{options.test_fraction:g}; give more points or change the fractions"
        )
    rows = permutation_split(n, n_valid, n_test, options.data_seed)
    return {s: ("all", r.astype(np.int64, copy=False)) for s, r in zip(SPLITS, rows)}


def _check_memory(raw: Raw, splits: dict, layout: Layout) -> None:
    """Valid and test of an on-disk file are read into memory: refuse when they do not fit."""
    if not any(isinstance(p, NpyFile) for p in raw.parts.values()):
        return
    need = sum(len(splits[s][1]) for s in ("valid", "test")) * layout.dim * 4
    memory = _physical_memory()
    if memory is not None and need > AUTO_MEMORY_SHARE * memory:
        raise DataError(
            f"{raw.origin}: its valid and test splits would take {need / 2**30:.1f} GiB of "
            f"memory (over a quarter of this machine's {memory / 2**30:.1f} GiB); pass smaller "
            "--valid-fraction and --test-fraction, e.g. 0.01"
        )


def _in_stream(transform: Transform, part: str) -> Transform:
    stream = 0 if part == "all" else 1 + SPLITS.index(part)
    return Transform(
        transform.layout, transform.shift, transform.divisor, transform.work, None, stream
    )


def _values(raw: Raw, split: str, part: str, rows: np.ndarray, transform: Transform):
    """A split's rows as the model sees them (before binarisation): a tensor, or
    :class:`NpyRows` for the training split of a file kept on disk."""
    source, transform = raw.parts[part], _in_stream(transform, part)
    if isinstance(source, NpyFile):
        reader = NpyRows(source, rows, transform)
        if split == "train":
            return reader
        chunks = list(reader.chunks(chunk_rows(transform.dim)))
        return torch.cat(chunks) if chunks else torch.empty(0, transform.dim)
    out = np.empty((len(rows), transform.dim), np.float32)
    step = chunk_rows(transform.dim)
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        out[start : start + len(chunk)] = transform(source[chunk], chunk)
    return torch.from_numpy(out)


def _stats(x: torch.Tensor | NpyRows) -> SplitStats:
    if isinstance(x, NpyRows):
        return chunk_stats(x.scan(), len(x))
    return split_stats(x)


def _check_values(raw: Raw, stats: dict[str, SplitStats], options: DataOptions) -> None:
    present = [s for s in stats.values() if s.rows]
    if not all(s.finite for s in present):
        raise DataError(
            f"{raw.origin} has values too large for float32 once scaled ({options.scaling}); "
            "pass --scaling standardize or minmax"
        )
    low, high = min(s.low for s in present), max(s.high for s in present)
    if low >= 0 and high <= 1:
        return
    shown = f"values in [{low:.4g}, {high:.4g}]"
    if options.scaling == "unit":
        raise DataError(
            f"{raw.origin} has {shown}, outside [0, 1] (--scaling unit divides only 8/16-bit "
            "integers, by 255/65535); pass --scaling minmax or standardize to rescale them, or "
            "--scaling none to keep them"
        )
    if options.binarize != "none":
        raise DataError(
            f"{raw.origin} has {shown} after --scaling {options.scaling}, but --binarize "
            f"{options.binarize} needs values in [0, 1] (probabilities); pass --scaling unit or "
            "minmax"
        )


def _binarize(splits: dict, values: dict, stats: dict, options: DataOptions):
    """Binarise every split (``static``) or valid and test (``dynamic``)."""
    values, stats = dict(values), dict(stats)
    for split, (_, rows) in splits.items():
        if options.binarize == "dynamic" and split == "train":
            continue
        x = values[split]
        if isinstance(x, NpyRows):  # binarised as each batch is read
            values[split] = NpyRows(x.file, x.rows, x.transform.binarized(options.data_seed))
            # the bounds {0, 1} binarisation gives, without another pass over the file
            old = stats[split]
            low, high = (0.0 if old.low < 1 else 1.0), (1.0 if old.high > 0 else 0.0)
            stats[split] = SplitStats(old.rows, low, high, binary=True, finite=True)
            continue
        stream = 0 if splits[split][0] == "all" else 1 + SPLITS.index(split)
        out = torch.empty_like(x)
        step = chunk_rows(x.shape[1])
        for start in range(0, len(x), step):
            chunk = x[start : start + step].numpy()
            noise = uniforms(options.data_seed, stream, rows[start : start + step], x.shape[1])
            out[start : start + len(chunk)] = torch.from_numpy((noise < chunk).astype(np.float32))
        values[split], stats[split] = out, split_stats(out)
    return values, stats


def _labels(raw: Raw, part: str, rows: np.ndarray) -> torch.Tensor | None:
    labels = raw.labels.get(part)
    return None if labels is None else torch.from_numpy(labels[rows])
