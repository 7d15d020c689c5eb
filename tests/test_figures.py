"""Every figure is readable: not blank, the panels it promises, no text over another text,
no text beyond the figure's edge.

The run plots come from a tiny real run (the embedded ``digits``, 2 epochs); the
rate–distortion plane from sweep-like tables; each results figure from its committed JSON,
redrawn by the script that wrote it (nothing is trained for those). Texts are measured with
the renderer (:func:`pyrovae.plots.text_boxes`).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from pyrovae import plots
from pyrovae.sweep import write_figures

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_readable(fig: Figure, axes: int | None = None) -> list[tuple[str, object]]:
    """Not blank, ``axes`` panels (visible axes with their frame on), no overlapping text,
    no text outside: returns the texts."""
    boxes = plots.text_boxes(fig)  # draws the figure on its canvas
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)
    assert pixels.std() > 10, "blank figure"
    if axes is not None:
        shown = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
        assert len(shown) == axes, [ax.get_title() for ax in shown]
    assert boxes, "no text at all"
    assert not plots.overlaps(boxes), plots.overlaps(boxes)
    assert not plots.outside(boxes, fig), plots.outside(boxes, fig)
    return boxes


@pytest.fixture
def saved(monkeypatch) -> list[Figure]:
    """The figures the scripts save (``Figure.savefig`` recorded, then run as usual)."""
    figures: list[Figure] = []
    original = Figure.savefig

    def recording(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    return figures


# --------------------------------------------------------------------------- the checks


def test_text_checks_find_overlaps_and_texts_outside():
    fig = plots._new_figure((4, 3))
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, "first label", transform=ax.transAxes)
    ax.text(0.52, 0.5, "second label", transform=ax.transAxes)
    fig.text(0.98, 0.5, "beyond the right edge")
    boxes = plots.text_boxes(fig)
    assert ("first label", "second label") in plots.overlaps(boxes)
    assert plots.outside(boxes, fig) == ["beyond the right edge"]
    assert "first label" in [t for t, _ in boxes] and "" not in [t for t, _ in boxes]


def test_place_labels_avoids_every_label_point_and_edge():
    fig = plots._new_figure((4, 3))
    ax = fig.add_subplot()
    xy = [(0.0, 0.0), (0.02, 0.01), (0.05, 0.0), (1.0, 1.0), (0.99, 0.02)]
    ax.scatter(*zip(*xy))
    ax.set(xlim=(-0.05, 1.02), ylim=(-0.03, 1.02))
    key = plots.label_points(ax, xy, [f"β={b}" for b in (0.1, 0.2, 0.3, 0.4, 0.5)])
    placed = [t for t in ax.texts if t.get_visible()]
    shown = {t.get_text() for t in placed} | set(key.values())
    assert shown == {f"β={b}" for b in (0.1, 0.2, 0.3, 0.4, 0.5)}  # each label, once
    renderer = fig.canvas.get_renderer()
    for t in placed:  # inside the axes, off every point
        box = plots._text_box(t, renderer)
        assert ax.bbox.x0 <= box.x0 and box.x1 <= ax.bbox.x1
        assert ax.bbox.y0 <= box.y0 and box.y1 <= ax.bbox.y1
        for x, y in ax.transData.transform(xy):
            assert not (box.x0 < x < box.x1 and box.y0 < y < box.y1), t.get_text()
    assert_readable(fig)


def test_crowded_labels_become_numbers_with_a_key():
    fig = plots._new_figure((5, 4))
    ax = fig.add_subplot()
    xy = np.random.default_rng(0).uniform(0, 1, (24, 2))
    ax.scatter(*xy.T)
    key = plots.label_points(ax, xy, [f"a long label, run {i}" for i in range(24)])
    assert key, "24 long labels cannot all fit beside their points"
    assert sorted(key) == list(range(1, len(key) + 1))
    assert all(v.startswith("a long label") for v in key.values())
    numbers = {t.get_text() for t in ax.texts}
    assert {str(n) for n in key} <= numbers  # each number at its point
    assert_readable(fig)


# --------------------------------------------------------------------------- run plots


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real run (digits, 2 epochs, 2-D latent space): its folder and the figures it wrote."""
    from pyrovae.train import train

    folder = tmp_path_factory.mktemp("run") / "run"
    config = {"dataset": "digits", "epochs": 2, "hidden": [32], "latent_dim": 2}
    config.update(iw_samples=5, seed=0, threads=1)
    with plots.capture_figures() as figures:
        train(config, folder)
    names = ("curves", "reconstructions", "samples", "manifold")
    return folder, dict(zip(names, figures, strict=True))


@pytest.fixture(scope="module")
def run_figures(tiny_run):
    return tiny_run[1]


def test_run_curves_show_elbo_rate_and_distortion_in_labelled_panels(run_figures):
    fig = run_figures["curves"]
    texts = [t for t, _ in assert_readable(fig, axes=3)]
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["ELBO (nats)", "test rate R (nats)", "test distortion D (nats)"]
    assert "test" in texts and "train (mean over the epoch)" in texts
    assert not [t for t in texts if "_" in t]  # no raw metric keys


def test_run_reconstructions_are_full_rows_of_labelled_pairs(run_figures):
    fig = run_figures["reconstructions"]
    assert_readable(fig, axes=1)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["input", "reconstruction"] * 2
    assert all(t.tick1line.get_markersize() == 0 for t in ax.yaxis.get_major_ticks())
    assert "each above its reconstruction" in ax.get_title()
    tiled = np.asarray(ax.images[0].get_array())
    # 16 test images: two pairs of rows of 8 (8 x 8 digits), 3 px between the pairs
    assert tiled.shape == (2 * (8 + 1 + 8) + 3, 8 * 8 + 7)
    for top in (0, 9, 20, 29):  # every cell of every row holds an image
        for col in range(8):
            assert not np.isnan(tiled[top : top + 8, col * 9 : col * 9 + 8]).any()
    assert fig.get_size_inches()[0] * fig.dpi >= 600  # 8 x 8 digits at >= 8 px a pixel


def test_run_samples_and_manifold_are_readable(run_figures):
    assert_readable(run_figures["samples"])
    assert_readable(run_figures["manifold"], axes=1)


def test_training_curves_add_learning_rate_and_beta_panels_when_they_change(tmp_path):
    rows = [
        {
            "epoch": e,
            "train_beta_elbo" if e < 10 else "train_elbo": -100 - 400 * (e == 1) + e,
            "test_elbo": -110 - 300 * (e == 1) + e,
            "test_rate": 10 + e / 3,
            "test_distortion": 100 - e,
            "lr": 1e-3 if e < 20 else 1e-4,
            "beta": min(1.0, e / 10),
        }
        for e in range(1, 31)
    ]
    with plots.capture_figures() as figures:
        plots.plot_training(rows, tmp_path / "curves.png", title="a run")
    (fig,) = figures
    texts = [t for t, _ in assert_readable(fig, axes=5)]
    assert [ax.get_ylabel() for ax in fig.axes][3:] == ["learning rate", "β"]

    assert "train −(D + βR) (mean over the epoch)" in texts
    assert "(epoch 1: below the axis)" in texts  # the first epoch does not flatten the rest
    assert fig.axes[0].get_ylim()[0] > -150
    constant = [{k: v for k, v in r.items() if k not in ("lr", "beta")} for r in rows]
    with plots.capture_figures() as figures:
        plots.plot_training(constant, tmp_path / "c.png")
    assert_readable(figures[0], axes=3)


# --------------------------------------------------------------------------- RD plane


def _sweep_rows():
    """Like table.json of a sweep: two priors, β 0.1 ... 1.1 (the last two close together)."""
    rows = []
    for prior, shift in (("standard", 0.0), ("vamp", -3.0)):
        for beta in (0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 1.1):
            rate = 40 * math.exp(-2.2 * beta) + (0.3 if beta == 1.1 else 0.0)
            rows.append(
                {"prior": prior, "beta": beta, "rate": rate, "distortion": 104 - rate / 2 + shift}
            )
    return rows


def test_rate_distortion_plane_labels_every_point_without_overlap(tmp_path):
    rows = _sweep_rows()
    with plots.capture_figures() as figures:
        write_figures(rows, tmp_path)  # no dataset: the plane alone
    (fig,) = figures
    texts = [t for t, _ in assert_readable(fig, axes=1)]
    (ax,) = fig.axes
    # every point's β is written once: alone, merged ("β=1, 1.1") or in the key ("3: β=0.5")
    written = [v for t in texts if "β=" in t for v in t.split("β=")[1].split(", ")]
    assert sorted(float(v) for v in written) == sorted(r["beta"] for r in rows)
    low, high = ax.get_ylim()
    distortions = [r["distortion"] for r in rows]
    assert low > 0.5 * min(distortions)  # not squeezed into the top: the axis is not at 0
    assert low <= min(distortions) and max(distortions) <= high
    contours = [t for t in ax.texts if t.get_text().replace(".", "").isdigit()]
    assert 2 <= len(contours) <= 5  # a few −ELBO contours, each labelled


def test_rate_distortion_plane_keeps_zero_when_the_data_is_near_it(tmp_path):
    points = [{"rate": r, "distortion": 3 - r, "label": f"β={r}"} for r in (0.1, 1.0, 2.0)]
    with plots.capture_figures() as figures:
        plots.plot_rate_distortion(points, tmp_path / "rd.png", entropy=3.0)
    (fig,) = figures
    texts = [t for t, _ in assert_readable(fig, axes=1)]
    assert fig.axes[0].get_xlim()[0] <= 0 <= fig.axes[0].get_xlim()[1]
    assert any("R + D = H" in t for t in texts)


def test_image_rows_by_beta_are_labelled(tiny_run, tmp_path):
    from pyrovae.data import load_dataset

    rows = [dict(r, run=str(tiny_run[0])) for r in _sweep_rows()[:2]]  # one run, two "β"
    with plots.capture_figures() as figures:
        write_figures(rows, tmp_path, load_dataset("digits"))
    rd, recons, samples = figures
    assert_readable(recons, axes=1)
    assert_readable(samples, axes=1)
    assert [t.get_text() for t in recons.axes[0].get_yticklabels()] == [
        "test data",
        "β = 0.1",
        "β = 0.3",
    ]
    assert [t.get_text() for t in samples.axes[0].get_yticklabels()] == ["β = 0.1", "β = 0.3"]


# --------------------------------------------------------------------------- results figures


def test_toy_rate_distortion_figure_from_its_json(tmp_path, saved):
    script = _module(ROOT / "examples" / "rate_distortion_sweep.py")
    path = RESULTS / "rate_distortion" / "toy_rate_distortion.json"
    script.plot_from_json(path, tmp_path / "toy.png")
    (fig,) = saved
    assert_readable(fig, axes=2)
    report = json.loads(path.read_text())
    zoom_texts = {t.get_text() for t in fig.axes[1].texts}
    frontier = [r for r in report["series"]["gaussian decoder, K_z = 2"] if r["rate"] > 0.1]
    assert {f"β = {r['beta']:g}" for r in frontier} <= zoom_texts  # each β of the curve


def test_mnist_sweep_rate_distortion_from_its_table(tmp_path):
    rows = json.loads((RESULTS / "rate_distortion" / "mnist_sweep_table.json").read_text())
    with plots.capture_figures() as figures:
        paths = write_figures(rows, tmp_path, prefix="mnist_sweep_")
    assert [p.name for p in paths] == ["mnist_sweep_rate_distortion.png"]
    assert_readable(figures[0], axes=1)


def test_pixelcnn_vamp_rate_distortion_from_its_json(tmp_path):
    script = _module(ROOT / "examples" / "pixelcnn_vamp.py")
    with plots.capture_figures() as figures:
        script.plot_from_json(RESULTS / "pixelcnn_vamp.json", tmp_path)
    (fig,) = figures
    texts = " ".join(t for t, _ in assert_readable(fig, axes=1))
    assert "1.1" in texts and "β=1" in texts


def test_nll_benchmark_figure_from_its_json(tmp_path, saved):
    script = _module(ROOT / "benchmarks" / "nll_binarized_mnist.py")
    rows = json.loads((ROOT / "benchmarks" / "results" / "nll_binarized_mnist.json").read_text())
    spread = dict(rows[0], config="SEED-SPREAD-ROW", seed=3)  # must not be drawn
    script.plot([*rows, spread], tmp_path / "nll.png")
    (fig,) = saved
    # (a), (b), (c), (d): the key's axes has no frame
    texts = [t for t, _ in assert_readable(fig, axes=4)]

    assert not [t for t in texts if "SEED-SPREAD-ROW" in t]
    assert "pythae VAE (published, K=200)" in texts
    assert "Burda VAE (published, K=5000)" in texts
    by_iw = [r for r in rows if r.get("selected_by") == "valid_iw"]
    by_elbo = [r for r in rows if r.get("selected_by", "valid_elbo") == "valid_elbo"]
    ax_all, ax_zoom, ax_iw = fig.axes[:3]
    assert len(ax_iw.lines) == 2 * len(by_iw) and len(ax_all.lines) == 2 * len(by_elbo)
    # every curve of (a) lies within its axes: nothing cut off
    low, high = ax_all.get_ylim()
    values = [h["valid_elbo"] for r in by_elbo for h in r["valid_history"]]
    assert low <= min(values) and max(values) <= high
    names = [t.get_text() for t in fig.axes[-1].get_yticklabels()]
    assert len(names) == len(rows) + len(script.PUBLISHED)


def test_estimators_figure_from_its_json(tmp_path, saved, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "studies"))
    script = _module(ROOT / "examples" / "studies" / "estimators.py")
    path = RESULTS / "studies" / "estimators.json"
    script.plot_from_json(path, tmp_path / "estimators.png")
    (fig,) = saved
    assert_readable(fig, axes=2)
    curves, difference = fig.axes
    styles = {(line.get_linestyle(), line.get_marker()) for line in curves.lines}
    assert styles == {("-", "o"), ("--", "s")}  # L^B and L^A differ in line and marker
    runs = json.loads(path.read_text())["runs"]
    by = {(r["latent_dim"], r["objective"]): r["curve"] for r in runs}
    z = min(r["latent_dim"] for r in runs)
    expected = [b["test_elbo"] - a["test_elbo"] for a, b in zip(by[z, "trace"], by[z, "meanfield"])]
    np.testing.assert_allclose(difference.lines[0].get_ydata(), expected)


def test_unbounded_likelihood_figure_from_its_json(tmp_path, saved):
    script = _module(ROOT / "examples" / "unbounded_likelihood.py")
    path = RESULTS / "fyffe" / "unbounded_likelihood.json"
    script.plot_from_json(path, tmp_path / "u.png")
    (fig,) = saved
    assert_readable(fig, axes=4)
    report = json.loads(path.read_text())
    zoom = fig.axes[1]
    low, high = zoom.get_ylim()
    ceiling = report["headline"]["floored_ceiling"]
    assert low < ceiling < report["headline"]["unbounded_max_train_elbo"] < high
    assert low > 0.5 * ceiling  # zoomed: the climb past the ceiling fills the panel
