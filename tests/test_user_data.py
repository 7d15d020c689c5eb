"""Your own data: every format gives the same tensors, bad inputs give one line, big files stay
on disk (issue #18).

The reference is a subset of the real MNIST training images; each test writes it out in a
format, loads it back with the split the data part documents (``permutation_split`` with
``floor(N · fraction)`` points, seed ``data_seed``) and compares with the subset itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pyrovae import plots
from pyrovae.config import RunConfig
from pyrovae.data import (
    DataError,
    check_run_data,
    describe,
    iter_chunks,
    load_configured,
    load_dataset,
    statistics,
)
from pyrovae.data.dataset import permutation_split
from pyrovae.data.files import NpyRows, uniforms
from pyrovae.data.inspect import split_stats

N = 500  # points of the MNIST subset: 400 / 50 / 50 at the default fractions
SPLIT = permutation_split(N, 50, 50, 0)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    monkeypatch.setenv("PYROVAE_MIRROR", "http://127.0.0.1:9")


@pytest.fixture(scope="module")
def subset(data_dir):
    """The first N MNIST training images: uint8 pixels, their float32 rows, labels."""
    mnist = load_dataset("mnist", data_dir, download=False)
    rows = mnist.train[:N]
    pixels = (rows * 255).round().to(torch.uint8).reshape(N, 28, 28).numpy()
    assert torch.equal(torch.from_numpy(pixels.reshape(N, -1).astype(np.float32) / 255), rows)
    return pixels, rows, mnist.train_labels[:N]


def _expected(rows: torch.Tensor, split=SPLIT) -> dict[str, torch.Tensor]:
    return {s: rows[torch.from_numpy(idx)] for s, idx in zip(("train", "valid", "test"), split)}


def _split_of(n: int, valid: float = 0.1, test: float = 0.1, seed: int = 0):
    return permutation_split(n, int(n * valid), int(n * test), seed)


def _assert_splits(data, expected):
    for split, x in expected.items():
        assert torch.equal(data.split(split), x), split


# --------------------------------------------------------------------------- formats


def _write_npy(pixels, labels, folder):
    np.save(folder / "mnist.npy", pixels)
    return folder / "mnist.npy", {}


def _write_npz(pixels, labels, folder):
    np.savez(folder / "mnist.npz", images=pixels, labels=labels.numpy())
    return folder / "mnist.npz", {}


def _write_pt(pixels, labels, folder):
    torch.save(torch.from_numpy(pixels), folder / "mnist.pt")
    return folder / "mnist.pt", {}


def _write_png(pixels, labels, folder):
    images = folder / "pngs"
    images.mkdir()
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(images / f"{i:04d}.png")
    return images, {}


def _write_csv(pixels, labels, folder):
    rows = (pixels.reshape(N, -1).astype(np.float32) / np.float32(255)).astype(np.float64)
    header = ",".join(f"p{i}" for i in range(784))
    np.savetxt(folder / "mnist.csv", rows, fmt="%.9g", delimiter=",", header=header, comments="")
    return folder / "mnist.csv", {"data_shape": [28, 28]}


def _array(pixels, labels, folder):
    return pixels, {}


def _tensor(pixels, labels, folder):
    return torch.from_numpy(pixels).unsqueeze(1), {}  # (N, 1, 28, 28)


def _torch_dataset(pixels, labels, folder):
    return torch.utils.data.TensorDataset(torch.from_numpy(pixels), labels), {}


WRITERS = {
    "npy": _write_npy,
    "npz": _write_npz,
    "pt": _write_pt,
    "png": _write_png,
    "csv": _write_csv,
    "array": _array,
    "tensor": _tensor,
    "torch-dataset": _torch_dataset,
}


@pytest.mark.parametrize("kind", list(WRITERS))
def test_every_format_gives_the_subset_with_the_documented_split(kind, subset, tmp_path):
    pixels, rows, labels = subset
    source, options = WRITERS[kind](pixels, labels, tmp_path)
    data = load_dataset(source, **options)
    _assert_splits(data, _expected(rows))
    assert data.shape == (1, 28, 28) and data.image_shape == (28, 28) and data.channels == 1
    assert not data.binary and data.unit_interval and not data.on_disk
    if kind in ("npz", "torch-dataset"):
        assert torch.equal(data.test_labels, labels[torch.from_numpy(SPLIT[2])])


def test_npy_kept_on_disk_reads_the_same_rows(subset, tmp_path):
    pixels, rows, _ = subset
    path, _ = _write_npy(pixels, None, tmp_path)
    data = load_dataset(path, on_disk="always")
    assert isinstance(data.train, NpyRows) and data.on_disk
    expected = _expected(rows)
    _assert_splits(dataclasses.replace(data, train=data.train[:]), expected)
    idx = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(1))[:37]
    assert torch.equal(data.train[idx], expected["train"][idx])
    assert torch.equal(data.train[3], expected["train"][3])
    assert torch.equal(torch.cat(list(iter_chunks(data.train, 64))), expected["train"])
    assert statistics(data)["train"] == split_stats(expected["train"])
    with pytest.raises(AttributeError, match="never whole"):
        data.train.max()


def test_npz_and_pt_with_named_splits_keep_them(subset, tmp_path):
    pixels, rows, labels = subset
    parts = {s: pixels[idx] for s, idx in zip(("train", "valid", "test"), SPLIT)}
    np.savez(tmp_path / "s.npz", **parts, test_labels=labels.numpy()[SPLIT[2]])
    torch.save({k: torch.from_numpy(v) for k, v in parts.items()}, tmp_path / "s.pt")
    for path in (tmp_path / "s.npz", tmp_path / "s.pt"):
        data = load_dataset(path, valid_fraction=0.3)  # fractions apply to one array only
        _assert_splits(data, _expected(rows))
    assert load_dataset(tmp_path / "s.npz").train_labels is None


def test_csv_without_a_shape_is_a_table(subset, tmp_path):
    pixels, rows, labels = subset
    path, _ = _write_csv(pixels, labels, tmp_path)
    data = load_dataset(path)
    assert data.shape == (784,) and data.image_shape is None
    _assert_splits(data, _expected(rows))


def test_channels_last_and_colour_images(tmp_path):
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (40, 6, 5, 3), dtype=np.uint8)
    last = load_dataset(hwc, channels_last=True)
    first = load_dataset(np.ascontiguousarray(hwc.transpose(0, 3, 1, 2)))
    assert last.shape == first.shape == (3, 6, 5) and last.channels == 3
    _assert_splits(last, {s: first.split(s) for s in ("train", "valid", "test")})
    folder = tmp_path / "rgb"
    folder.mkdir()
    for i, image in enumerate(hwc):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    _assert_splits(load_dataset(folder), {s: first.split(s) for s in ("train", "valid", "test")})
    opaque = np.concatenate([hwc[0], np.full((6, 5, 1), 255, np.uint8)], axis=2)
    Image.fromarray(opaque).save(folder / "40.png")  # RGBA, every pixel opaque: alpha dropped
    assert load_dataset(folder, test_fraction=0.5).shape == (3, 6, 5)


def test_folder_of_class_folders_gives_labels_and_resize(tmp_path):
    for k, (name, size) in enumerate((("cat", (12, 10)), ("dog", (8, 8)))):
        (tmp_path / name).mkdir()
        for i in range(10):
            Image.fromarray(np.full(size, 20 * i + k, np.uint8)).save(tmp_path / name / f"{i}.png")
    (tmp_path / ".hidden").write_text("skipped")
    with pytest.raises(DataError, match="different sizes.*--resize H,W"):
        load_dataset(tmp_path)
    data = load_dataset(tmp_path, resize=[6, 4])
    assert data.shape == (1, 6, 4)
    labels = torch.cat([data.train_labels, data.valid_labels, data.test_labels])
    assert sorted(labels.tolist()) == [0] * 10 + [1] * 10


def test_scalings(tmp_path):
    rng = np.random.default_rng(0)
    table = rng.normal(5.0, 3.0, (200, 4))
    table[:, 3] = 7.0  # a constant column is only shifted
    data = load_dataset(table, scaling="standardize")
    everything = torch.cat([data.train, data.valid, data.test]).double()
    assert not data.unit_interval and data.shape == (4,)
    torch.testing.assert_close(
        everything.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        everything.std(0, unbiased=False)[:3], torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0
    )
    assert (everything[:, 3] == 0).all()
    minmax = load_dataset(table, scaling="minmax")
    everything = torch.cat([minmax.train, minmax.valid, minmax.test])
    assert everything[:, :3].min(0).values.tolist() == [0, 0, 0]
    assert everything[:, :3].max(0).values.tolist() == [1, 1, 1]
    raw = load_dataset(table, scaling="none")
    assert torch.equal(raw.test, torch.from_numpy(table[_split_of(200)[2]].astype(np.float32)))
    images = rng.integers(10, 20, (100, 4, 4)).astype(np.int16)
    scaled = load_dataset(images, scaling="minmax")  # images: one range for every pixel
    values = torch.cat([scaled.train, scaled.valid, scaled.test])
    assert values.min() == 0 and values.max() == 1 and len(values.unique()) == 10


def test_binarisation_is_a_function_of_the_file(subset, tmp_path):
    pixels, rows, _ = subset
    path, _ = _write_npy(pixels, None, tmp_path)
    static = load_dataset(path, binarize="static", data_seed=3)
    assert static.binary and not static.dynamic_binarization
    on_disk = load_dataset(path, binarize="static", data_seed=3, on_disk="always")
    assert torch.equal(on_disk.train[:], static.train)
    # each point binarised by the noise of its row of the file, whatever split it falls in
    noise = uniforms(3, 0, np.arange(N), 784)
    everything = torch.from_numpy((noise < rows.numpy()).astype(np.float32))
    _assert_splits(static, _expected(everything, _split_of(N, seed=3)))
    assert not torch.equal(load_dataset(path, binarize="static", data_seed=4).test, static.test)
    dynamic = load_dataset(path, binarize="dynamic", data_seed=3)
    assert dynamic.binary and dynamic.dynamic_binarization
    assert torch.equal(dynamic.train, _expected(rows, _split_of(N, seed=3))["train"])
    assert torch.equal(dynamic.test, static.test)
    assert 0.12 < static.train.mean() < 0.14  # MNIST's mean grey level, as expected


def test_describe(subset, tmp_path):
    pixels, _, _ = subset
    path, _ = _write_npy(pixels, None, tmp_path)
    text = describe(load_dataset(path, on_disk="always", binarize="dynamic"))
    lines = text.splitlines()
    assert len(lines) == 3
    assert (
        lines[0]
        == "mnist.npy: 400 / 50 / 50 (train / valid / test) grey images of 1 x 28 x 28 (C x H x W)"
    )
    assert "values in [0, 1], binary: train binarised afresh" in lines[1]
    assert "train read from disk per batch (382.9 KiB file)" in lines[1]
    assert lines[2] == f"  source {path}"
    table = describe(load_dataset(np.linspace(-1, 1, 50 * 3).reshape(50, 3), scaling="none"))
    assert "table rows of 3 numbers" in table and "values in [-1, 1], real numbers" in table
    builtin = describe(load_dataset("digits"))
    assert "1297 / 250 / 250" in builtin and "held in memory" in builtin


# --------------------------------------------------------------------------- training


CONFIG = dict(latent_dim=2, hidden=[32], epochs=1, batch_size=50, iw_samples=0, threads=1)


def test_a_short_training_run_gives_the_same_numbers_from_every_format(subset, tmp_path):
    from pyrovae.train import train

    pixels, labels = subset[0], subset[2]
    results = {}
    for kind in ("npy", "png", "csv", "torch-dataset"):
        folder = tmp_path / kind
        folder.mkdir()
        source, options = WRITERS[kind](pixels, labels, folder)
        result = train(CONFIG, dataset=load_dataset(source, **options), plots=False)
        results[kind] = [{k: v for k, v in r.items() if "seconds" not in k} for r in result.metrics]
    first = results["npy"]
    assert first[0]["test_elbo"] < 0
    assert all(rows == first for rows in results.values()), results


def _trainer(data, seed=0):
    import pyro

    from pyrovae.build import build_model
    from pyrovae.trainer import Trainer

    config = RunConfig(**CONFIG).for_data(data.binary)
    pyro.set_rng_seed(seed)
    model, guide = build_model(config, data.shape)
    return Trainer(config, data, model, guide)


@pytest.mark.parametrize("binarize", ["none", "dynamic"])
def test_training_from_disk_repeats_training_from_memory(binarize, subset, tmp_path):
    path, _ = _write_npy(subset[0], None, tmp_path)
    passes = {}
    for on_disk in ("never", "always"):
        trainer = _trainer(load_dataset(path, on_disk=on_disk, binarize=binarize))
        passes[on_disk] = [trainer.train_pass()[0] for _ in range(2)], trainer.model.state_dict()
    (a, state_a), (b, state_b) = passes["never"], passes["always"]
    assert a == b
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_train_runs_on_a_split_kept_on_disk(subset, tmp_path):
    from pyrovae.train import train

    path, _ = _write_npy(subset[0], None, tmp_path)
    in_memory = train(CONFIG, dataset=load_dataset(path), plots=False)
    on_disk = train(CONFIG, dataset=load_dataset(path, on_disk="always"), plots=False)
    assert on_disk.metrics[0]["test_elbo"] == in_memory.metrics[0]["test_elbo"]


# --------------------------------------------------------------------------- bad inputs


def _npy(tmp_path, array, name="bad.npy"):
    np.save(tmp_path / name, array)
    return tmp_path / name


def _text(tmp_path, text, name="bad.csv"):
    (tmp_path / name).write_text(text)
    return tmp_path / name


def _folder(tmp_path, images, extra=None):
    folder = tmp_path / "images"
    folder.mkdir()
    for name, array in images.items():
        Image.fromarray(array).save(folder / name)
    for name, content in (extra or {}).items():
        (folder / name).write_bytes(content)
    return folder


GREY = np.zeros((4, 4), np.uint8)
BAD_INPUTS = {
    "nan": (lambda t: _npy(t, np.array([[0.5, np.nan]] * 20)), {}, "NaN or infinite values (row 0"),
    "inf in npz": (
        lambda t: (
            np.savez(t / "bad.npz", x=np.array([[0.5, 0.1]] * 19 + [[np.inf, 0]])) or t / "bad.npz"
        ),
        {},
        "NaN or infinite values (row 19",
    ),
    "ragged csv": (
        lambda t: _text(t, "1,2,3\n4,5,6\n7,8\n"),
        {},
        "line 3 has 2 values but line 1 has 3",
    ),
    "text in csv": (
        lambda t: _text(t, "a,b\n0.1,0.2\n0.3,x\n"),
        {},
        "line 3, column 2: 'x' is not a finite number",
    ),
    "missing csv value": (
        lambda t: _text(t, "0.1,0.2\n0.3,\n"),
        {},
        "line 2, column 2: 'an empty field'",
    ),
    "nan csv": (lambda t: _text(t, "0.1,0.2\n0.3,nan\n"), {}, "line 2, column 2: 'nan'"),
    "empty csv": (lambda t: _text(t, "\n\n"), {}, "is empty"),
    "mixed sizes": (
        lambda t: _folder(t, {"a.png": GREY, "b.png": np.zeros((5, 4), np.uint8)}),
        {},
        "a.png is 4x4, b.png is 5x4); pass --resize H,W",
    ),
    "grey and colour": (
        lambda t: _folder(t, {"a.png": GREY, "b.png": np.zeros((4, 4, 3), np.uint8)}),
        {},
        "mixes grey 8-bit images (a.png) with colour 8-bit ones (b.png)",
    ),
    "empty folder": (lambda t: (t / "images").mkdir() or t / "images", {}, "holds no images"),
    "not an image": (
        lambda t: _folder(t, {"a.png": GREY}, {"notes.txt": b"hello"}),
        {},
        "notes.txt is not a PNG or JPEG file",
    ),
    "corrupt image": (
        lambda t: _folder(t, {"a.png": GREY}, {"b.png": b"\x89PNG not really"}),
        {},
        "b.png cannot be read as an image",
    ),
    "transparent": (
        lambda t: _folder(t, {"a.png": np.zeros((4, 4, 4), np.uint8)}),
        {},
        "has transparent pixels",
    ),
    "unscaled values": (
        lambda t: _npy(t, np.linspace(0, 255, 200).reshape(100, 2)),
        {},
        "values in [0, 255], outside [0, 1]",
    ),
    "binarize standardised": (
        lambda t: _npy(t, np.linspace(0, 1, 200).reshape(100, 2)),
        {"scaling": "standardize", "binarize": "static"},
        "--binarize static needs values in [0, 1]",
    ),
    "not an image shape": (
        lambda t: _npy(t, np.zeros((20, 5, 4, 4), np.uint8)),
        {},
        "not an image of 1 or 3 channels first; pass --data-shape",
    ),
    "channels last": (
        lambda t: _npy(t, np.zeros((20, 4, 4, 3), np.uint8)),
        {},
        "pass --channels-last",
    ),
    "wrong data shape": (
        lambda t: _npy(t, np.zeros((20, 12), np.uint8)),
        {"data_shape": [3, 3]},
        "needs 9; give the shape of one point",
    ),
    "too few points": (lambda t: _npy(t, np.zeros((5, 2), np.uint8)), {}, "has 5 points: too few"),
    "pickled npy": (
        lambda t: (
            np.save(t / "bad.npy", np.array([{"a": 1}] * 3), allow_pickle=True) or t / "bad.npy"
        ),
        {},
        "cannot read",
    ),
    "no such file": (lambda t: t / "nope.npy", {}, "unknown dataset"),
    "unknown suffix": (
        lambda t: _text(t, "x", "bad.txt"),
        {},
        "is not a dataset file pyrovae reads",
    ),
    "on disk csv": (
        lambda t: _text(t, "0.1\n" * 20),
        {"on_disk": "always"},
        "reads .npy files only",
    ),
    "resize array": (
        lambda t: _npy(t, np.zeros((20, 4, 4), np.uint8)),
        {"resize": [2, 2]},
        "--resize applies to folders",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_each_bad_input_gives_one_line_naming_the_file_and_the_fix(case, tmp_path):
    make, options, fragment = BAD_INPUTS[case]
    source = make(tmp_path)
    with pytest.raises(DataError) as caught:
        load_dataset(source, **options)
    message = str(caught.value)
    assert "\n" not in message
    assert fragment in message, message
    assert str(Path(source).name) in message  # the file or folder is named
    assert re.search(
        r"\b(pass|give|save|replace|remove|move|fill|flatten|put|write|choose|"
        r"drop|convert|leave)\b",
        message,
    ), message


def test_options_are_checked_in_one_line():
    with pytest.raises(DataError, match="unknown data option 'scale'; choose from scaling"):
        load_dataset(np.zeros((20, 2)), scale="unit")
    with pytest.raises(DataError, match="scaling must be one of unit, minmax, standardize, none"):
        load_dataset(np.zeros((20, 2)), scaling="zscore")
    with pytest.raises(
        DataError, match="--binarize applies to your own data; the built-in 'digits'"
    ):
        load_dataset("digits", binarize="static")


def test_run_checks_name_the_data_and_the_fix(subset):
    grey = load_dataset(subset[0])
    with pytest.raises(DataError, match="holds grey values .* --binarize static or dynamic"):
        check_run_data(grey, RunConfig(likelihood="bernoulli"))
    check_run_data(grey, RunConfig(likelihood="bernoulli", relaxed_bernoulli=True))
    check_run_data(load_dataset(subset[0], binarize="dynamic"), RunConfig(likelihood="bernoulli"))
    table = load_dataset(np.linspace(-1, 1, 300).reshape(100, 3), scaling="none")
    with pytest.raises(DataError, match="table rows of 3 numbers but --encoder conv needs images"):
        check_run_data(table, RunConfig(encoder="conv"))
    with pytest.raises(DataError, match="values outside \\[0, 1\\] .* --scaling unit or minmax"):
        check_run_data(table, RunConfig(likelihood="bernoulli", relaxed_bernoulli=True))
    check_run_data(table, RunConfig())


def test_load_configured_reads_the_data_options():
    assert load_configured(RunConfig(dataset="digits")).name == "digits"
    with pytest.raises(DataError, match="--scaling applies to your own data; the built-in"):
        load_configured(RunConfig(dataset="digits", scaling="minmax"))


def test_load_configured_takes_a_path_and_its_options(subset, tmp_path):
    path, _ = _write_npy(subset[0], None, tmp_path)
    config = RunConfig(dataset=str(path), binarize="dynamic", likelihood="bernoulli")
    data = load_configured(config)
    assert data.dynamic_binarization and data.source == str(path)
    with pytest.raises(DataError, match="holds grey values"):
        load_configured(config.replace(binarize="none"))


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", ["nan", "ragged csv", "mixed sizes", "unscaled values"])
def test_bad_data_on_the_command_line_leaves_the_run_folder_as_it_was(case, tmp_path):
    from pyrovae.cli import main

    run = tmp_path / "run"
    tiny = ["--hidden", "8", "--latent", "2", "--epochs", "1", "--iw-samples", "0", "--no-progress"]
    done = CliRunner().invoke(main, ["train", "--dataset", "digits", *tiny, "--out", str(run)])
    assert done.exit_code == 0, done.output
    before = _hashes(run)
    make, options, fragment = BAD_INPUTS[case]
    source = make(tmp_path)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    result = CliRunner().invoke(
        main, ["train", "--dataset", str(source), *flags, *tiny, "--out", str(run), "--overwrite"]
    )
    assert result.exit_code != 0
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert fragment in errors[0], errors[0]
    assert _hashes(run) == before


# --------------------------------------------------------------------------- memory


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc")
def test_a_file_on_disk_trains_in_bounded_memory(tmp_path):
    """Training from a .npy four times the memory budget (the growth of the child's peak
    resident set over a warmed-up baseline) reads it in batches: the peak grows by far less
    than the file, where reading it into memory would grow it by four times its size."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import memmap_rss  # the benchmark's own measurement, on a small model

    path = tmp_path / "big.npy"
    memmap_rss.write_npy(path, 256 << 20)  # 256 MiB of uint8 28 x 28 images
    budget = path.stat().st_size // 4
    result = memmap_rss.measure(path, 200, "always", hidden=32, latent=2)
    assert result["on_disk"]
    assert result["peak_since_baseline"] - result["baseline"] < budget, (result, budget)


# --------------------------------------------------------------------------- plots


def test_colour_images_tile_in_rgb_and_grey_shapes_are_unchanged(tmp_path):
    x = np.random.default_rng(0).random((5, 3 * 4 * 6))
    tiled = plots.tile_images(x, (3, 4, 6), nrow=2, pad=1, pad_value=np.nan)
    assert tiled.shape == (2 * 4 + 1, 3 * 6 + 2, 3)
    np.testing.assert_array_equal(tiled[5:9, 7:13], x[4].reshape(3, 4, 6).transpose(1, 2, 0))
    grey = np.random.default_rng(1).random((5, 24))
    np.testing.assert_array_equal(
        plots.tile_images(grey, (1, 4, 6)), plots.tile_images(grey, (4, 6))
    )
    path = plots.plot_image_grid(x, (3, 4, 6), tmp_path / "rgb.png", nrow=2)
    image = mpimg.imread(path)
    assert image.shape[2] == 4 and not np.allclose(image[..., 0], image[..., 1])
    plots.plot_reconstructions(x, x, (3, 4, 6), tmp_path / "rec.png")
    decode = lambda z: torch.sigmoid(z.sum(1, keepdim=True).expand(-1, 72))  # noqa: E731
    plots.plot_manifold(decode, (3, 4, 6), tmp_path / "manifold.png", grid_size=3)


def test_tables_are_drawn_as_rows_and_have_no_manifold(tmp_path):
    rows = np.random.default_rng(0).normal(size=(8, 5))
    for path in (
        plots.plot_image_grid(rows, (5,), tmp_path / "samples.png", vmin=None, vmax=None),
        plots.plot_reconstructions(rows, rows + 0.1, (5,), tmp_path / "rec.png"),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plots.is_image_shape((5,)) and plots.is_image_shape((3, 4, 4))
    with pytest.raises(ValueError, match="not an image"):
        plots.plot_manifold(lambda z: z, (5,), tmp_path / "m.png")


# --------------------------------------------------------------------------- README


def test_readme_example_with_your_own_array(monkeypatch, tmp_path, capsys):
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "faces" in b)
    digits = load_dataset("digits").train[:600]
    np.save(
        tmp_path / "faces.npy", (digits * 255).round().to(torch.uint8).reshape(-1, 8, 8).numpy()
    )
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "480 / 60 / 60 (train / valid / test) grey images of 1 x 8 x 8" in out
    assert re.search(r"test ELBO -\d+\.\d nats", out), out


def test_the_cli_inspects_and_trains_on_a_file(subset, tmp_path):
    """``pyrovae datasets PATH`` prints the load summary with the data options applied;
    ``pyrovae train --dataset PATH`` trains on it and records the absolute path, the data
    shape and the value range in config.json, so the run resumes from another folder."""
    from pyrovae.cli import main

    pixels, _, _ = subset
    path, _ = _write_npy(pixels, None, tmp_path)
    shown = CliRunner().invoke(main, ["datasets", str(path), "--binarize", "static"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[0] == (
        "mnist.npy: 400 / 50 / 50 (train / valid / test) grey images of 1 x 28 x 28 (C x H x W)"
    )
    assert "binary (0/1)" in shown.output
    run = tmp_path / "run"
    args = ["train", "--dataset", str(path), "--binarize", "static", "--encoder", "conv"]
    args += ["--conv-channels", "4", "--hidden", "16", "--latent", "2", "--epochs", "1"]
    args += ["--iw-samples", "0", "--no-progress", "--threads", "1", "--out", str(run)]
    trained = CliRunner().invoke(main, args)
    assert trained.exit_code == 0, trained.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["dataset"] == str(path.absolute())
    assert saved["config"]["binarize"] == "static"
    assert saved["data_shape"] == [1, 28, 28] and saved["value_range"] == [0.0, 1.0]
    assert saved["num_train"] == 400


def test_train_takes_an_array_in_place_of_a_dataset_name(subset):
    """``train(config, dataset=array)`` reads the array with the config's data options:
    the same numbers as the Dataset ``load_dataset`` makes of it."""
    from pyrovae.train import train

    pixels, _, _ = subset
    config = {**CONFIG, "binarize": "static", "likelihood": "bernoulli"}
    direct = train(config, dataset=pixels, plots=False)
    loaded = train(config, dataset=load_dataset(pixels, binarize="static"), plots=False)
    assert direct.metrics[-1]["train_elbo"] == loaded.metrics[-1]["train_elbo"]
    assert direct.summary["test_elbo"] == loaded.summary["test_elbo"]
