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

Faults: no step waits for the host. A step with a non-finite loss or gradient
is skipped on the device, and so is every step after it, until the fault flag
is read every ``nan_check_every`` steps and at each epoch's end, before the
epoch is evaluated or checkpointed (:class:`pyrovae.faults.StepGuard`); then
``nan_policy`` stops with the faulty step and its source named, or rolls back.
Where the run leaves the thread count to pyrovae (the command line without
``--threads``), it is chosen from the work of a step (:mod:`pyrovae.resources`).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import time
from typing import Any

import torch
from torch import nn

import pyrovae
from pyrovae import distributed, faults, resources, summary, tensorboard_log
from pyrovae.averaging import WeightAverage
from pyrovae.build import build_beta_schedule
from pyrovae.config import RunConfig
from pyrovae.device import resolve_device
from pyrovae.infer.beta import BetaScaled
from pyrovae.infer.objectives import make_objective
from pyrovae.options import ConfigError, Option
from pyrovae.progress import Reporter, Task, epoch_label, epoch_summary, epoch_text
from pyrovae.run import CHECKPOINT_FORMAT


def _check_device(name: str) -> str | None:
    if name in ("auto", "cpu", "cuda") or name.startswith("cuda:"):
        return None
    return "must be auto, cpu, cuda or cuda:N"


#: the optimisation options of a run
OPTIMISATION_OPTIONS = (
    Option("lr", 1e-3, "Learning rate.", above=0),
    Option(
        "lr_milestones",
        [],
        "Epochs at which the learning rate is multiplied by --lr-gamma, comma-separated.",
        type=list,
        low=1,
        normalize=sorted,
    ),
    Option("lr_gamma", 0.1, "Learning-rate factor at each milestone.", above=0),
    Option("weight_decay", 0.0, "L2 weight decay.", low=0),
    Option(
        "ema_decay",
        0.0,
        "Evaluate an exponential moving average of the parameters with this decay d, "
        "spanning about 1/(1-d) steps, e.g. 0.999 (Polyak averaging; 0 = off).",
        low=0,
        below=1,
    ),
    Option("batch_size", 100, "Minibatch size M.", low=1, short="-M"),
    Option("epochs", 10, "Epochs to train (a resumed run may extend them).", low=0, resumable=True),
)

#: the options of how a run executes
RUN_OPTIONS = (
    Option("seed", 0, "Seed that fixes the run.", low=0),
    Option(
        "device",
        "auto",
        "auto (CUDA when present), cpu, cuda or cuda:N.",
        check=_check_device,
        resumable=True,
    ),
    Option(
        "threads",
        None,
        "torch CPU threads. Default on the command line (no OMP_NUM_THREADS): one per "
        "2e8 FLOPs of a training step, at most the cores not already busy (1 for small "
        "networks), recorded in config.json; in Python: torch's setting.",
        type=int,
        low=1,
        nullable=True,
        resumable=True,
    ),
    Option(
        "nan_policy",
        "stop",
        "On a non-finite loss or gradient: stop, or roll back to the last good epoch with "
        "half the learning rate.",
        choices=("stop", "rollback"),
    ),
    Option("max_rollbacks", 3, "Most rollbacks before stopping.", low=0),
    Option(
        "nan_check_every",
        0,
        "Look for non-finite steps every N steps (0: at each epoch's end). In between, a "
        "faulty step and those after it are skipped on the device, so no step waits for "
        "the host; a smaller N stops a faulty run sooner, 1 checks every step.",
        low=0,
        resumable=True,
    ),
    tensorboard_log.TENSORBOARD,
)


def make_optimizer(opt_cls, params, **options) -> torch.optim.Optimizer:
    """The optimiser ``opt_cls(params, **options)``, fused where torch offers it.

    A fused optimiser (``fused=True``: one kernel per parameter tensor instead of a
    dozen element-wise passes) does the same arithmetic as the default loop, rounded
    differently; on a CPU it makes Adam's step ~7× faster, about a fifth of a
    training step for a 784-400-50 VAE at batch 100. Where the class, device or
    dtype has no fused kernel, the default implementation is used.
    """
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


def _reporter(progress: bool | str | Reporter) -> Reporter:
    """A :class:`~pyrovae.progress.Reporter`: True is a bar on a terminal and a line per
    epoch off it, False nothing."""
    return progress if isinstance(progress, Reporter) else Reporter(progress)


class Trainer:
    """Fits a model/guide pair to a dataset under a config, checkpointing into a run folder.

    :param config: the run's configuration (likelihood already resolved).
    :param dataset: a :class:`pyrovae.data.Dataset`.
    :param model: the Pyro model (a :class:`~pyrovae.models.VAE` or alike).
    :param guide: the guide, taking the same ``(x, num_data)`` arguments.
    :param run: a :class:`~pyrovae.run.RunFolder` to checkpoint into, or None to keep
        everything in memory.
    :param progress: how epochs report (:class:`~pyrovae.progress.Reporter`): True is a
        bar on a terminal and one line per epoch off it, False nothing.

    Example:

    >>> import pyro
    >>> from pyrovae.build import build_model
    >>> from pyrovae.config import RunConfig
    >>> from pyrovae.data import load_dataset
    >>> from pyrovae.trainer import Trainer
    >>> data = load_dataset("digits")
    >>> config = RunConfig(likelihood="gaussian-fixed", latent_dim=2, hidden=[16], epochs=2)
    >>> pyro.set_rng_seed(config.seed)
    >>> model, guide = build_model(config, data.shape)
    >>> trainer = Trainer(config, data, model, guide)  # no run folder: all in memory
    >>> metrics = trainer.fit()  # one row per epoch
    >>> [row["epoch"] for row in metrics], trainer.step  # 13 batches of 100 an epoch
    ([1, 2], 26)
    >>> metrics[-1]["test_elbo"] > metrics[0]["test_elbo"]
    True
    """

    def __init__(
        self,
        config: RunConfig,
        dataset,
        model,
        guide,
        run=None,
        progress: bool | Reporter = False,
        context: distributed.Context | None = None,
    ):
        self.config = config
        self.dataset = dataset
        # data parallel under torchrun: rank 0 alone evaluates and writes (pyrovae.distributed)
        self.dist = context or distributed.Context()
        self.device = distributed.local_device(resolve_device(config.device), self.dist)
        if config.threads is None and self.device.type == "cpu" and resources.automatic_threads():
            # the command line, given no --threads: threads by the work of a step and the
            # idle cores (pyrovae.resources), recorded in the config so that a resume keeps them
            work = resources.step_flops(config, dataset.shape)
            threads = resources.apply_automatic_threads(work)
            self.config = config = config.replace(threads=threads)
        distributed.check_batches(dataset.train.shape[0], config.batch_size, self.dist)
        self.model = model.to(self.device)
        self.guide = guide.to(self.device)
        self.objective = make_objective(config.objective, config.particles)
        # D + βR (Alemi et al. 2018); β is set before every step from the schedule
        self.beta_schedule = build_beta_schedule(config)
        self.beta_objective = BetaScaled(self.objective, beta=self.beta_schedule(0.0))
        self._epoch_betas: list[float] = []
        self.loss_fn = self.beta_objective(self.model, self.guide)
        self._parallel_loss: nn.Module | None = None  # DistributedDataParallel(loss_fn)
        self._parameters = list(self.loss_fn.parameters())
        self.optimizer = make_optimizer(
            config.part("optimizer"),
            self._parameters,
            lr=config.lr,
            weight_decay=config.weight_decay,
        )
        # a faulty step is skipped on the device; the flag is read every nan_check_every
        # steps and at the epoch's end (pyrovae.faults), so no step waits for the host
        self.guard = faults.StepGuard(self.optimizer, self._parameters)
        self._window = (0, 0)  # (position, step) of the first step since the last check
        # Polyak averaging: evaluation sees the average, the optimiser steps the parameters
        self.average = (
            WeightAverage({"model": self.model, "guide": self.guide}, config.ema_decay)
            if config.ema_decay > 0
            else None
        )
        self.run = run
        self.reporter = _reporter(progress)
        self._task: Task | None = None  # the epoch's progress, while fit() runs one
        # TensorBoard: rank 0 writes into the run folder (pyrovae.tensorboard_log)
        self.tensorboard = self._tensorboard_log() if config.tensorboard else None
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
        self._prepared_at: int | None = None  # the step evaluation was last prepared at

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
        show = self._running_loss(n, num_batches)
        self._epoch_betas = []
        self._window = (self.position, self.step)
        for i, x in enumerate(self._batches(self.epoch)):
            self.beta_objective.beta = self.beta_schedule(self.epoch + i / num_batches)
            self._epoch_betas.append(self.beta_objective.beta)
            if i < self.position:  # done before an interruption: same batches, same RNG
                continue
            self._step(x, n)
            self.position = i + 1
            if 0 < self.config.nan_check_every <= self.step - self._window[1]:
                self._check_faults(n)
            if self._task is not None:
                self._task.advance(1, show)
            if self.dist.any(self.stop_requested, self.device):
                self._check_faults(n)  # before the checkpoint of the steps so far
                self._gather_partial()
                raise TrainingInterrupted(
                    f"interrupted at epoch {self.epoch + 1}, step {self.step}"
                )
        self._check_faults(n)  # before the epoch is evaluated and checkpointed
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
        """One optimiser step, with no host sync; a non-finite loss or gradient never
        reaches the parameters: the step, and every one after it until the next check,
        is skipped on the device (:class:`pyrovae.faults.StepGuard`)."""
        try:
            loss = self._loss(x, n)
        except ValueError as e:  # a distribution refused a non-finite or invalid parameter
            self._check_faults(n, together=False)  # an earlier, skipped step's came first
            self._numerical_fault(faults.first_line(e))
        self.optimizer.zero_grad(set_to_none=True)
        # a non-finite loss makes non-finite gradients (and under DDP every process takes
        # part in the all-reduce, so all of them skip the step and stop at the check)
        loss.backward()
        self.guard.record(loss)
        self.guard.step()
        if self.average is not None:
            self.average.update(skipped=self.guard.flag)
        self.partial += loss.detach() * (x.shape[0] / n / self.dist.world_size)
        self.step += 1

    def _check_faults(self, n: int, together: bool = True) -> None:
        """Read the fault flag of the steps since the last check (one host sync); on a
        fault, name it and apply ``nan_policy`` (the parameters are still those the
        faulty step started from).

        :param together: all processes check at this step (under torchrun the flag is
            then summed over them, so that all stop); False where one process alone does.
        """
        first = self.guard.check(self.dist.sum if self.dist.enabled and together else None)
        position, step = self._window
        self._window = (self.position, self.step)
        if first is None:
            return
        position, step = position + first, step + first
        x = next(b for i, b in enumerate(self._batches(self.epoch)) if i == position)
        beta = self.beta_objective.beta
        self.beta_objective.beta = self._epoch_betas[position]
        try:
            what = faults.diagnose_step(self.loss_fn, self.model, self.guide, x, n)
        finally:
            self.beta_objective.beta = beta
        self._numerical_fault(what, step=step)

    def _numerical_fault(self, what: str, updated: bool = False, step: int | None = None) -> None:
        """Stop with a message naming the faulty site, or roll back (``nan_policy``).

        :param updated: the fault appeared after the epoch's last step (in evaluation).
        :param step: the steps taken before the faulty one (default: all so far).
        """
        where = (
            f"the end of epoch {self.epoch}"
            if updated
            else f"epoch {self.epoch + 1}, step {(self.step if step is None else step) + 1}"
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
        with self._epoch_task() as self._task:
            train_elbo, seconds = self.train_pass()
            row = {"epoch": self.epoch, "step": self.step, "train_elbo": train_elbo}
            row["seconds"] = seconds
            self._log_beta(row)
            if not self.dist.is_main:
                return row
            self._task.note(f"loss {-train_elbo:.2f} | evaluating the test split")
            try:
                with self.evaluation_weights():
                    row.update(self.evaluate_test())
            except ValueError as e:  # the step just taken produced invalid parameters
                self._numerical_fault(f"evaluation failed ({faults.first_line(e)})", updated=True)
            self._task.done(epoch_summary(row))
        return row

    # -- reporting ----------------------------------------------------------
    def _epoch_task(self) -> Task:
        """The progress of the coming epoch: a bar over its batches, then its line."""
        batches = math.ceil(self.dataset.train.shape[0] / self.config.batch_size)
        label = epoch_label(self.epoch + 1, max(self.config.epochs, self.epoch + 1))
        return self.reporter.task(label, total=batches - self.position)

    def _running_loss(self, n: int, num_batches: int):
        """The bar's text during a pass: the loss per point so far (read from the device
        only when the bar is drawn), then the last epoch's test numbers."""
        last = epoch_text(self.metrics[-1], compact=True) if self.metrics else ""
        last = f" | {last}" if last else ""
        start, start_position = self.partial.clone(), self.position
        batch = self.config.batch_size

        def text() -> str:
            points = min(self.position * batch, n) - min(start_position * batch, n)
            if points <= 0:
                return last.removeprefix(" | ")
            loss = (self.partial - start).item() * self.dist.world_size / points
            return f"loss {loss:.2f}{last}"

        return text

    def _tensorboard_log(self) -> tensorboard_log.TensorBoardLog | None:
        """The run's TensorBoard log (rank 0; in the run folder's ``tensorboard/``)."""
        if not self.dist.is_main:
            return None
        if self.run is None:
            raise ConfigError(
                "tensorboard logs are written into the run folder: pass out= (or --out)"
            )
        from pyrovae.report import display_range

        folder = self.run.path / tensorboard_log.FOLDER
        return tensorboard_log.TensorBoardLog(
            folder, self.dataset.shape, display_range(self.dataset)
        )

    def _log_epoch(self, row: dict) -> None:
        """The finished epoch's row and image grids to TensorBoard (if asked for)."""
        if self.tensorboard is None:
            return
        with torch.no_grad(), self.evaluation_weights():
            self.prepare_evaluation()
            images = self.tensorboard.images(self.model, self.guide, self.test)
        self.tensorboard.epoch(row, images)

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

    def prepare_evaluation(self) -> None:
        """Evaluation mode; a batch-level likelihood (BAGGINS) is frozen at its training-set
        aggregate (once per step), so test numbers do not depend on the test batch size."""
        if self._prepared_at != self.step:
            summary.prepare(self.model, self.guide, self.dataset.train)
            self._prepared_at = self.step
        self.model.eval()
        self.guide.eval()

    def evaluate_test(self) -> dict[str, float]:
        """Test ELBO, rate and distortion per data point (analytic KL where available)."""
        self.prepare_evaluation()
        return summary.test_metrics(
            self.model,
            self.guide,
            self.test,
            self.config.eval_samples,
            self.dataset.train.shape[0],
        )

    def summarize(self) -> dict[str, Any]:
        """Final test numbers: ELBO, rate, distortion, IW log-likelihood, MSE
        (:func:`pyrovae.summary.summarize`)."""
        k = self.config.iw_samples
        what = f" (IW log-likelihood, K = {k})" if k > 0 else ""
        with self.reporter.task(f"evaluating the test split{what}", transient=True):
            self.prepare_evaluation()
            return summary.summarize(
                self.model, self.guide, self.config, self.dataset.train, self.test, self.metrics
            )

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
                label = epoch_label(self.epoch + 1, self.config.epochs)
                self.reporter.echo(f"{label}  rolled back ({e}); learning rate halved")
                continue
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            self.metrics.append(row)
            self.save()
            self._good_state = copy.deepcopy(self.state_dict())
            self._log_epoch(row)
        if self.tensorboard is not None:
            self.tensorboard.close()
        return self.metrics

    def save(self) -> None:
        """Checkpoint (atomically), then rewrite the metrics from the same rows."""
        if self.run is not None:
            self.run.save_checkpoint(self.state_dict())
            self.run.write_metrics(self.metrics)
