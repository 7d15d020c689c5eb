"""``train(config, out)``: from a configuration to a trained model and a run folder.

The steps, each another module's job:

1. claim the run folder (:mod:`pyrovae.lifecycle`); when resuming, continue with
   the run's own configuration and what the caller gave laid over it;
2. load the data and resolve the parts the configuration names
   (:mod:`pyrovae.build`), fitting the likelihood's data statistics;
3. train (:class:`pyrovae.trainer.Trainer`), with ``status.json`` and signals
   handled around it (:func:`pyrovae.lifecycle.tracking`);
4. write the summary (:mod:`pyrovae.summary`) and the plots (:mod:`pyrovae.report`).

Under ``torchrun`` every process trains on its shard of each batch and rank 0
alone writes (:mod:`pyrovae.distributed`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch
from torch import nn

import pyrovae
from pyrovae import distributed, lifecycle
from pyrovae.build import build_model
from pyrovae.config import ConfigError, RunConfig
from pyrovae.device import resolve_device
from pyrovae.infer import full_vb
from pyrovae.progress import Reporter
from pyrovae.resources import check_model_fits
from pyrovae.run import RunFolder, same_model
from pyrovae.summary import EVAL_BATCH
from pyrovae.trainer import Trainer, TrainingError, TrainingInterrupted, make_optimizer

__all__ = [
    "TrainResult",
    "Trainer",
    "TrainingError",
    "TrainingInterrupted",
    "check_data",
    "load_data",
    "make_optimizer",
    "train",
]


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained parts and what the run reported.

    :ivar model: the trained model (with a moving average of the parameters, if the run kept
        one, in place of the raw parameters).
    :ivar guide: its trained guide.
    :ivar config: the configuration the run trained under (``likelihood="auto"`` resolved).
    :ivar metrics: one dict per epoch, the rows of ``metrics.jsonl``.
    :ivar summary: the final evaluation on the test split, as in ``summary.json``.
    :ivar run: the run folder, or None when :func:`train` was given no ``out``.

    Example:

    >>> from pyrovae.train import train
    >>> config = {"dataset": "digits", "likelihood": "gaussian-fixed", "latent_dim": 2,
    ...           "hidden": [16], "epochs": 2, "iw_samples": 10}
    >>> result = train(config)  # no out folder: nothing is written
    >>> [row["epoch"] for row in result.metrics], result.run is None
    ([1, 2], True)
    >>> result.summary["test_elbo"] <= result.summary["test_iw_log_likelihood"]
    True
    """

    model: nn.Module
    guide: nn.Module
    config: RunConfig
    metrics: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    run: RunFolder | None = None


def load_data(config: RunConfig, source=None):
    """The dataset the config names: a built-in name (:data:`pyrovae.registry.DATASETS`)
    or a user's file or folder, read with the data options, checked against the parts
    (:func:`pyrovae.data.load_configured`).

    :param source: instead of ``config.dataset``: a loaded :class:`~pyrovae.data.Dataset`
        (returned as it is), or a numpy array, a torch tensor or a ``torch.utils.data.Dataset``
        (read with the config's data options and checked likewise).
    """
    from pyrovae.data import Dataset, check_run_data, load_configured, load_dataset
    from pyrovae.data.files import OPTIONS as DATA_OPTIONS

    if source is None:
        return load_configured(config)
    if isinstance(source, Dataset):
        return source
    data = load_dataset(source, **{o.name: config[o.name] for o in DATA_OPTIONS})
    check_run_data(data, config)
    return data


def check_data(likelihood: nn.Module, dataset, chunk: int = 65536) -> None:
    """Fail early, with the likelihood's own message, on data outside its support
    (a chunk of rows at a time, so that a split read from disk is never held whole)."""
    from pyrovae.data import iter_chunks

    splits = ("valid", "test") if dataset.dynamic_binarization else ("train", "valid", "test")
    for split in splits:
        try:
            for rows in iter_chunks(dataset.split(split), chunk):
                likelihood.check_data(rows)
        except ValueError as e:
            raise ConfigError(f"dataset {dataset.name!r} ({split} split): {e}") from None


def train(
    config: RunConfig | dict,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | Reporter = False,
    dataset=None,
    plots: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train the model and guide that ``config`` names; write a run folder at ``out``.

    :param config: a :class:`~pyrovae.config.RunConfig`, or a dict of option values.
    :param resume: continue the run in ``out`` from its checkpoint. Options the
        config was not *given* come from the run; given ones that would change
        what the epochs so far trained are refused.
    :param overwrite: replace a run already in ``out``.
    :param progress: how epochs report (:class:`~pyrovae.progress.Reporter`): True is a
        bar on a terminal and one line per epoch off it, False nothing.
    :param dataset: a loaded :class:`pyrovae.data.Dataset`, or your data as a numpy array, a
        torch tensor or a ``torch.utils.data.Dataset`` (default: load ``config.dataset``).
    :param log: called with the loaded data's summary (:func:`pyrovae.data.describe`).

    Example:

    >>> import os
    >>> import tempfile
    >>> from pyrovae.run import load_run
    >>> from pyrovae.train import train
    >>> folder = tempfile.TemporaryDirectory()
    >>> out = os.path.join(folder.name, "run")
    >>> config = {"dataset": "digits", "likelihood": "gaussian-fixed", "latent_dim": 2,
    ...           "hidden": [16], "epochs": 1, "iw_samples": 10}
    >>> result = train(config, out, plots=False)
    >>> sorted(os.listdir(out))
    ['checkpoint.pt', 'config.json', 'metrics.jsonl', 'status.json', 'summary.json']
    >>> config, model, guide, info = load_run(out)  # what every later command starts from
    >>> type(model).__name__, type(guide).__name__, info["epoch"]
    ('VAE', 'DiagonalGaussian', 1)
    >>> folder.cleanup()
    """
    if not isinstance(config, RunConfig):
        config = RunConfig.from_dict(config)
    run = RunFolder(out) if out is not None else None
    resuming = lifecycle.claim(run, resume, overwrite) if run is not None else False
    if resume and run is not None and run.exists():  # (a run killed before its first
        config = lifecycle.resumed_config(run, config)  # checkpoint restarts with its config)
    context = distributed.setup(resolve_device(config.device))
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    context.barrier()  # every process has read the folder before rank 0 writes to it
    dataset = load_data(config, dataset)
    if log is not None and context.is_main:
        from pyrovae.data import describe

        log(describe(dataset))
    config = config.for_data(dataset.binary)
    check_model_fits(config, dataset.shape)  # before anything is allocated
    state = run.load_checkpoint() if resuming else None

    pyro.set_rng_seed(config.seed)
    model, guide = build_model(config, dataset.shape)
    check_data(model.likelihood, dataset)
    model.likelihood.fit_to_data(model, guide, dataset.train, batch_size=EVAL_BATCH)
    if config.init_from is not None and not resuming:
        from pyrovae.weights import initialise_from_run

        initialise_from_run(model, guide, config.init_from)
    trainer = Trainer(
        config,
        dataset,
        model,
        guide,
        run=run,
        progress=progress if context.is_main else False,  # True, False or a Reporter
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
            lifecycle.clear(run)
        return _train_in_folder(trainer, run, state, dataset, plots)


def _train_beside_main(trainer: Trainer, state: dict | None) -> TrainResult:
    """A process of rank > 0: start from the checkpoint ``state`` if resuming, write nothing."""
    trainer.run = None
    if state is not None:
        trainer.load_state_dict(state)
    # an interruption is saved and reported by rank 0
    with lifecycle.stop_on_signals(trainer), contextlib.suppress(TrainingInterrupted):
        trainer.fit()
    return TrainResult(trainer.model, trainer.guide, trainer.config, [], {}, None)


def _train_in_folder(trainer: Trainer, run: RunFolder, state: dict | None, dataset, plots: bool):
    """Rank 0: start from the checkpoint ``state`` if resuming; train; write the run folder."""
    from pyrovae.data.inspect import value_range

    config = trainer.config
    if state is not None:
        trainer.load_state_dict(state)
        if "metrics" not in state:  # a checkpoint from before metrics were kept in it
            trainer.metrics = [r for r in run.read_metrics() if r["epoch"] <= trainer.epoch]
        if not same_model(state["config"], config.to_dict()):
            trainer.save()  # an extended schedule: the checkpoint now names it, as config.json will
        elif run.read_metrics() != trainer.metrics:  # killed between checkpoint and metrics
            run.write_metrics(trainer.metrics)
    run.write_config(  # before the status: a run with a status always has its settings
        {
            "config": config.to_dict(),
            "data_dim": dataset.data_dim,
            "data_shape": list(dataset.shape),
            "image_shape": list(dataset.image_shape) if dataset.image_shape else None,
            "value_range": list(value_range(dataset)),
            "num_train": dataset.train.shape[0],
            "pyrovae_version": pyrovae.__version__,
        }
    )
    with lifecycle.tracking(run, trainer) as enter:
        trainer.fit()
        if not run.checkpoint_path.exists():  # epochs=0: the untrained model is still a run
            trainer.save()
        enter("evaluating the test split")  # from here on the checkpoint is final
        trainer.adopt_average()  # the checkpoint keeps the raw parameters, for resuming
        summary = trainer.summarize()
        if trainer.rolled_back:
            summary["rollbacks"] = trainer.rolled_back
        run.write_summary(summary)
        if plots:
            from pyrovae.report import write_plots

            enter("writing the plots")
            plot_model = full_vb.plug_in(trainer.model, trainer.guide)  # full VB: at q(θ)'s mean
            write_plots(run, plot_model, trainer.guide, dataset, trainer.metrics)
        enter("recording completion")
        run.write_status("complete", epoch=trainer.epoch, step=trainer.step)
    return TrainResult(trainer.model, trainer.guide, config, trainer.metrics, summary, run)
