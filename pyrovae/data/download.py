"""Locating, verifying and downloading dataset files.

Data folder
    :func:`resolve_data_dir` picks the folder: the explicit ``data_dir`` argument, else the
    environment variable ``PYROVAE_DATA``, else the per-user cache ``$XDG_CACHE_HOME/pyrovae``
    (``~/.cache/pyrovae`` when ``XDG_CACHE_HOME`` is unset). Inside it each dataset has its own
    sub-folder, exactly as published::

        <data_dir>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
        <data_dir>/binarized_mnist/binarized_mnist_{train,valid,test}.amat   (or .amat.gz)
        <data_dir>/frey/frey_rawface.mat

Checksums
    :data:`FILES` pins the sha256 of every file. A present file is hashed the first time it is
    used in a process (cached by path, size and mtime) and a mismatch is a :class:`DataError`.

Downloads
    A missing file is fetched with :mod:`urllib` from its canonical URLs (or from
    ``f"{mirror}/{folder}/{name}"`` when a mirror is given or ``PYROVAE_MIRROR`` is set), streamed
    to a temporary file in the destination folder, verified, then atomically renamed into place.
    A download that fails its checksum is deleted and refused.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .dataset import DataError

log = logging.getLogger(__name__)

DATA_ENV = "PYROVAE_DATA"
MIRROR_ENV = "PYROVAE_MIRROR"
TIMEOUT = 60.0  # seconds without data before a download is abandoned
_CHUNK = 1 << 20

# The mirrors torchvision uses for MNIST, in its order of preference.
_MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_FREY_URL = "https://cs.nyu.edu/~roweis/data/"


@dataclass(frozen=True)
class DataFile:
    """One published file of a dataset.

    :ivar dataset: the :data:`pyrovae.data.DATASET_NAMES` entry the file belongs to.
    :ivar folder: sub-folder of the data folder that holds it.
    :ivar name: file name as published, which is what a download writes.
    :ivar sha256: sha256 of the published file.
    :ivar urls: canonical URLs, tried in order.
    :ivar variants: other ``(name, sha256)`` pairs accepted in the folder, e.g. a gzip of the
        file.
    :ivar used_by: every dataset name that reads the file.

    Example:

    >>> from pyrovae.data.download import FILES
    >>> frey = FILES["frey"][0]
    >>> frey.relative_path, frey.used_by
    ('frey/frey_rawface.mat', ('frey',))
    """

    dataset: str
    folder: str
    name: str
    sha256: str
    urls: tuple[str, ...]
    variants: tuple[tuple[str, str], ...] = ()
    used_by: tuple[str, ...] = ()

    @property
    def relative_path(self) -> str:
        return f"{self.folder}/{self.name}"

    @property
    def local_names(self) -> tuple[tuple[str, str], ...]:
        return ((self.name, self.sha256), *self.variants)


def _mnist(name: str, sha256: str) -> DataFile:
    urls = tuple(base + name for base in _MNIST_URLS)
    return DataFile("mnist", "mnist", name, sha256, urls, used_by=("mnist", "mnist-dynamic"))


def _binarized(split: str, sha256_amat: str, sha256_gz: str) -> DataFile:
    name = f"binarized_mnist_{split}.amat"
    return DataFile(
        "mnist-binarized",
        "binarized_mnist",
        name,
        sha256_amat,
        (_BINARIZED_MNIST_URL + name,),
        variants=((name + ".gz", sha256_gz),),
        used_by=("mnist-binarized",),
    )


FILES: dict[str, tuple[DataFile, ...]] = {
    "mnist": (
        _mnist(
            "train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        _mnist(
            "train-labels-idx1-ubyte.gz",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        _mnist(
            "t10k-images-idx3-ubyte.gz",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        _mnist(
            "t10k-labels-idx1-ubyte.gz",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    ),
    # The public files are the uncompressed .amat text files. The first hash of each pair is that
    # of the DECOMPRESSED content of our .amat.gz copy, which was taken from the Larochelle
    # group's packaged release and NOT byte-compared with the public .amat files; the second is
    # the hash of the .amat.gz itself, which is also accepted in the folder.
    "binarized_mnist": (
        _binarized(
            "train",
            "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
            "092365d813e5c21dc079caf1c06c0f651976f886cf649818f5272d338cc5dac2",
        ),
        _binarized(
            "valid",
            "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
            "a340636f6c4a8df5715467d5a5c4c16a727a9fb7405c2d2f707f3f94403b2f15",
        ),
        _binarized(
            "test",
            "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
            "7f2dd6edd98e934efff89342d83482a591cfd6f4fbe3445112325b957d519cef",
        ),
    ),
    "frey": (
        DataFile(
            "frey",
            "frey",
            "frey_rawface.mat",
            "265a83a23adb081755cd3de375509828e690324d1d60f076b8ecebc840d59c64",
            (_FREY_URL + "frey_rawface.mat",),
            used_by=("frey",),
        ),
    ),
}


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``data_dir``, else ``$PYROVAE_DATA``, else the per-user cache folder."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser().absolute()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    cache = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return cache / "pyrovae"


# ---------------------------------------------------------------------------------------------
# checksums

_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def _cache_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The file's sha256, computed at most once per process for a given path, size and mtime."""
    path = Path(path)
    key = _cache_key(path)
    with _hash_lock:
        cached = _hash_cache.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _hash_lock:
        _hash_cache[key] = value
    return value


def _remember_hash(path: Path, value: str) -> None:
    with _hash_lock:
        _hash_cache[_cache_key(path)] = value


def _locate(file: DataFile, folder: Path) -> tuple[Path, str] | None:
    """The first accepted local copy of ``file`` in ``folder`` and its expected sha256."""
    for name, sha256 in file.local_names:
        path = folder / name
        if path.is_file():
            return path, sha256
    return None


def _verify(path: Path, expected: str, file: DataFile) -> None:
    try:
        actual = sha256_file(path)
    except OSError as e:
        raise DataError(f"cannot read {path} ({e}); check its permissions") from e
    if actual != expected:
        raise DataError(
            f"{path} has sha256 {actual}, expected {expected}: it is corrupt or a different "
            f"version; delete it so it is downloaded again, or replace it with {file.urls[0]}"
        )


# ---------------------------------------------------------------------------------------------
# downloads


def _missing_message(dataset: str, files: Iterable[DataFile], folder: Path) -> str:
    files = list(files)
    names = ", ".join(f.name for f in files)
    if any(f.variants for f in files):
        names += " (or " + ", ".join(n for f in files for n, _ in f.variants) + ")"
    bases = list(dict.fromkeys(f.urls[0].rsplit("/", 1)[0] + "/" for f in files))
    where = files[0].urls[0] if len(files) == 1 else " or ".join(bases)
    them = "it" if len(files) == 1 else "them"
    return (
        f"{dataset} needs {names} in {folder}; download {them} from {where}, or point --data-dir "
        f"(or {DATA_ENV}) at a folder whose {folder.name}/ sub-folder has {them}"
    )


def _one_line(error: BaseException) -> str:
    reason = error
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        reason = error.reason
    text = str(reason) or type(error).__name__
    return " ".join(text.split())


def _stream(url: str, folder: Path, name: str) -> tuple[Path, str]:
    """Download ``url`` to a temporary file in ``folder``; return its path and sha256."""
    request = urllib.request.Request(url, headers={"User-Agent": "pyrovae"})
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=TIMEOUT) as r:
            for chunk in iter(lambda: r.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest()


def fetch(
    file: DataFile,
    folder: Path,
    mirror: str | None = None,
    dataset: str | None = None,
    missing: Iterable[DataFile] = (),
) -> Path:
    """Download ``file`` into ``folder`` and verify it; return its path.

    ``mirror`` replaces the canonical URLs by ``f"{mirror}/{file.relative_path}"``. ``dataset`` and
    ``missing`` only shape the error message when the download fails.
    """
    urls = (f"{mirror.rstrip('/')}/{file.relative_path}",) if mirror else file.urls
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create {folder} ({_one_line(e)}); pass a writable --data-dir"
        ) from e
    dest = folder / file.name
    failure = None
    for url in urls:
        log.info("downloading %s to %s", url, dest)
        try:
            tmp, actual = _stream(url, folder, file.name)
        except (OSError, http.client.HTTPException, ValueError) as e:
            failure = failure or f"could not download {file.name} from {url} ({_one_line(e)})"
            continue
        if actual != file.sha256:
            tmp.unlink(missing_ok=True)
            failure = (
                f"refused {file.name} downloaded from {url}: sha256 {actual}, expected "
                f"{file.sha256}; the file was deleted"
            )
            continue
        tmp.chmod(0o644)  # mkstemp creates files readable by their owner only
        os.replace(tmp, dest)
        _remember_hash(dest, actual)
        return dest
    hint = _missing_message(dataset or file.dataset, list(missing) or [file], folder)
    raise DataError(f"{failure}; {hint}")


def ensure_files(
    folder_key: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    mirror: str | None = None,
    dataset: str | None = None,
    names: Iterable[str] | None = None,
) -> dict[str, Path]:
    """Verified local paths of the files of ``FILES[folder_key]``, downloading missing ones.

    Returns a dict from published file name to local path (which may be an accepted variant,
    e.g. ``.amat.gz`` for ``.amat``). ``names`` restricts the files to those published names.
    ``mirror`` defaults to ``$PYROVAE_MIRROR``.
    """
    files = FILES[folder_key]
    if names is not None:
        wanted = set(names)
        files = tuple(f for f in files if f.name in wanted)
    folder = resolve_data_dir(data_dir) / folder_key
    dataset = dataset or (files[0].dataset if files else folder_key)
    paths: dict[str, Path] = {}
    missing: list[DataFile] = []
    for file in files:
        found = _locate(file, folder)
        if found is None:
            missing.append(file)
        else:
            _verify(*found, file)
            paths[file.name] = found[0]
    if missing and not download:
        raise DataError(_missing_message(dataset, missing, folder))
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    for file in missing:
        paths[file.name] = fetch(file, folder, mirror, dataset, missing)
    return paths


def file_status(data_dir: str | os.PathLike[str] | None = None) -> list[dict]:
    """One dict per downloadable file: dataset, file, path, present, sha256_ok, used_by, url."""
    root = resolve_data_dir(data_dir)
    rows = []
    for folder_key, files in FILES.items():
        for file in files:
            found = _locate(file, root / folder_key)
            path = found[0] if found else root / folder_key / file.name
            ok = None
            if found is not None:
                try:
                    ok = sha256_file(path) == found[1]
                except OSError:
                    ok = False
            rows.append(
                {
                    "dataset": file.dataset,
                    "file": path.name,
                    "path": str(path),
                    "present": found is not None,
                    "sha256_ok": ok,
                    "used_by": file.used_by,
                    "url": file.urls[0],
                }
            )
    return rows
