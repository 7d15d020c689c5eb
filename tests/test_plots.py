"""Tests for pyrovae.plots: valid PNGs, the tiling/latent-grid helpers, atomic writes."""

from __future__ import annotations

import math

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from pyrovae import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_png(path, shape=None):
    """Assert ``path`` is a non-blank PNG (optionally of ``shape``) and return its pixels."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    if shape is not None:
        assert img.shape[:2] == shape
    assert img.shape[0] >= 100 and img.shape[1] >= 100
    assert img[..., :3].std() > 0.01  # not a constant canvas
    return img


def _fig_px(figsize):
    return (round(figsize[1] * plots.DPI), round(figsize[0] * plots.DPI))


def _indexed_images(n, h=3, w=4):
    """Image k is filled with k (plus a within-image ramp, so orientation matters)."""
    ramp = np.arange(h * w).reshape(h, w) / 1000.0
    return np.stack([np.full((h, w), float(k)) + ramp for k in range(n)])


# --------------------------------------------------------------------------- PNG writers


def test_plot_curves_writes_png_and_skips_bad_values(tmp_path):
    rows = [
        {"epoch": 1, "train_elbo": -200.0, "test_elbo": float("nan")},
        {"epoch": 2, "train_elbo": torch.tensor(-150.0), "test_elbo": None},
        {"epoch": 3, "train_elbo": -120.0, "test_elbo": -125.0},
    ]
    out = plots.plot_curves(rows, tmp_path / "curves.png", keys=("train_elbo", "test_elbo", "x"))
    assert out == tmp_path / "curves.png"
    _read_png(out, _fig_px(plots.CURVE_FIGSIZE))


def test_plot_curves_empty_metrics_still_writes_figure(tmp_path):
    out = plots.plot_curves([], tmp_path / "empty.png", title="nothing yet")
    _read_png(out, _fig_px(plots.CURVE_FIGSIZE))


def test_plot_image_grid_accepts_tensor_and_array(tmp_path):
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(10, 28 * 28, generator=g, requires_grad=True)
    a = _read_png(plots.plot_image_grid(imgs, (28, 28), tmp_path / "t.png", title="samples"))
    b = _read_png(
        plots.plot_image_grid(
            imgs.detach().numpy().reshape(10, 28, 28),
            (28, 28),
            tmp_path / "n.png",
            vmin=None,
            vmax=None,
        )
    )
    assert a.shape[2] == b.shape[2] == 4


def test_plot_image_grid_png_shows_the_tiles_pixel_exact(tmp_path):
    x = np.random.default_rng(0).random((6, 5 * 4))
    img = mpimg.imread(plots.plot_image_grid(x, (5, 4), tmp_path / "g.png", nrow=2))
    tiled = plots.tile_images(x, (5, 4), nrow=2, pad_value=1.0)  # separators render white
    h, w = tiled.shape
    k, rest = divmod(img.shape[0] - 16, h)  # 8-px margins top and bottom, integer magnification
    assert rest == 0 and k >= 1 and img.shape[1] == 8 + w * k + 12
    crop = img[8 : 8 + h * k, 8 : 8 + w * k, 0].reshape(h, k, w, k)
    assert (crop == crop[:, :1, :, :1]).all()  # every data pixel is a uniform k x k block
    np.testing.assert_allclose(crop[:, 0, :, 0], tiled, atol=0.01)  # 256-level grey map


def test_plot_reconstructions_writes_png_with_row_pairs(tmp_path, monkeypatch):
    x = torch.rand(13, 64)
    seen = []
    render = plots._render_tiled
    monkeypatch.setattr(
        plots, "_render_tiled", lambda a, p, **kw: seen.append(a) or render(a, p, **kw)
    )
    img = _read_png(plots.plot_reconstructions(x, 1 - x, (8, 8), tmp_path / "rec.png"))
    assert img.shape[1] > img.shape[0]
    (tiled,) = seen
    # 13 images (no divisor from 6 to 10), 10 per row -> two (input, reconstruction) pairs of
    # rows of 10 tiles, 1 px between the rows of a pair and 3 px (a blank band) between pairs
    assert tiled.shape == (2 * (8 + 1 + 8) + 3, 10 * 8 + 9)
    np.testing.assert_array_equal(tiled[9:17, 18:26], 1 - x[2].reshape(8, 8).double().numpy())
    assert np.isnan(tiled[17:20]).all()  # the band between the pairs
    np.testing.assert_array_equal(tiled[20:28, 9:17], x[11].reshape(8, 8).double().numpy())
    assert np.isnan(tiled[20:28, 27:35]).all()  # blank cell after the 13th original
    # 16 images: full rows of 8, no blank cell
    seen.clear()
    y = torch.rand(16, 64)
    _read_png(plots.plot_reconstructions(y, 1 - y, (8, 8), tmp_path / "r16.png"))
    (tiled,) = seen
    assert tiled.shape == (2 * (8 + 1 + 8) + 3, 8 * 8 + 7)
    for top in (0, 9, 20, 29):  # every cell of every row holds an image
        assert all(np.isfinite(tiled[top : top + 8, c * 9 : c * 9 + 8]).all() for c in range(8))
    with pytest.raises(ValueError):
        plots.plot_reconstructions(x, x[:3], (8, 8), tmp_path / "bad.png")


def test_plot_rate_distortion_series_labels_and_entropy(tmp_path):
    pts = [
        {"rate": r, "distortion": 100.0 - 0.8 * r, "label": f"β={b}", "series": s}
        for s in ("gaussian prior", "vamp prior")
        for b, r in ((0.5, 60.0), (1.0, 25.0), (2.0, 8.0))
    ]
    pts.append({"rate": float("nan"), "distortion": 3.0})  # skipped
    out = plots.plot_rate_distortion(pts, tmp_path / "rd.png", title="RD", entropy=70.0)
    _read_png(out, _fig_px(plots.RD_FIGSIZE))
    one = plots.plot_rate_distortion([{"rate": 1.0, "distortion": 2.0}], tmp_path / "one.png")
    _read_png(one, _fig_px(plots.RD_FIGSIZE))
    _read_png(plots.plot_rate_distortion([], tmp_path / "none.png"), _fig_px(plots.RD_FIGSIZE))


def test_plot_histogram_drops_non_finite(tmp_path):
    vals = np.concatenate([np.random.default_rng(0).normal(0.5, 0.2, 500), [np.nan, np.inf]])
    out = plots.plot_histogram(vals, tmp_path / "k.png", xlabel="k-hat", vlines=(0.7,))
    _read_png(out, _fig_px(plots.HIST_FIGSIZE))
    _read_png(plots.plot_histogram(torch.tensor([]), tmp_path / "e.png"))


def test_plot_heatmap_with_nan_and_label_check(tmp_path):
    m = torch.tensor([[1.0, 2.5, float("nan")], [4.0, 5.0, 6.25]])
    out = plots.plot_heatmap(m, [16, 128], ["1", "5", "50"], tmp_path / "h.png", xlabel="K")
    _read_png(out)
    with pytest.raises(ValueError):
        plots.plot_heatmap(m, [16], ["1", "5", "50"], tmp_path / "bad.png")


# --------------------------------------------------------------------------- tile_images


@pytest.mark.parametrize("n,nrow", [(12, 3), (7, 3), (5, None), (1, None), (3, 5)])
def test_tile_images_layout(n, nrow):
    h, w, pad = 3, 4, 1
    imgs = _indexed_images(n, h, w)
    flat = torch.from_numpy(imgs.reshape(n, h * w))
    out = plots.tile_images(flat, (h, w), nrow=nrow, pad=pad, pad_value=-1.0)
    rows = math.ceil(math.sqrt(n)) if nrow is None else nrow
    ncol = math.ceil(n / rows)
    assert out.shape == (rows * h + (rows - 1) * pad, ncol * w + (ncol - 1) * pad)
    mask = np.zeros(out.shape, dtype=bool)
    for r in range(rows):
        for c in range(ncol):
            tile = out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w]
            k = r * ncol + c
            expected = imgs[k] if k < n else np.full((h, w), -1.0)
            np.testing.assert_array_equal(tile, expected)
            mask[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = True
    assert (out[~mask] == -1.0).all()  # separators


def test_tile_images_shape_variants_and_errors():
    imgs = _indexed_images(6)
    a = plots.tile_images(imgs, (3, 4), nrow=2, pad=0)
    assert a.shape == (6, 12)
    np.testing.assert_array_equal(a[3:6, 8:12], imgs[5])
    b = plots.tile_images(imgs.reshape(6, 12), (3, 4), nrow=2, pad=2, pad_value=1.0)
    assert b.shape == (8, 16) and (b[3:5] == 1.0).all() and (b[:, 4:6] == 1.0).all()
    with pytest.raises(ValueError):
        plots.tile_images(imgs, (4, 4))
    with pytest.raises(ValueError):
        plots.tile_images(np.zeros((0, 12)), (3, 4))


# --------------------------------------------------------------------------- latent grid / manifold


@pytest.mark.parametrize("eps", [None, 0.05])
def test_latent_grid_properties(eps):
    g = 7
    z = plots.latent_grid(g, eps=eps)
    assert z.shape == (g * g, 2) and z.dtype == torch.get_default_dtype()
    assert z.mean(0).abs().max() < 1e-6  # symmetric around 0
    grid = z.reshape(g, g, 2)
    p = torch.distributions.Normal(0.0, 1.0).cdf(grid[0, :, 0].double())
    expected = (torch.arange(g) + 0.5) / g if eps is None else torch.linspace(eps, 1 - eps, g)
    torch.testing.assert_close(p, expected.double(), atol=1e-6, rtol=0)
    steps = p.diff()
    assert torch.allclose(steps, steps[0], atol=1e-6) and (steps > 0).all()
    # first coordinate constant down each column and increasing along a row;
    # second coordinate constant along a row and decreasing down the rows
    assert (grid[:, :, 0] == grid[:1, :, 0]).all() and (grid[0, :, 0].diff() > 0).all()
    assert (grid[:, :, 1] == grid[:, :1, 1]).all() and (grid[:, 0, 1].diff() < 0).all()
    torch.testing.assert_close(grid[:, 0, 1], grid[0, :, 0].flip(0))


def test_latent_grid_higher_dims_and_errors():
    z = plots.latent_grid(4, dims=5)
    assert z.shape == (16, 5) and (z[:, 2:] == 0).all()
    torch.testing.assert_close(z[:, :2], plots.latent_grid(4))
    for kwargs in ({"dims": 1}, {"grid_size": 0}, {"eps": 0.0}, {"eps": 0.5}):
        with pytest.raises(ValueError):
            plots.latent_grid(**kwargs)


class RecordingDecoder:
    """A decode function that records its inputs; image i is a function of its latent point."""

    def __init__(self, h=6, w=5):
        self.calls = []
        self.h, self.w = h, w

    def __call__(self, z):
        self.calls.append((z.clone(), torch.is_grad_enabled()))
        ramp = torch.linspace(0, 1, self.h * self.w)
        return torch.sigmoid(z[:, :1] + z[:, 1:2] * ramp)


def test_plot_manifold_decodes_once_and_renders_tiles(tmp_path, monkeypatch):
    g, dec = 6, RecordingDecoder()
    seen = []
    render = plots._render_tiled
    monkeypatch.setattr(
        plots, "_render_tiled", lambda a, p, **kw: seen.append(a) or render(a, p, **kw)
    )
    out = plots.plot_manifold(dec, (dec.h, dec.w), tmp_path / "m.png", grid_size=g, title="2-D")
    _read_png(out)
    assert len(dec.calls) == 1
    (z, grad_enabled), (tiled,) = dec.calls[0], seen
    assert z.shape == (g * g, 2) and not grad_enabled
    torch.testing.assert_close(z, plots.latent_grid(g))
    expected = plots.tile_images(RecordingDecoder()(z), (dec.h, dec.w), nrow=g, pad_value=np.nan)
    np.testing.assert_array_equal(tiled, expected)  # NaN separators compare equal
    direct = plots.manifold_tiles(RecordingDecoder(), (dec.h, dec.w), g, pad_value=0.5)
    np.testing.assert_array_equal(direct, np.where(np.isnan(expected), 0.5, expected))


def test_manifold_rejects_wrong_decode_output(tmp_path):
    with pytest.raises(ValueError):
        plots.plot_manifold(lambda z: torch.zeros(3, 4), (2, 2), tmp_path / "x.png", grid_size=3)


# --------------------------------------------------------------------------- atomic writes


def test_write_creates_parents_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "a" / "b" / "grid.png"
    plots.plot_image_grid(np.random.default_rng(0).random((4, 16)), (4, 4), target)
    plots.plot_image_grid(np.random.default_rng(1).random((4, 16)), (4, 4), target)  # overwrite
    assert sorted(p.name for p in target.parent.iterdir()) == ["grid.png"]
    _read_png(target)


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_savefig(self, fh, **kwargs):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plots.plot_curves([{"epoch": 1, "train_elbo": 1.0}], tmp_path / "c.png")
    assert list(tmp_path.iterdir()) == []
