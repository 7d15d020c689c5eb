"""The figures every run folder gets: curves, reconstructions, samples, manifold.

``plots/curves.png`` (:func:`pyrovae.plots.plot_training`): the ELBO (train and test),
the test rate and distortion, and the learning rate and β where they change, by epoch.
``plots/reconstructions.png``: 16 test images spread over the test split, each above its
reconstruction (the decoder's mean at the posterior mean), two pairs of rows of 8.
``plots/samples.png``: 64 decoder means at draws from the prior; ``plots/manifold.png`` for a
2-D latent space.
"""

from __future__ import annotations

import torch

from pyrovae import plots
from pyrovae.run import RunFolder

NUM_RECONSTRUCTIONS = 16
NUM_SAMPLES = 64


def grey_scale(value_range: tuple[float, float] | None) -> tuple[float, float]:
    """The grey scale of image plots: [0, 1], widened to the data's range (if known)."""
    low, high = value_range or (0.0, 1.0)
    return min(0.0, low), max(1.0, high)


def display_range(dataset) -> tuple[float, float]:
    """:func:`grey_scale` of ``dataset``'s range, from the statistics taken at load (so a
    split read from disk is not read again)."""
    from pyrovae.data.inspect import value_range

    return grey_scale(value_range(dataset))


@torch.no_grad()
def write_plots(run: RunFolder, model, guide, dataset, metrics: list[dict]) -> list:
    """Write the standard PNGs of a trained run into ``run.plots``; returns their paths."""
    shape = dataset.shape
    vmin, vmax = display_range(dataset)
    device = next(model.parameters()).device
    paths = [
        plots.plot_training(
            metrics, run.plots / "curves.png", title="training curves (per data point)"
        ),
    ]
    # evenly spaced test points: some test splits are stored in class order
    idx = torch.linspace(0, dataset.test.shape[0] - 1, NUM_RECONSTRUCTIONS).long()
    x = dataset.test[idx].to(device)
    recon = model.decode(guide.posterior(x).mean)
    paths.append(
        plots.plot_reconstructions(
            x,
            recon.clamp(vmin, vmax),
            shape,
            run.plots / "reconstructions.png",
            title="test images, each above its reconstruction",
            vmin=vmin,
            vmax=vmax,
        )
    )
    samples = model.sample(NUM_SAMPLES).clamp(vmin, vmax)
    paths.append(
        plots.plot_image_grid(
            samples,
            shape,
            run.plots / "samples.png",
            title="means of p(x|z), z ~ p(z)"
            if getattr(model.likelihood, "exact_mean", True)
            else "p(x|z), z ~ p(z): conditional means along one sample (PixelCNN)",
            vmin=vmin,
            vmax=vmax,
        )
    )
    if model.latent_dim == 2 and plots.is_image_shape(shape):
        paths.append(write_manifold(run, model, shape, vmin=vmin, vmax=vmax))
    return paths


def write_manifold(run: RunFolder, model, shape, grid_size: int = 20, vmin=0.0, vmax=1.0):
    """AEVB figure 4: the decoder's means over a grid through the inverse Gaussian CDF."""
    device = next(model.parameters()).device

    def decode(z: torch.Tensor) -> torch.Tensor:
        return model.decode(z.to(device)).clamp(vmin, vmax)

    return plots.plot_manifold(
        decode,
        shape,
        run.plots / "manifold.png",
        grid_size=grid_size,
        title="learned manifold",
        vmin=vmin,
        vmax=vmax,
    )
