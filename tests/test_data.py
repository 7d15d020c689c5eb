"""The dataset loaders, on the real files of the shared data folder."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrovae.data import (
    DATASET_NAMES,
    DataError,
    Dataset,
    dataset_status,
    load_dataset,
    resolve_data_dir,
)
from pyrovae.data import digits as digits_module
from pyrovae.data.binarized_mnist import parse_amat, read_amat
from pyrovae.data.download import sha256_file
from pyrovae.data.mnist import IMAGES_MAGIC, LABELS_MAGIC, read_idx

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    """Any download a test triggers by mistake goes to a closed local port, never the internet."""
    monkeypatch.setenv("PYROVAE_MIRROR", "http://127.0.0.1:9")


@pytest.fixture(scope="module")
def mnist(data_dir):
    return load_dataset("mnist", data_dir, download=False)


@pytest.fixture(scope="module")
def mnist_dynamic(data_dir):
    return load_dataset("mnist-dynamic", data_dir, download=False)


@pytest.fixture(scope="module")
def binarized(data_dir):
    return load_dataset("mnist-binarized", data_dir, download=False)


@pytest.fixture(scope="module")
def frey(data_dir):
    return load_dataset("frey", data_dir, download=False)


def _idx_raw(path: Path, header: int) -> np.ndarray:
    """An independent reading of an IDX .gz file: skip the header, take the bytes."""
    return np.frombuffer(gzip.decompress(path.read_bytes()), dtype=np.uint8, offset=header)


def _is_binary(x: torch.Tensor) -> bool:
    return bool(torch.logical_or(x == 0, x == 1).all())


def test_dataset_names():
    assert DATASET_NAMES == ("digits", "mnist", "mnist-dynamic", "mnist-binarized", "frey")


# --- mnist -----------------------------------------------------------------------------------


def test_mnist_shapes_and_values(mnist, data_dir):
    assert mnist.name == "mnist"
    assert (len(mnist.train), len(mnist.valid), len(mnist.test)) == (50000, 10000, 10000)
    assert mnist.image_shape == (28, 28) and mnist.data_dim == 784
    assert not mnist.binary and not mnist.dynamic_binarization
    assert Path(mnist.source) == (data_dir / "mnist").absolute()
    for split in ("train", "valid", "test"):
        x = mnist.split(split)
        assert x.dtype == torch.float32 and x.shape[1] == 784
        assert x.min() == 0 and x.max() == 1
        assert not _is_binary(x)  # real grey levels survive
    assert mnist.train_labels.dtype == torch.int64 and mnist.train_labels.shape == (50000,)
    assert mnist.valid_labels.shape == (10000,) and mnist.test_labels.shape == (10000,)
    counts = torch.bincount(mnist.test_labels, minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_pixel_statistics(mnist):
    full_train = torch.cat([mnist.train, mnist.valid])  # the 60000 official training images
    assert full_train.mean().item() == pytest.approx(0.1307, abs=5e-4)
    assert full_train.std().item() == pytest.approx(0.3081, abs=5e-4)
    assert mnist.train.mean().item() == pytest.approx(0.13, abs=0.002)


def test_mnist_split_is_first_50000_then_last_10000(mnist, data_dir):
    images = _idx_raw(data_dir / "mnist" / MNIST_FILES[0], 16).reshape(60000, 784)
    labels = _idx_raw(data_dir / "mnist" / MNIST_FILES[1], 8)
    test_images = _idx_raw(data_dir / "mnist" / MNIST_FILES[2], 16).reshape(10000, 784)
    scale = np.float32(255)
    assert torch.equal(mnist.train, torch.from_numpy(images[:50000].astype(np.float32) / scale))
    assert torch.equal(mnist.valid, torch.from_numpy(images[50000:].astype(np.float32) / scale))
    assert torch.equal(mnist.test, torch.from_numpy(test_images.astype(np.float32) / scale))
    assert mnist.train_labels.tolist() == labels[:50000].tolist()
    assert mnist.valid_labels.tolist() == labels[50000:].tolist()


def test_mnist_dynamic(mnist, mnist_dynamic, data_dir):
    d = mnist_dynamic
    assert d.name == "mnist-dynamic" and d.binary and d.dynamic_binarization
    assert torch.equal(d.train, mnist.train)  # grey probabilities, sampled by the trainer
    assert not _is_binary(d.train)
    for split in ("valid", "test"):
        x, p = d.split(split), mnist.split(split)
        assert x.dtype == torch.float32 and x.shape == p.shape and _is_binary(x)
        assert torch.all(x[p == 0] == 0) and torch.all(x[p == 1] == 1)  # x ~ Bernoulli(p)
        assert x.mean().item() == pytest.approx(p.mean().item(), abs=0.002)
    assert torch.equal(d.test_labels, mnist.test_labels)
    torch.manual_seed(12345)  # the one-off binarisation must not depend on the global RNG
    again = load_dataset("mnist-dynamic", data_dir, download=False)
    assert torch.equal(again.valid, d.valid) and torch.equal(again.test, d.test)
    assert not torch.equal(d.valid[:1000], d.test[:1000])


# --- binarised mnist -------------------------------------------------------------------------


def test_binarized_mnist(binarized, data_dir):
    assert binarized.name == "mnist-binarized"
    assert binarized.binary and not binarized.dynamic_binarization
    assert binarized.image_shape == (28, 28)
    assert Path(binarized.source) == (data_dir / "binarized_mnist").absolute()
    expected = {"train": (50000, 0.1306), "valid": (10000, 0.1311), "test": (10000, 0.1325)}
    for split, (size, mean) in expected.items():
        x = binarized.split(split)
        assert x.shape == (size, 784) and x.dtype == torch.float32
        assert _is_binary(x)
        assert x.mean().item() == pytest.approx(mean, abs=0.001)
    assert binarized.train_labels is None and binarized.test_labels is None


def test_binarized_first_image_matches_text(binarized, data_dir):
    with gzip.open(data_dir / "binarized_mnist" / "binarized_mnist_valid.amat.gz", "rt") as f:
        first = [float(v) for v in f.readline().split()]
    assert binarized.valid[0].tolist() == first


def test_uncompressed_amat_reads_like_gzip(binarized, data_dir, tmp_path):
    source = data_dir / "binarized_mnist"
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    for split in ("train", "valid"):
        shutil.copy(source / f"binarized_mnist_{split}.amat.gz", folder)
    text = gzip.decompress((source / "binarized_mnist_test.amat.gz").read_bytes())
    (folder / "binarized_mnist_test.amat").write_bytes(text)
    loaded = load_dataset("mnist-binarized", tmp_path, download=False)
    assert torch.equal(loaded.test, binarized.test)
    assert torch.equal(loaded.train, binarized.train)
    status = {r["file"]: r for r in dataset_status(tmp_path) if r["dataset"] == "mnist-binarized"}
    assert status["binarized_mnist_test.amat"]["sha256_ok"] is True
    assert status["binarized_mnist_train.amat.gz"]["sha256_ok"] is True


def test_amat_other_whitespace_parses_the_same(data_dir):
    text = gzip.decompress(
        (data_dir / "binarized_mnist" / "binarized_mnist_test.amat.gz").read_bytes()
    )
    canonical = parse_amat(text[: 50 * 1568])
    lines = text[: 50 * 1568].decode().splitlines()
    messy = "\r\n".join("  " + line.replace(" ", " \t ") + " " for line in lines) + "\r\n\r\n"
    assert canonical.shape == (50, 784)
    np.testing.assert_array_equal(parse_amat(messy.encode()), canonical)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    separator=st.sampled_from([" ", "  ", "\t", " \t"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    trailing=st.sampled_from(["", " ", "\n"]),
)
def test_amat_round_trip(rows, seed, separator, newline, trailing):
    bits = np.random.default_rng(seed).integers(0, 2, size=(rows, 784), dtype=np.uint8)
    text = newline.join(separator.join("1" if b else "0" for b in row) for row in bits)
    parsed = parse_amat((text + newline + trailing).encode())
    assert parsed.dtype == np.uint8
    np.testing.assert_array_equal(parsed, bits)


def test_amat_malformed_line_is_named(tmp_path):
    good = " ".join(["0"] * 784)
    bad = " ".join(["0"] * 783 + ["2"])
    path = tmp_path / "x.amat"
    path.write_text(f"{good}\n{good}\n{bad}\n")
    with pytest.raises(DataError, match=r"line 3 .*expected 784 values 0/1"):
        read_amat(path)
    path.write_text(f"{good}\n{' '.join(['1'] * 700)}\n")
    with pytest.raises(DataError, match="line 2 has 700 values"):
        read_amat(path)


def test_binarized_parse_time(data_dir):
    import time

    start = time.perf_counter()
    x = read_amat(data_dir / "binarized_mnist" / "binarized_mnist_train.amat.gz")
    assert x.shape == (50000, 784)
    assert time.perf_counter() - start < 3.0


# --- frey --------------------------------------------------------------------------------------


def test_frey(frey, data_dir):
    assert frey.name == "frey" and frey.image_shape == (28, 20) and frey.data_dim == 560
    assert (len(frey.train), len(frey.valid), len(frey.test)) == (1565, 200, 200)
    assert not frey.binary and not frey.dynamic_binarization
    for split in ("train", "valid", "test"):
        x = frey.split(split)
        assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    ff = scipy.io.loadmat(data_dir / "frey" / "frey_rawface.mat")["ff"]
    frames = ff.T.reshape(-1, 28, 20)
    perm = np.random.default_rng(0).permutation(1965)  # the split documented in pyrovae.data.frey
    indices = {"train": perm[:1565], "valid": perm[1565:1765], "test": perm[1765:]}
    for split, idx in indices.items():
        for row in (0, 17, len(idx) - 1):
            image = frey.split(split)[row].reshape(28, 20).numpy()
            np.testing.assert_allclose(image, frames[idx[row]] / 255, rtol=0, atol=1e-7)
    all_rows = torch.cat([frey.train, frey.valid, frey.test])
    expected = torch.from_numpy(frames[perm].reshape(1965, 560).astype(np.float32) / 255)
    assert torch.equal(all_rows, expected)  # a partition of all 1965 frames


# --- digits (embedded) ---------------------------------------------------------------------


def test_digits_works_with_an_empty_data_folder(tmp_path):
    d = load_dataset("digits", tmp_path, download=False)
    assert list(tmp_path.iterdir()) == []
    assert d.source == "embedded" and d.image_shape == (8, 8) and d.data_dim == 64
    assert (len(d.train), len(d.valid), len(d.test)) == (1297, 250, 250)
    assert not d.binary and not d.dynamic_binarization
    everything = torch.cat([d.train, d.valid, d.test])
    assert everything.dtype == torch.float32 and everything.min() == 0 and everything.max() == 1
    assert torch.equal(everything * 16, (everything * 16).round())  # counts 0..16 / 16
    labels = torch.cat([d.train_labels, d.valid_labels, d.test_labels])
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))
    assert set(d.test_labels.tolist()) == set(range(10))


def test_digits_matches_file_and_documented_split():
    path = Path(str(digits_module.embedded_file()))
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    perm = np.random.default_rng(0).permutation(1797)
    d = load_dataset("digits")
    train = torch.from_numpy(table[perm[:1297], :64] / 16).float()
    assert torch.equal(d.train, train)
    assert d.test_labels.tolist() == table[perm[1547:], 64].astype(int).tolist()


def test_digits_is_scikit_learn_copy():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    ref = sklearn_datasets.load_digits()
    d = load_dataset("digits")
    perm = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(d.valid.numpy() * 16, ref.data[perm[1297:1547]])
    np.testing.assert_array_equal(d.valid_labels.numpy(), ref.target[perm[1297:1547]])


def test_embedded_readme_states_checksum():
    path = Path(str(digits_module.embedded_file()))
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    readme = (path.parent / "README.md").read_text()
    assert actual == digits_module.SHA256
    assert actual in readme
    assert "CC BY 4.0" in readme and "Alpaydin" in readme and "UCI" in readme


def test_digits_checksum_is_verified(monkeypatch):
    monkeypatch.setattr(digits_module, "SHA256", "0" * 64)
    with pytest.raises(DataError, match="embedded digits.csv.gz has sha256"):
        load_dataset("digits")


# --- checksums and status ----------------------------------------------------------------------


def test_dataset_status_all_ok(data_dir):
    rows = dataset_status(data_dir)
    assert len(rows) == 9
    for row in rows:
        assert {"dataset", "file", "path", "present", "sha256_ok"} <= set(row)
        assert row["dataset"] in DATASET_NAMES
        assert row["present"] is True and row["sha256_ok"] is True, row
    assert {r["dataset"] for r in rows} == {"digits", "mnist", "mnist-binarized", "frey"}
    assert {r["file"] for r in rows if r["dataset"] == "mnist"} == set(MNIST_FILES)


def test_dataset_status_empty_folder(tmp_path):
    rows = [r for r in dataset_status(tmp_path) if r["dataset"] != "digits"]
    assert len(rows) == 8
    for row in rows:
        assert row["present"] is False and row["sha256_ok"] is None
        assert Path(row["path"]).parent.parent == tmp_path


def test_present_file_with_wrong_checksum(data_dir, tmp_path):
    (tmp_path / "frey").mkdir()
    raw = bytearray((data_dir / "frey" / "frey_rawface.mat").read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / "frey" / "frey_rawface.mat").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="frey_rawface.mat has sha256 .*expected 265a83a2.*delete"):
        load_dataset("frey", tmp_path, download=True)
    [row] = [r for r in dataset_status(tmp_path) if r["dataset"] == "frey"]
    assert row["present"] is True and row["sha256_ok"] is False


def test_checksum_cached_by_path_size_and_mtime(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 100)
    first = sha256_file(path)
    assert first == hashlib.sha256(b"a" * 100).hexdigest()
    stat = path.stat()
    path.write_bytes(b"b" * 100)  # same size; restore the mtime: the cached hash is reused
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert sha256_file(path) == first
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert sha256_file(path) == hashlib.sha256(b"b" * 100).hexdigest()


# --- malformed files and missing data --------------------------------------------------------


def _write_idx(path: Path, magic: int, shape: tuple[int, ...], payload: bytes) -> None:
    header = struct.pack(f">I{len(shape)}I", magic, *shape)
    path.write_bytes(gzip.compress(header + payload))


def test_corrupted_idx_header(data_dir, tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress((data_dir / "mnist" / MNIST_FILES[3]).read_bytes()))
    assert read_idx(data_dir / "mnist" / MNIST_FILES[3], LABELS_MAGIC).shape == (10000,)
    raw[3] = 0x03  # claims 3 dimensions: not a labels file
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=r"magic number 0x00000803, expected 0x00000801"):
        read_idx(path, LABELS_MAGIC)
    _write_idx(path, IMAGES_MAGIC, (10, 28, 28), bytes(10 * 784 - 1))
    with pytest.raises(DataError, match=r"holds 7839 values but its IDX header \(10, 28, 28\)"):
        read_idx(path, IMAGES_MAGIC)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(path, IMAGES_MAGIC)


def test_corrupted_idx_file_in_data_folder(data_dir, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in MNIST_FILES:
        shutil.copy(data_dir / "mnist" / name, folder)
    raw = bytearray(gzip.decompress((folder / MNIST_FILES[3]).read_bytes()))
    raw[2] = 0x0D  # float instead of ubyte
    (folder / MNIST_FILES[3]).write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError) as info:
        load_dataset("mnist", tmp_path, download=False)
    assert "\n" not in str(info.value) and MNIST_FILES[3] in str(info.value)


def test_missing_dataset_without_download(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("mnist", tmp_path, download=False)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "mnist") in message
    assert all(name in message for name in MNIST_FILES)
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in message
    assert not (tmp_path / "mnist").exists()


def test_partly_missing_dataset_names_only_missing_files(data_dir, tmp_path):
    (tmp_path / "mnist").mkdir()
    for name in MNIST_FILES[2:]:
        shutil.copy(data_dir / "mnist" / name, tmp_path / "mnist")
    with pytest.raises(
        DataError,
        match=r"^mnist-dynamic needs train-images-idx3-ubyte\.gz, "
        r"train-labels-idx1-ubyte\.gz in ",
    ):
        load_dataset("mnist-dynamic", tmp_path, download=False)


@pytest.mark.parametrize("name", ["mnist-binarized", "frey"])
def test_missing_other_datasets_without_download(name, tmp_path):
    with pytest.raises(DataError, match=rf"^{name} needs .* in {re.escape(str(tmp_path))}"):
        load_dataset(name, tmp_path, download=False)


def test_unknown_names():
    with pytest.raises(DataError, match="unknown dataset 'cifar'; choose one of digits, mnist"):
        load_dataset("cifar")
    with pytest.raises(DataError, match="unknown split 'val'"):
        load_dataset("digits").split("val")


# --- data folder resolution --------------------------------------------------------------------


def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("PYROVAE_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("PYROVAE_DATA")
    assert resolve_data_dir() == tmp_path / "xdg" / "pyrovae"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "pyrovae"
    assert not (tmp_path / "home").exists()  # resolving never creates folders


def test_load_uses_env_data_dir(monkeypatch, data_dir, frey):
    monkeypatch.setenv("PYROVAE_DATA", str(data_dir))
    loaded = load_dataset("frey")
    assert loaded.source == frey.source and torch.equal(loaded.test, frey.test)


# --- the container -----------------------------------------------------------------------------


def test_dataset_checks_its_invariants(frey):
    with pytest.raises(ValueError, match="outside"):
        dataclasses.replace(frey, train=frey.train * 2)
    with pytest.raises(ValueError, match="declared binary"):
        dataclasses.replace(frey, binary=True)
    with pytest.raises(ValueError, match="columns"):
        dataclasses.replace(frey, image_shape=(28, 28))
    with pytest.raises(ValueError, match="float32"):
        dataclasses.replace(frey, valid=frey.valid.double())
    with pytest.raises(dataclasses.FrozenInstanceError):
        frey.name = "x"
    small = dataclasses.replace(frey, train=frey.train[:10])
    assert isinstance(small, Dataset) and len(small.split("train")) == 10
    assert "1565/200/200" in repr(frey)
