"""The life of a run folder: claiming it, resuming it, and recording how a run ended.

* :func:`claim` decides what a run may do with its folder: start afresh, resume
  (``--resume``), replace (``--overwrite``), or nothing (a one-line
  :class:`~pyrovae.run.RunError`).
* :func:`resumed_config` is the configuration a resumed run continues with:
  the run's own, with what the user *said* (``RunConfig.given``) laid over it;
  a given option that would have trained the epochs so far otherwise is
  refused, naming it.
* :func:`tracking` writes ``status.json`` — running, then interrupted or
  failed — around everything a run does in its folder. During training,
  SIGINT/SIGTERM stop it after the current step with a checkpoint of it;
  afterwards (the summary's evaluation, the plots) they stop it at once: the
  checkpoint already holds the finished training, and ``--resume`` writes the
  rest. A filesystem error (read-only, no space, a path that cannot exist)
  marks the run failed where the folder can still be written.

The lock, atomic writes and the files themselves are :mod:`pyrovae.run`'s.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import signal
import threading
from collections.abc import Callable, Iterable, Iterator

from pyrovae import config as configs
from pyrovae.config import RunConfig
from pyrovae.run import RunError, RunFolder, saved_config


def claim(run: RunFolder, resume: bool, overwrite: bool) -> bool:
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


def clear(run: RunFolder) -> None:
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


def differences(saved: RunConfig, config: RunConfig, keys: Iterable[str]) -> list[str]:
    """The options among ``keys`` whose value in ``config`` differs from ``saved``'s.

    A part name that is decided from the data (``likelihood = "auto"``) agrees with
    whatever the run resolved it to on the same data.
    """
    decided = _decided(config)
    return [key for key in keys if key not in decided and config[key] != saved[key]]


def begun_epochs(run: RunFolder) -> int:
    """Epochs the checkpoint has begun: one more than finished if taken mid-epoch (0 before
    the first checkpoint)."""
    if not run.checkpoint_path.exists():
        return 0
    state = run.load_checkpoint()
    return int(state["epoch"]) + (int(state.get("position", 0)) > 0)


def resumed_config(run: RunFolder, config: RunConfig) -> RunConfig:
    """The configuration of ``run`` with the options ``config`` was *given* laid over it.

    Options the user did not give come from the run. A given option that differs
    from the run's is refused unless it may change on resume (``epochs``,
    ``device``, ``threads``, ``data_dir``), or it extends the learning-rate
    schedule: milestones at or beyond the epochs the checkpoint has begun keep the
    epochs so far at the same rates, so the resumed run is the uninterrupted run of
    the new configuration.

    :raises RunError: naming the options that would change the run.
    """
    saved = saved_config(run)
    given = sorted(config.given - configs.resumable())
    diff = differences(saved, config, given)
    if "lr_milestones" in diff:
        begun = begun_epochs(run)
        old, new = ([m for m in c.lr_milestones if m < begun] for c in (saved, config))
        if old == new:
            diff.remove("lr_milestones")
    if diff:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in diff)
        raise RunError(
            f"cannot resume {run.path}: it was trained with different {', '.join(diff)}; "
            f"omit {flags} to continue it with its own, or train into a new folder"
        )
    return saved.replace(**{k: config[k] for k in config.given - _decided(config)})


def _decided(config: RunConfig) -> set[str]:
    """Part-choosing options set to a name decided from the data (``auto``)."""
    return {
        key
        for key, declared in configs.schema().items()
        if declared.selects is not None and config[key] in declared.selects.extra
    }


class Interrupted(Exception):
    """A signal arrived while a run was not training (evaluating, writing, plotting)."""


@contextlib.contextmanager
def stop_on_signals(trainer, phase: Callable[[], str] = lambda: "training") -> Iterator[None]:
    """SIGINT/SIGTERM while ``phase()`` is "training" ask ``trainer`` to stop after its
    current step (a second one aborts); in any other phase they raise :class:`Interrupted`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if phase() != "training":
            raise Interrupted(phase())
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


#: fault injection for tests: ``PYROVAE_PAUSE_AT=<phase>`` holds a run at the start of that
#: phase (until a signal), so a test can interrupt it there without relying on timing
PAUSE_VARIABLE = "PYROVAE_PAUSE_AT"


def _pause_if_asked(phase: str) -> None:
    import os
    import time

    if os.environ.get(PAUSE_VARIABLE) == phase:
        time.sleep(600)


def describe_os_error(error: OSError) -> str:
    """One line naming what could not be written or read, why, and what to do."""
    where = f" {error.filename}" if error.filename else ""
    reason = error.strerror or str(error) or type(error).__name__
    fix = {
        errno.ENOSPC: "free some space or choose another --out folder",
        errno.EROFS: "choose an --out folder on a writable filesystem",
        errno.EACCES: "choose an --out folder you may write",
        errno.EPERM: "choose an --out folder you may write",
        errno.ENOENT: "choose an --out folder whose parent exists and can hold files",
        errno.ENOTDIR: "a part of the path is a file: choose another --out folder",
    }.get(error.errno, "check the folder and try again")
    return f"cannot write or read{where}: {reason}; {fix}"


@contextlib.contextmanager
def tracking(run: RunFolder, trainer) -> Iterator[Callable[[str], None]]:
    """``status.json`` around a run's work in its folder: running, then interrupted or failed.

    Yields ``enter(phase)``, to be called as the run moves on from "training" (e.g. to
    "evaluating the test split", "writing the plots"). An interruption is re-raised as
    :class:`~pyrovae.trainer.TrainingInterrupted` whose message says how to resume; a
    filesystem error as a one-line :class:`~pyrovae.run.RunError`.
    """
    from pyrovae.run import RunError
    from pyrovae.trainer import TrainingError, TrainingInterrupted

    current = ["training"]

    def enter(phase: str) -> None:
        if trainer.stop_requested:  # a signal between the last step and this phase
            raise Interrupted(phase)
        current[0] = phase
        run.write_status("running", epoch=trainer.epoch, step=trainer.step, phase=phase)
        _pause_if_asked(phase)

    def record(state: str, message: str) -> None:
        with contextlib.suppress(OSError):  # a folder that cannot be written keeps its status
            run.write_status(state, epoch=trainer.epoch, step=trainer.step, message=message)

    try:
        run.write_status("running", epoch=trainer.epoch, step=trainer.step, phase="training")
        with stop_on_signals(trainer, lambda: current[0]):
            yield enter
    except TrainingInterrupted as e:
        trainer.save()
        message = f"{e}; resume with: pyrovae train --out {run.path} --resume"
        record("interrupted", message)
        raise TrainingInterrupted(message) from None
    except Interrupted:
        message = (
            f"interrupted while {current[0]}, after the last epoch was saved; finish with: "
            f"pyrovae train --out {run.path} --resume"
        )
        record("interrupted", message)
        raise TrainingInterrupted(message) from None
    except OSError as e:
        message = describe_os_error(e)
        record("failed", message)
        raise RunError(message) from None
    except (TrainingError, KeyboardInterrupt) as e:
        record("failed", str(e) or "aborted by a second interrupt")
        raise
