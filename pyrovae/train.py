"""Training: Pyro's ELBO as an ``nn.Module`` and a torch optimiser.

``loss_fn = objective(model, guide)`` is Pyro's ``ELBOModule``: its forward
returns the differentiable negative ELBO, so any torch optimiser, scheduler,
gradient clipping or ``DistributedDataParallel`` applies unchanged and a
checkpoint is a set of ``state_dict``\\ s. (SVI with ``pyro.optim`` would keep
parameters in Pyro's global param store, which is harder to checkpoint and
to run several models side by side; every pyrovae objective has a
``differentiable_loss``, so nothing is lost.)

With the data plate's size set to N, a minibatch loss estimates the
full-dataset negative ELBO; per-data-point numbers are ``loss / N``.

Reproducibility: the data order of epoch ``e`` comes from a generator seeded
by ``(seed, e)``, and the global torch RNG state (used by ``pyro.sample``) is
saved in every checkpoint, so a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch
from torch import nn

import pyrovae
from pyrovae import registry
from pyrovae.build import build_model, count_parameters, resolve_likelihood
from pyrovae.config import ConfigError, RunConfig
from pyrovae.device import resolve_device
from pyrovae.infer.evaluation import elbo_terms, iw_log_likelihood, reconstruction_mse
from pyrovae.infer.objectives import make_objective
from pyrovae.run import CHECKPOINT_FORMAT, RunError, RunFolder

EVAL_BATCH = 1000
# config keys that may differ between a run and its resumption
RESUMABLE_CHANGES = ("epochs", "device", "data_dir")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); earlier results are kept."""


@dataclass
class TrainResult:
    model: nn.Module
    guide: nn.Module
    config: RunConfig
    metrics: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    run: RunFolder | None = None


def load_data(config: RunConfig):
    """The dataset named in the config (see :data:`pyrovae.registry.DATASETS`)."""
    from pyrovae.data import load_dataset

    return load_dataset(config.dataset, data_dir=config.data_dir)


def check_data(likelihood: nn.Module, dataset) -> None:
    """Fail early, with the likelihood's own message, on data outside its support."""
    splits = ("valid", "test") if dataset.dynamic_binarization else ("train", "valid", "test")
    for split in splits:
        try:
            likelihood.check_data(dataset.split(split))
        except ValueError as e:
            raise ConfigError(f"dataset {dataset.name!r} ({split} split): {e}") from None


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _progress(length: int, label: str, enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    import click

    return click.progressbar(length=length, label=label, file=sys.stderr, show_eta=True)


class Trainer:
    """Fits a model/guide pair to a dataset under a config, writing a run folder.

    :param config: the run's configuration (likelihood already resolved).
    :param dataset: a :class:`pyrovae.data.Dataset`.
    :param model: the Pyro model (a :class:`~pyrovae.models.VAE` or alike).
    :param guide: the guide, taking the same ``(x, num_data)`` arguments.
    :param run: a run folder to write, or None to keep everything in memory.
    """

    def __init__(
        self,
        config: RunConfig,
        dataset,
        model,
        guide,
        run: RunFolder | None = None,
        progress: bool = False,
    ):
        self.config = config
        self.dataset = dataset
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.guide = guide.to(self.device)
        self.objective = make_objective(config.objective, config.particles)
        self.loss_fn = self.objective(self.model, self.guide)
        opt_cls = registry.OPTIMIZERS.get(config.optimizer)
        self.optimizer = opt_cls(
            self.loss_fn.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.run = run
        self.progress = progress
        self.epoch = 0
        self.step = 0
        self.metrics: list[dict] = []
        self.test = dataset.test.to(self.device)

    # -- state --------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "pyrovae_version": pyrovae.__version__,
            "config": self.config.to_dict(),
            "data_dim": self.dataset.data_dim,
            "epoch": self.epoch,
            "step": self.step,
            "model": self.model.state_dict(),
            "guide": self.guide.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": _rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.guide.load_state_dict(state["guide"])
        self.optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])

    # -- one epoch ----------------------------------------------------------
    def _batches(self, epoch: int):
        train = self.dataset.train
        gen = _epoch_generator(self.config.seed, epoch)
        order = torch.randperm(train.shape[0], generator=gen)
        for idx in order.split(self.config.batch_size):
            x = train[idx]
            if self.dataset.dynamic_binarization:
                x = torch.bernoulli(x, generator=gen)
            yield x.to(self.device, non_blocking=True)

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training set; returns the epoch's metrics row."""
        n = self.dataset.train.shape[0]
        num_batches = math.ceil(n / self.config.batch_size)
        total = torch.zeros((), device=self.device)
        self.model.train()
        self.guide.train()
        start = time.perf_counter()
        label = f"epoch {self.epoch + 1}/{self.config.epochs}"
        with _progress(num_batches, label, self.progress) as bar:
            for x in self._batches(self.epoch):
                loss = self.loss_fn(x, num_data=n)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"non-finite loss at epoch {self.epoch + 1}, step {self.step + 1}; "
                        "the last checkpoint is intact: lower --lr or use a bounded likelihood"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += loss.detach() * (x.shape[0] / n)
                self.step += 1
                if bar is not None:
                    bar.update(1)
        seconds = time.perf_counter() - start
        self.epoch += 1
        row = {
            "epoch": self.epoch,
            "step": self.step,
            "train_elbo": -(total / n).item(),
            "seconds": seconds,
        }
        row.update(self.evaluate_test())
        return row

    @torch.no_grad()
    def evaluate_test(self) -> dict[str, float]:
        """Test ELBO, rate and distortion per data point (analytic KL where available)."""
        self.model.eval()
        self.guide.eval()
        start = time.perf_counter()
        terms = elbo_terms(
            self.model,
            self.guide,
            self.test,
            num_samples=self.config.eval_samples,
            analytic_kl=True,
            batch_size=EVAL_BATCH,
        )
        out = {f"test_{k}": v.mean().item() for k, v in terms.items()}
        out["eval_seconds"] = time.perf_counter() - start
        return out

    def fit(self) -> list[dict]:
        """Train until ``config.epochs``, checkpointing and logging after every epoch."""
        while self.epoch < self.config.epochs:
            row = self.train_epoch()
            self.metrics.append(row)
            if self.run is not None:
                self.run.save_checkpoint(self.state_dict())
                self.run.write_metrics(self.metrics)
        return self.metrics

    # -- final evaluation ---------------------------------------------------
    @torch.no_grad()
    def summarize(self) -> dict[str, Any]:
        """Final test numbers: ELBO, rate, distortion, IW log-likelihood, MSE."""
        self.model.eval()
        self.guide.eval()
        summary: dict[str, Any] = dict(self.metrics[-1]) if self.metrics else {}
        summary.pop("seconds", None)
        summary.pop("eval_seconds", None)
        if not self.metrics:
            summary.update(self.evaluate_test())
            summary.pop("eval_seconds", None)
        if self.config.iw_samples > 0:
            ll = iw_log_likelihood(
                self.model,
                self.guide,
                self.test,
                self.config.iw_samples,
                chunk_size=min(self.config.iw_samples, 100),
                batch_size=EVAL_BATCH,
            )
            summary["test_iw_log_likelihood"] = ll.mean().item()
            summary["iw_samples"] = self.config.iw_samples
        summary["test_mse"] = (
            reconstruction_mse(self.model, self.guide, self.test, batch_size=EVAL_BATCH)
            .mean()
            .item()
        )
        summary["train_seconds"] = sum(r["seconds"] for r in self.metrics)
        summary["parameters"] = {
            "model": count_parameters(self.model),
            "guide": count_parameters(self.guide),
        }
        summary["device"] = str(self.device)
        summary["versions"] = {
            "pyrovae": pyrovae.__version__,
            "torch": torch.__version__,
            "pyro": pyro.__version__,
        }
        return summary


def _prepare_folder(run: RunFolder, resume: bool, overwrite: bool) -> bool:
    """Make ``run`` ready; returns True when an existing checkpoint should be resumed."""
    if resume and overwrite:
        raise RunError("--resume and --overwrite contradict each other; pass one")
    if run.exists():
        if resume:
            return run.checkpoint_path.exists()
        if not overwrite:
            raise RunError(
                f"{run.path} already holds a run; pass --resume to continue it, --overwrite to "
                "replace it, or choose another --out folder"
            )
        for p in (run.checkpoint_path, run.metrics_path, run.summary_path, run.config_path):
            p.unlink(missing_ok=True)
        shutil.rmtree(run.plots, ignore_errors=True)
    elif run.path.exists() and any(run.path.iterdir()) and not overwrite:
        raise RunError(f"{run.path} exists and is not empty; choose another --out folder")
    run.path.mkdir(parents=True, exist_ok=True)
    return False


def _check_resumable(saved: dict, config: RunConfig, path: Path) -> None:
    now = config.to_dict()
    diff = [k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if diff:
        raise RunError(
            f"cannot resume {path}: the run was trained with different {', '.join(diff)}; "
            "resume with its own settings (omit them) or train into a new folder"
        )


def train(
    config: RunConfig | dict,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    dataset=None,
    plots: bool = True,
) -> TrainResult:
    """Train the model and guide that ``config`` names; write a run folder at ``out``.

    :param resume: continue the run in ``out`` from its checkpoint.
    :param overwrite: replace a run already in ``out``.
    :param dataset: a loaded :class:`pyrovae.data.Dataset` (default: load ``config.dataset``).
    """
    if isinstance(config, dict):
        config = RunConfig.from_dict(config)
    config.validate()
    resolve_device(config.device)
    run = RunFolder(out) if out is not None else None
    resuming = _prepare_folder(run, resume, overwrite) if run is not None else False
    dataset = dataset if dataset is not None else load_data(config)
    config.likelihood = resolve_likelihood(config, dataset.binary)
    if resuming:
        _check_resumable(run.read_config()["config"], config, run.path)

    pyro.set_rng_seed(config.seed)
    model, guide = build_model(config, dataset.data_dim)
    check_data(model.likelihood, dataset)
    trainer = Trainer(config, dataset, model, guide, run=run, progress=progress)
    if run is not None:
        if resuming:
            trainer.load_state_dict(run.load_checkpoint(map_location=trainer.device))
            trainer.metrics = [r for r in run.read_metrics() if r["epoch"] <= trainer.epoch]
        run.write_config(
            {
                "config": config.to_dict(),
                "data_dim": dataset.data_dim,
                "image_shape": list(dataset.image_shape),
                "pyrovae_version": pyrovae.__version__,
            }
        )
    trainer.fit()
    summary = trainer.summarize()
    if run is not None:
        run.write_summary(summary)
        if plots:
            from pyrovae.report import write_plots

            write_plots(run, trainer.model, trainer.guide, dataset, trainer.metrics)
    return TrainResult(trainer.model, trainer.guide, config, trainer.metrics, summary, run)
