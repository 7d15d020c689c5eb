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

The loss is ``D + βR`` (:class:`~pyrovae.infer.beta.BetaScaled`; Alemi et al.
2018) with β from ``config.beta_schedule``, set before every step as a pure
function of the position ``epoch + step / steps per epoch``; β = 1 is the
objective itself, bit for bit. Each metrics row carries the epoch's last
``beta``; in an epoch where β ≠ 1 the training number is ``train_beta_elbo``
(``−(D + βR)``) instead of ``train_elbo``. Test numbers are always the β = 1 ELBO.

Reproducibility: the data order of epoch ``e`` comes from a generator seeded
by ``(seed, e)``, and the global torch RNG state (used by ``pyro.sample``) is
saved in every checkpoint, so a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import math
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch
from torch import nn

import pyrovae
from pyrovae import distributed, faults, registry
from pyrovae.averaging import WeightAverage
from pyrovae.build import (
    build_beta_schedule,
    build_model,
    count_parameters,
    resolve_likelihood,
)
from pyrovae.config import RUN_SETTINGS, ConfigError, RunConfig, model_settings
from pyrovae.device import resolve_device
from pyrovae.infer import bilbo, full_vb
from pyrovae.infer.beta import BetaScaled
from pyrovae.infer.evaluation import elbo_terms, iw_log_likelihood, reconstruction_mse
from pyrovae.infer.objectives import make_objective
from pyrovae.models.priors import prior_replaced
from pyrovae.run import CHECKPOINT_FORMAT, RunError, RunFolder

EVAL_BATCH = 1000
# importance samples × data points per vectorised pass: bounds evaluation memory (16 MB per
# (rows, 784) float tensor). Larger passes are slower, not faster, on a CPU: tensors beyond
# glibc's 32 MB mmap threshold are mapped afresh every pass (page faults cost ~40%).
IW_ROWS = 5_000


def make_optimizer(opt_cls, params, **options) -> torch.optim.Optimizer:
    """The optimiser ``opt_cls(params, **options)``, fused where torch offers it.

    A fused optimiser (``fused=True``: one kernel per parameter tensor instead of a
    dozen element-wise passes) does the same arithmetic as the default loop, rounded
    differently; on a CPU it makes Adam's step ~7× faster, about a fifth of a
    training step for a 784-400-50 VAE at batch 100. Where the class, device or
    dtype has no fused kernel, the default implementation is used.
    """
    import inspect

    params = list(params)
    if "fused" in inspect.signature(opt_cls).parameters:
        try:
            return opt_cls(params, fused=True, **options)
        except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
            pass
    return opt_cls(params, **options)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); earlier results are kept."""


class TrainingInterrupted(TrainingError):
    """SIGINT or SIGTERM stopped training after a step; the checkpoint holds that step."""


class _RolledBack(Exception):
    """A faulty step was undone by restoring the last good state (nan_policy="rollback")."""


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
        context: distributed.Context | None = None,
    ):
        self.config = config
        self.dataset = dataset
        # data parallel under torchrun: rank 0 alone evaluates and writes (pyrovae.distributed)
        self.dist = context or distributed.Context()
        self.device = distributed.local_device(resolve_device(config.device), self.dist)
        distributed.check_batches(dataset.train.shape[0], config.batch_size, self.dist)
        self.model = model.to(self.device)
        self.guide = guide.to(self.device)
        # a Bayesian decoder's weights are global: its particles cannot share one vectorised pass
        self.objective = make_objective(
            config.objective, config.particles, vectorize_particles=config.decoder != "bayesian"
        )
        # D + βR (Alemi et al. 2018); β is set before every step from the schedule
        self.beta_schedule = build_beta_schedule(config)
        self.beta_objective = BetaScaled(self.objective, beta=self.beta_schedule(0.0))
        self._epoch_betas: list[float] = []
        self.loss_fn = self.beta_objective(self.model, self.guide)
        self._parallel_loss: nn.Module | None = None  # DistributedDataParallel(loss_fn)
        self._parameters = list(self.loss_fn.parameters())
        self.optimizer = make_optimizer(
            registry.OPTIMIZERS.get(config.optimizer),
            self._parameters,
            lr=config.lr,
            weight_decay=config.weight_decay,
        )
        # Polyak averaging: evaluation sees the average, the optimiser steps the parameters
        self.average = (
            WeightAverage({"model": self.model, "guide": self.guide}, config.ema_decay)
            if config.ema_decay > 0
            else None
        )
        self.run = run
        self.progress = progress
        self.epoch = 0
        self.step = 0
        self.metrics: list[dict] = []
        self.test = dataset.test.to(self.device)
        # position inside an epoch interrupted by a signal: batches done and their loss sum
        self.position = 0
        self.partial = torch.zeros((), device=self.device)
        self.stop_requested = False  # set by a signal handler; honoured after the next step
        self.rollbacks = 0
        self.rolled_back: list[str] = []  # what each rollback undid
        self._good_state: dict | None = None

    # -- state --------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "pyrovae_version": pyrovae.__version__,
            "config": self.config.to_dict(),
            "data_dim": self.dataset.data_dim,
            "epoch": self.epoch,
            "step": self.step,
            "position": self.position,
            "partial": self.partial.detach().cpu(),
            "rollbacks": self.rollbacks,
            "metrics": [dict(r) for r in self.metrics],
            "model": self.model.state_dict(),
            "guide": self.guide.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **({"average": self.average.state_dict()} if self.average is not None else {}),
            "rng": _rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.guide.load_state_dict(state["guide"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])
        _set_rng_state(state["rng"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.position = int(state.get("position", 0))
        self.partial = state.get("partial", torch.zeros(())).to(self.device)
        if not self.dist.is_main:  # the checkpoint's partial sum is the total: rank 0 holds it
            self.partial = torch.zeros_like(self.partial)
        self.rollbacks = int(state.get("rollbacks", 0))
        self.metrics = [dict(r) for r in state.get("metrics", [])]

    # -- one epoch ----------------------------------------------------------
    def _batches(self, epoch: int):
        train = self.dataset.train
        gen = _epoch_generator(self.config.seed, epoch)
        order = torch.randperm(train.shape[0], generator=gen)
        for idx in order.split(self.config.batch_size):
            x = train[idx]
            if self.dataset.dynamic_binarization:
                x = torch.bernoulli(x, generator=gen)
            if self.device.type == "cuda":  # pinned host memory: the copy overlaps compute
                x = x.pin_memory()
            yield x.to(self.device, non_blocking=True)

    def train_pass(self) -> tuple[float, float]:
        """One pass over the training set: ``(train ELBO per data point, seconds)``."""
        n = self.dataset.train.shape[0]
        num_batches = math.ceil(n / self.config.batch_size)
        self.model.train()
        self.guide.train()
        self._set_lr()
        if self.dist.enabled:  # each shard draws its own noise, reproducibly
            torch.manual_seed((self.config.seed * 1_000_003 + self.epoch) * 4099 + self.dist.rank)
        start = time.perf_counter()
        label = f"epoch {self.epoch + 1}/{self.config.epochs}"
        with _progress(num_batches, label, self.progress) as bar:
            self._epoch_betas = []
            for i, x in enumerate(self._batches(self.epoch)):
                self.beta_objective.beta = self.beta_schedule(self.epoch + i / num_batches)
                self._epoch_betas.append(self.beta_objective.beta)
                if i < self.position:  # done before an interruption: same batches, same RNG
                    continue
                self._step(x, n)
                self.position = i + 1
                if bar is not None:
                    bar.update(1)
                if self.dist.any(self.stop_requested, self.device):
                    self._gather_partial()
                    raise TrainingInterrupted(
                        f"interrupted at epoch {self.epoch + 1}, step {self.step}"
                    )
        seconds = time.perf_counter() - start
        self._gather_partial()
        self.epoch += 1
        total, self.partial, self.position = self.partial, torch.zeros_like(self.partial), 0
        return -(total / n).item(), seconds

    def learning_rate(self) -> float:
        """The epoch's learning rate: ``lr · γ^(milestones passed) · 0.5^rollbacks``.

        A pure function of the epoch (and of the rollbacks so far), like the β schedule,
        so a resumed run trains at the rates of the uninterrupted one.
        """
        passed = sum(m <= self.epoch for m in self.config.lr_milestones)
        return self.config.lr * self.config.lr_gamma**passed * 0.5**self.rollbacks

    def _set_lr(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()

    def _gather_partial(self) -> None:
        """Sum the processes' partial losses into rank 0's (a no-op on one process)."""
        if self.dist.enabled:
            total = self.dist.sum(self.partial)
            self.partial = total if self.dist.is_main else torch.zeros_like(total)

    def _loss(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """The minibatch loss ``(N/B) Σ_i ℓ_i``; under torchrun, this process's share of it."""
        if not self.dist.enabled:
            return self.loss_fn(x, num_data=n)
        if self._parallel_loss is None:  # after any resume: DDP broadcasts rank 0's state
            self._parallel_loss = distributed.wrap(self.loss_fn)
        shard, weight = self.dist.shard(x)
        return self._parallel_loss(shard, num_data=n) * weight

    def _step(self, x: torch.Tensor, n: int) -> None:
        """One optimiser step; a non-finite loss or gradient never reaches the parameters."""
        try:
            loss = self._loss(x, n)
        except ValueError as e:  # a distribution refused a non-finite or invalid parameter
            self._numerical_fault(faults.first_line(e))
        self.optimizer.zero_grad(set_to_none=True)
        # a non-finite loss makes non-finite gradients, caught below before the update (and
        # under DDP every process takes part in the all-reduce, so all of them stop)
        loss.backward()
        if not faults.step_is_finite(loss, self._parameters):
            self._numerical_fault(faults.describe_fault(self.model, self.guide, x, n, loss))
        self.optimizer.step()
        if self.average is not None:
            self.average.update()
        self.partial += loss.detach() * (x.shape[0] / n / self.dist.world_size)
        self.step += 1

    def _numerical_fault(self, what: str, updated: bool = False) -> None:
        """Stop with a message naming the faulty site, or roll back (``nan_policy``).

        :param updated: the fault appeared after the epoch's last step (in evaluation).
        """
        where = (
            f"the end of epoch {self.epoch}"
            if updated
            else f"epoch {self.epoch + 1}, step {self.step + 1}"
        )
        self.optimizer.zero_grad(set_to_none=True)
        policy = self.config.nan_policy
        if policy == "rollback" and self._good_state is not None:
            if self.rollbacks < self.config.max_rollbacks:
                self.rollbacks += 1
                rollbacks = self.rollbacks
                self.load_state_dict(self._good_state)
                self.rollbacks = rollbacks
                self._set_lr()
                raise _RolledBack(f"{what} at {where}")
            raise TrainingError(
                f"{what} at {where}, after {self.rollbacks} rollbacks with halved learning "
                "rates; the last checkpoint is intact: lower --lr or use a bounded likelihood"
            )
        raise TrainingError(
            f"{what} at {where}; {'' if updated else 'the parameters were not updated and '}"
            "the last checkpoint is intact: lower --lr, use a bounded likelihood, or pass "
            "--nan-policy rollback"
        )

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training set, then the test evaluation: the epoch's metrics row."""
        train_elbo, seconds = self.train_pass()
        row = {"epoch": self.epoch, "step": self.step, "train_elbo": train_elbo, "seconds": seconds}
        self._log_beta(row)
        if not self.dist.is_main:
            return row
        try:
            with self.evaluation_weights():
                row.update(self.evaluate_test())
        except ValueError as e:  # the step just taken produced invalid parameters
            self._numerical_fault(f"evaluation failed ({faults.first_line(e)})", updated=True)
        return row

    def _log_beta(self, row: dict) -> None:
        """Add the epoch's last β; with β ≠ 1 the training number is −(D + βR), not the ELBO."""
        if not self._epoch_betas:
            return
        row["beta"] = self._epoch_betas[-1]
        if any(b != 1.0 for b in self._epoch_betas):
            row["train_beta_elbo"] = row.pop("train_elbo")

    def evaluation_weights(self) -> contextlib.AbstractContextManager:
        """The parameters evaluation uses: the moving average if the run keeps one."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    def adopt_average(self) -> None:
        """After training: the model and guide take the moving average for good (if any),
        as ``load_run`` gives them, for the summary, the plots and the caller."""
        if self.average is not None:
            self.average.adopt()

    def _eval_mode(self) -> None:
        """Evaluation mode; a batch-level likelihood (BAGGINS) is frozen at its training-set
        aggregate (once per step), so test numbers do not depend on the test batch size."""
        self.model.eval()
        self.guide.eval()
        freeze = getattr(self.model.likelihood, "freeze", None)
        if freeze is not None and getattr(self, "_frozen_at", None) != self.step:
            freeze(self.model, self.guide, self.dataset.train, batch_size=EVAL_BATCH)
            self._frozen_at = self.step

    @torch.no_grad()
    def evaluate_test(self) -> dict[str, float]:
        """Test ELBO, rate and distortion per data point (analytic KL where available)."""
        self._eval_mode()
        start = time.perf_counter()
        terms = elbo_terms(
            self.model,
            self.guide,
            self.test,
            num_samples=self.config.eval_samples,
            analytic_kl=True,
            batch_size=EVAL_BATCH,
            num_data=self.dataset.train.shape[0],  # full VB: the ELBO includes weight KL / N
        )
        out = {f"test_{k}": v.mean().item() for k, v in terms.items()}
        out["eval_seconds"] = time.perf_counter() - start
        return out

    def fit(self) -> list[dict]:
        """Train until ``config.epochs``, checkpointing and logging after every epoch.

        The checkpoint is written before the metrics and holds them too, so a process
        killed between the two writes loses nothing. With ``nan_policy="rollback"``
        a faulty step restores the state at the end of the last good epoch and halves
        the learning rate (at most ``max_rollbacks`` times).
        """
        self._good_state = copy.deepcopy(self.state_dict())
        while self.epoch < self.config.epochs:
            try:
                row = self.train_epoch()
            except _RolledBack as e:
                self.rolled_back.append(str(e))
                continue
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            self.metrics.append(row)
            self.save()
            self._good_state = copy.deepcopy(self.state_dict())
        return self.metrics

    def save(self) -> None:
        """Checkpoint (atomically), then rewrite the metrics from the same rows."""
        if self.run is not None:
            self.run.save_checkpoint(self.state_dict())
            self.run.write_metrics(self.metrics)

    # -- final evaluation ---------------------------------------------------
    def _iw_log_likelihood(self) -> torch.Tensor:
        chunk = min(self.config.iw_samples, 100)
        return iw_log_likelihood(
            self.model,
            self.guide,
            self.test,
            self.config.iw_samples,
            chunk_size=chunk,
            batch_size=max(1, IW_ROWS // chunk),
        )

    @torch.no_grad()
    def _under_floating_prior(self) -> dict[str, float]:
        """Test numbers under BILBO's prior fitted to the training set (``*_floating_prior``)."""
        prior = bilbo.floating_prior(self.guide, self.dataset.train, EVAL_BATCH)
        out = {"floating_prior_scale": prior.scale.tolist()}
        with prior_replaced(self.model, prior):
            terms = elbo_terms(self.model, self.guide, self.test, batch_size=EVAL_BATCH)
            out.update({f"test_{k}_floating_prior": v.mean().item() for k, v in terms.items()})
            if self.config.iw_samples > 0:
                ll = self._iw_log_likelihood()
                out["test_iw_log_likelihood_floating_prior"] = ll.mean().item()
        return out

    @torch.no_grad()
    def summarize(self) -> dict[str, Any]:
        """Final test numbers: ELBO, rate, distortion, IW log-likelihood, MSE."""
        self._eval_mode()
        summary: dict[str, Any] = dict(self.metrics[-1]) if self.metrics else {}
        summary.pop("seconds", None)
        summary.pop("eval_seconds", None)
        if not self.metrics:
            summary.update(self.evaluate_test())
            summary.pop("eval_seconds", None)
        if self.config.iw_samples > 0:
            summary["test_iw_log_likelihood"] = self._iw_log_likelihood().mean().item()
            summary["iw_samples"] = self.config.iw_samples
        if getattr(self.objective, "fits_prior", False):
            summary.update(self._under_floating_prior())
        summary["test_mse"] = (
            reconstruction_mse(self.model, self.guide, self.test, batch_size=EVAL_BATCH)
            .mean()
            .item()
        )
        if full_vb.is_full_vb(self.guide):
            spread = full_vb.reconstruction_spread(
                self.model, self.guide, self.test, batch_size=EVAL_BATCH
            )
            summary["test_reconstruction_sd"] = spread.mean().item()
            summary["weight_samples"] = self.guide.num_weight_samples
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


def _check_folder(run: RunFolder, resume: bool, overwrite: bool) -> bool:
    """Refuse a folder this run may not write (read-only); True when it should be resumed."""
    if resume and overwrite:
        raise RunError("--resume and --overwrite contradict each other; pass one")
    if run.path.exists() and not run.path.is_dir():
        raise RunError(f"{run.path} is a file, not a folder; choose another --out folder")
    if run.exists():
        if resume:
            return run.checkpoint_path.exists()
        if not overwrite:
            raise RunError(
                f"{run.path} already holds a run; pass --resume to continue it, --overwrite to "
                "replace it, or choose another --out folder"
            )
    elif run.path.exists() and any(p.name != ".lock" for p in run.path.iterdir()):
        raise RunError(f"{run.path} exists and is not empty; choose another --out folder")
    return False


def _clear(run: RunFolder) -> None:
    """Delete the files of the run in ``run`` (``--overwrite``), nothing else."""
    for p in (
        run.checkpoint_path,
        run.metrics_path,
        run.summary_path,
        run.config_path,
        run.status_path,
    ):
        p.unlink(missing_ok=True)
    shutil.rmtree(run.plots, ignore_errors=True)


def _check_resumable(saved: dict, config: RunConfig, run: RunFolder) -> None:
    """Refuse to resume under settings that would have trained the epochs so far otherwise.

    Learning-rate milestones may be added or moved at or beyond the epochs the checkpoint
    has begun (extending a schedule): those epochs ran at the same rates, so the resumed
    run is the uninterrupted run of the new configuration.
    """
    now, default = config.to_dict(), RunConfig().to_dict()
    # a key the saved run lacks (an older pyrovae) had its default value
    diff = [k for k in now if k not in RUN_SETTINGS and saved.get(k, default[k]) != now[k]]
    if "lr_milestones" in diff:
        state = run.load_checkpoint()  # a checkpoint taken mid-epoch has begun one more
        begun = int(state["epoch"]) + (int(state.get("position", 0)) > 0)
        past = [
            sorted(m for m in milestones if m < begun)
            for milestones in (saved.get("lr_milestones", []), now["lr_milestones"])
        ]
        if past[0] == past[1]:
            diff.remove("lr_milestones")
    if diff:
        raise RunError(
            f"cannot resume {run.path}: the run was trained with different {', '.join(diff)}; "
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
    context = distributed.setup(resolve_device(config.device))
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    run = RunFolder(out) if out is not None else None
    resuming = _check_folder(run, resume, overwrite) if run is not None else False
    context.barrier()  # every process has read the folder before rank 0 writes to it
    dataset = dataset if dataset is not None else load_data(config)
    config.likelihood = resolve_likelihood(config, dataset.binary)
    if resuming:
        _check_resumable(run.read_config()["config"], config, run)
    state = run.load_checkpoint() if resuming else None

    pyro.set_rng_seed(config.seed)
    model, guide = build_model(config, dataset.data_dim)
    check_data(model.likelihood, dataset)
    fit_scale = getattr(model.likelihood, "fit_data_scale", None)
    if fit_scale is not None:  # BAGGINS: the data-scale normalisation is part of the model
        fit_scale(dataset.train, guide)
    if config.init_from is not None and not resuming:
        full_vb.initialise_from_run(model, guide, config.init_from)
    trainer = Trainer(
        config,
        dataset,
        model,
        guide,
        run=run,
        progress=progress and context.is_main,
        context=context,
    )
    if run is not None and not context.is_main:  # other processes train; rank 0 writes
        return _train_beside_main(trainer, state)
    if run is None:
        trainer.fit()
        trainer.adopt_average()
        return TrainResult(
            trainer.model, trainer.guide, config, trainer.metrics, trainer.summarize(), None
        )
    with run.locked():
        if overwrite:
            _clear(run)
        return _train_in_folder(trainer, run, state, dataset, plots)


@contextlib.contextmanager
def _stop_on_signals(trainer: Trainer):
    """SIGINT/SIGTERM ask the trainer to stop after its current step; a second one aborts."""
    if not _is_main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _train_beside_main(trainer: Trainer, state: dict | None) -> TrainResult:
    """A process of rank > 0: start from the checkpoint ``state`` if resuming, write nothing."""
    trainer.run = None
    if state is not None:
        trainer.load_state_dict(state)
    # an interruption is saved and reported by rank 0
    with _stop_on_signals(trainer), contextlib.suppress(TrainingInterrupted):
        trainer.fit()
    return TrainResult(trainer.model, trainer.guide, trainer.config, [], {}, None)


def _train_in_folder(trainer: Trainer, run: RunFolder, state: dict | None, dataset, plots: bool):
    """Rank 0: start from the checkpoint ``state`` if resuming; train; write the run folder."""
    config = trainer.config
    if state is not None:
        trainer.load_state_dict(state)
        if "metrics" not in state:  # a checkpoint from before metrics were kept in it
            trainer.metrics = [r for r in run.read_metrics() if r["epoch"] <= trainer.epoch]
        if model_settings(state["config"]) != model_settings(config.to_dict()):
            trainer.save()  # an extended schedule: the checkpoint now names it, as config.json will
    run.write_config(
        {
            "config": config.to_dict(),
            "data_dim": dataset.data_dim,
            "image_shape": list(dataset.image_shape),
            "num_train": dataset.train.shape[0],
            "pyrovae_version": pyrovae.__version__,
        }
    )
    run.write_status("running", epoch=trainer.epoch, step=trainer.step)
    try:
        with _stop_on_signals(trainer):
            trainer.fit()
    except TrainingInterrupted as e:
        trainer.save()
        message = f"{e}; resume with: pyrovae train --out {run.path} --resume"
        run.write_status("interrupted", epoch=trainer.epoch, step=trainer.step, message=message)
        raise TrainingInterrupted(message) from None
    except (TrainingError, KeyboardInterrupt) as e:
        text = str(e) or "aborted by a second interrupt"
        run.write_status("failed", epoch=trainer.epoch, step=trainer.step, message=text)
        raise
    if not run.checkpoint_path.exists():  # epochs=0: the untrained model is still a run
        trainer.save()
    trainer.adopt_average()  # the checkpoint keeps the raw parameters, for resuming
    summary = trainer.summarize()
    if trainer.rolled_back:
        summary["rollbacks"] = trainer.rolled_back
    run.write_summary(summary)
    if plots:
        from pyrovae.report import write_plots

        plot_model = full_vb.plug_in(trainer.model, trainer.guide)  # full VB: at q(θ)'s mean
        write_plots(run, plot_model, trainer.guide, dataset, trainer.metrics)
    run.write_status("complete", epoch=trainer.epoch, step=trainer.step)
    return TrainResult(trainer.model, trainer.guide, config, trainer.metrics, summary, run)
