"""TensorBoard event files of a training run (optional: ``pip install pyrovae[tensorboard]``).

With ``tensorboard = true`` (``pyrovae train --tensorboard``) a run writes, through
``torch.utils.tensorboard.SummaryWriter``, into ``RUN/tensorboard/`` after every
epoch, at step = the epoch number (as in ``metrics.jsonl``):

* the scalars of the epoch's metrics row (:data:`SCALARS`): train and test ELBO,
  test rate and distortion, learning rate, β, seconds;
* two image grids: ``reconstructions`` (evenly spaced test points, then their
  reconstructions ``E[x | z = E_q[z|x]]``) and ``samples`` (``E[x | z]``, z ~ p(z),
  the same draws of z every epoch), both of the evaluated parameters (the moving
  average under ``--ema-decay``), clamped to the data's grey scale.

The images are drawn under a forked RNG, so a run logs the same numbers with or
without TensorBoard. A resumed run purges the events its crashed predecessor
wrote past the last checkpoint, and a run trained with ``--overwrite`` those of
the run it replaces. ``tensorboard --logdir RUN`` (or a sweep's folder,
one series per run) shows them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pyrovae.options import ConfigError, Option

__all__ = ["FOLDER", "OPTIONS", "SCALARS", "TENSORBOARD", "TensorBoardLog", "image_grid"]

TENSORBOARD = Option(
    "tensorboard",
    False,
    "Log each epoch's ELBO, rate, distortion, learning rate, β and image grids to "
    "RUN/tensorboard/ (needs pip install pyrovae[tensorboard]).",
    resumable=True,
)
#: the options of the TensorBoard log
OPTIONS = (TENSORBOARD,)

#: the folder of the event files, inside the run folder
FOLDER = "tensorboard"

#: metrics-row key → scalar tag
SCALARS = {
    "train_elbo": "train/elbo",
    "train_beta_elbo": "train/beta_elbo",
    "test_elbo": "test/elbo",
    "test_rate": "test/rate",
    "test_distortion": "test/distortion",
    "test_weight_kl": "test/weight_kl",
    "lr": "optimisation/lr",
    "beta": "optimisation/beta",
    "seconds": "time/train_seconds",
    "eval_seconds": "time/eval_seconds",
}

#: test points reconstructed, and prior samples drawn, per epoch
NUM_IMAGES = 8
#: the seed of the prior samples (the same z every epoch)
SAMPLE_SEED = 0

MISSING = "--tensorboard needs the tensorboard package: pip install pyrovae[tensorboard]"


def require() -> None:
    """Raise a one-line :class:`~pyrovae.options.ConfigError` if tensorboard is missing."""
    try:
        found = importlib.util.find_spec("tensorboard") is not None
        if found:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        found = False
    if not found:
        raise ConfigError(MISSING)


def image_grid(images: torch.Tensor, ncol: int, pad: int = 1) -> torch.Tensor:
    """Images ``(n, C, H, W)`` in [0, 1] as one ``(C, H', W')`` grid of ``ncol`` columns,
    ``pad`` pixels of white between them."""
    n, c, h, w = images.shape
    nrow = -(-n // ncol)
    grid = torch.ones(c, nrow * (h + pad) + pad, ncol * (w + pad) + pad)
    for i, image in enumerate(images):
        r, k = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[:, top : top + h, left : left + w] = image
    return grid


class TensorBoardLog:
    """The event files of one run: call :meth:`epoch` after each epoch, :meth:`close` at the end.

    :param folder: where the event files go (``RUN/tensorboard``).
    :param shape: a data point's shape, ``(C, H, W)`` or ``(D,)`` (no images for a table,
        nor for other channel counts than 1 and 3).
    :param value_range: the grey scale ``(low, high)`` the images are shown in.

    Example:

    >>> import os
    >>> import tempfile
    >>> from pyrovae.tensorboard_log import TensorBoardLog
    >>> folder = tempfile.TemporaryDirectory()
    >>> log = TensorBoardLog(os.path.join(folder.name, "tensorboard"), (1, 8, 8), (0.0, 1.0))
    >>> log.epoch({"epoch": 1, "train_elbo": -90.5, "test_elbo": -95.0})
    >>> log.close()
    >>> [name.startswith("events.out.tfevents") for name in os.listdir(log.folder)]
    [True]
    >>> folder.cleanup()
    """

    def __init__(
        self, folder: str | Path, shape: tuple[int, ...], value_range: tuple[float, float]
    ):
        require()
        self.folder = Path(folder)
        self.shape = tuple(int(s) for s in shape)
        self.low, self.high = (float(v) for v in value_range)
        self._writer = None

    @property
    def draws_images(self) -> bool:
        return len(self.shape) == 3 and self.shape[0] in (1, 3)

    def _open(self, step: int):
        from torch.utils.tensorboard import SummaryWriter

        # TensorBoard drops what earlier event files hold from this step on: what a crashed
        # session logged past the checkpoint it resumes from, or a run replaced by --overwrite
        return SummaryWriter(str(self.folder), purge_step=step)

    def epoch(self, row: Mapping[str, Any], images: Mapping[str, torch.Tensor] | None = None):
        """Log a metrics row's scalars (:data:`SCALARS`) and ``images`` (name → grid) at
        step ``row["epoch"]``."""
        step = int(row["epoch"])
        if self._writer is None:
            self._writer = self._open(step)
        for key, tag in SCALARS.items():
            value = row.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(tag, value, step)
        for name, grid in (images or {}).items():
            self._writer.add_image(name, grid, step)
        self._writer.flush()

    @torch.no_grad()
    def images(self, model, guide, test: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"reconstructions", "samples"}`` grids of the model and guide as they are.

        :param test: the test split (evenly spaced points of it are reconstructed).
        """
        if not self.draws_images:
            return {}
        from pyrovae.infer import full_vb

        model = full_vb.plug_in(model, guide)  # a Bayesian decoder at q(θ)'s mean
        idx = torch.linspace(0, test.shape[0] - 1, NUM_IMAGES).long()
        x = test[idx]
        recon = model.decode(guide.posterior(x).mean)
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the run's RNG stream is untouched
            torch.manual_seed(SAMPLE_SEED)
            samples = model.sample(2 * NUM_IMAGES)
        return {
            "reconstructions": self._grid(torch.cat([x, recon])),
            "samples": self._grid(samples),
        }

    def _grid(self, rows: torch.Tensor) -> torch.Tensor:
        scaled = (rows.detach().float().cpu() - self.low) / (self.high - self.low)
        return image_grid(scaled.clamp(0, 1).reshape(-1, *self.shape), NUM_IMAGES)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
