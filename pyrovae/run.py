"""A run is a folder: the contract between ``train`` and every other command.

::

    RUN/config.json      the resolved RunConfig (rebuilds model and guide)
    RUN/metrics.jsonl    one JSON row per epoch
    RUN/checkpoint.pt    state dicts, optimiser and RNG state (written atomically)
    RUN/summary.json     final numbers
    RUN/plots/*.png      curves, reconstructions, samples, manifold

Checkpoints are read with ``torch.load(weights_only=True)``: loading one
cannot execute code. Every file is written to a temporary name in the same
folder, flushed, fsynced and renamed, so a crash leaves either the old or the
new file, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

CHECKPOINT_FORMAT = "pyrovae-checkpoint-1"

#: run folders of these earlier versions are read (their configs migrated), resumed and
#: evaluated; a run of any other version is refused with one line naming it
COMPATIBLE_VERSIONS = ("0.1.0",)


def _readable(version: str | None) -> bool:
    from pyrovae import __version__

    return version == __version__ or version in COMPATIBLE_VERSIONS


def migrate_config(values: dict, version: str | None, where: object = "config") -> dict:
    """A run config written by pyrovae ``version``, in this version's terms.

    0.1.0 wrote the keys this version reads (a test keeps a 0.1.0 run folder), but for
    one: its ``decoder`` named the weight treatment, ``mlp`` or ``bayesian``, which is
    now ``weights`` (``point`` or ``bayesian``) while ``decoder`` names the network.
    A key that a run lacks takes its default.

    :raises RunError: for a version this one cannot read.
    """
    if version is not None and not _readable(version):
        from pyrovae import __version__

        raise RunError(
            f"{where} was written by pyrovae {version} and this is pyrovae {__version__}; "
            "load it with that version, or retrain"
        )
    values = dict(values)
    if values.get("decoder") == "bayesian" and "weights" not in values:
        values["decoder"], values["weights"] = "mlp", "bayesian"
    return values


class RunError(RuntimeError):
    """A run folder or checkpoint that cannot be used; the message says why and what to do."""


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; give the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Any) -> Path:
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    return atomic_write(path, lambda f: f.write(data))


class RunFolder:
    """Paths and I/O of one run folder.

    Example:

    >>> import tempfile
    >>> from pyrovae.run import RunFolder
    >>> folder = tempfile.TemporaryDirectory()
    >>> run = RunFolder(folder.name)
    >>> run.config_path.name, run.checkpoint_path.name, run.exists()
    ('config.json', 'checkpoint.pt', False)
    >>> run.require()
    Traceback (most recent call last):
        ...
    pyrovae.run.RunError: ... is not a pyrovae run folder (no config.json)
    >>> run.write_status("complete", epoch=3)
    >>> run.read_status()
    {'epoch': 3, 'state': 'complete'}
    >>> folder.cleanup()
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")
    summary_path = property(lambda self: self.path / "summary.json")
    status_path = property(lambda self: self.path / "status.json")
    plots = property(lambda self: self.path / "plots")

    def exists(self) -> bool:
        return self.config_path.exists()

    def require(self) -> RunFolder:
        """Raise :class:`RunError` unless this folder holds a run."""
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"{self.path} is a file, not a run folder; give the folder a run wrote")
        if not self.path.is_dir():
            raise RunError(f"run folder {self.path} does not exist")
        if not self.config_path.exists():
            raise RunError(f"{self.path} is not a pyrovae run folder (no config.json)")
        return self

    # -- config and summary -------------------------------------------------
    def write_config(self, config: dict) -> None:
        write_json(self.config_path, config)

    def read_config(self) -> dict:
        self.require()
        try:
            return json.loads(self.config_path.read_text())
        except json.JSONDecodeError as e:
            raise RunError(
                f"{self.config_path} is not valid JSON ({e}); the run is damaged"
            ) from None

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary_path, summary)

    def write_status(self, state: str, **info) -> None:
        """Record where the run stands: running (with this process's pid), interrupted,
        failed or complete."""
        if state == "running":
            info = {"pid": os.getpid(), **info}
        write_json(self.status_path, {"state": state, **info})

    def read_status(self) -> dict:
        """The recorded status; a "running" run whose process is gone reads as interrupted."""
        if not self.status_path.exists():
            return {}
        try:
            status = json.loads(self.status_path.read_text())
        except (json.JSONDecodeError, OSError):
            return {"state": "unknown", "message": f"{self.status_path} is unreadable"}
        pid = status.get("pid")
        if status.get("state") == "running" and isinstance(pid, int) and not _alive(pid):
            status = {
                **status,
                "state": "interrupted",
                "message": f"its process ({pid}) ended without recording why (killed?); "
                f"resume with: pyrovae train --out {self.path} --resume",
            }
        return status

    def remove_leftovers(self) -> list[Path]:
        """Delete the temporary files a killed writer left (``.NAME.*.tmp``); call it while
        holding the lock, so no live writer owns them."""
        removed = []
        for folder in (self.path, self.plots):
            for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        return removed

    def read_summary(self) -> dict:
        return json.loads(self.summary_path.read_text()) if self.summary_path.exists() else {}

    # -- metrics ------------------------------------------------------------
    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a crash
        return rows

    def write_metrics(self, rows: list[dict]) -> None:
        data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
        atomic_write(self.metrics_path, lambda f: f.write(data))

    def append_metrics(self, row: dict) -> None:
        self.write_metrics([*self.read_metrics(), row])

    # -- checkpoint ---------------------------------------------------------
    def save_checkpoint(self, state: dict) -> None:
        atomic_write(self.checkpoint_path, lambda f: torch.save(state, f))

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict:
        return load_checkpoint(self.checkpoint_path, map_location)

    # -- exclusive use --------------------------------------------------------
    lock_path = property(lambda self: self.path / ".lock")

    @contextlib.contextmanager
    def locked(self):
        """Hold ``RUN/.lock`` (created exclusively, holding our pid) while writing the run.

        A second process that tries to write the same folder gets a :class:`RunError`
        naming the holder. A lock left by a process that no longer exists is taken over.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                break
            except FileExistsError:
                holder = _lock_holder(self.lock_path)
                if holder is not None and _alive(holder):
                    raise RunError(
                        f"{self.path} is in use by process {holder}; wait for it to finish, "
                        "or stop it, before writing this run"
                    ) from None
                self.lock_path.unlink(missing_ok=True)  # stale: its process is gone
        else:  # pragma: no cover - lost a race twice
            raise RunError(f"could not lock {self.path}; try again")
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        try:
            self.remove_leftovers()
            yield self
        finally:
            self.lock_path.unlink(missing_ok=True)


def _lock_holder(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a pyrovae checkpoint safely; a damaged or foreign file is a :class:`RunError`."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"no checkpoint at {path}; train the run first")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = first.split(". ")[0]  # torch appends paragraphs of advice
        raise RunError(
            f"{path} is not a readable pyrovae checkpoint ({first}); it may be truncated or "
            "from another program: delete it and retrain, or resume from an intact copy"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path} is not a pyrovae checkpoint (format tag missing)")
    if not _readable(state.get("pyrovae_version")):
        migrate_config({}, state.get("pyrovae_version"), path)  # raises, naming the version
    return state


def saved_config(run: RunFolder):
    """The :class:`~pyrovae.config.RunConfig` ``run`` was trained with (migrated from older
    pyrovae versions; nothing recorded as given)."""
    from pyrovae.config import ConfigError, RunConfig

    saved = run.read_config()
    try:
        values = migrate_config(saved["config"], saved.get("pyrovae_version"), run.config_path)
        return RunConfig.from_dict(values, source=str(run.config_path), given=())
    except (KeyError, TypeError, ConfigError) as e:
        raise RunError(f"{run.config_path} is not a valid pyrovae run config ({e})") from None


def same_model(a: dict, b: dict) -> bool:
    """Whether two stored configs define the same model and training (resumable options,
    such as ``epochs`` or ``device``, aside)."""
    from pyrovae.config import resumable

    skip = resumable()
    return {k: v for k, v in a.items() if k not in skip} == {
        k: v for k, v in b.items() if k not in skip
    }


def load_run(path: str | os.PathLike, device: str = "cpu", checkpoint: str | None = None):
    """Rebuild a run's model and guide from ``config.json`` and load ``checkpoint.pt``.

    A run that kept a moving average of its parameters (``ema_decay > 0``) is loaded
    with the average, the parameters its evaluation reported.

    :param checkpoint: another checkpoint file of the same run (e.g. a selected epoch's).

    :returns: ``(config, model, guide, info)`` with ``info`` the rest of config.json
        (``data_dim``, ``data_shape``, ``image_shape``) and the checkpoint's ``epoch``.
    """
    from pyrovae.averaging import apply_average
    from pyrovae.build import build_model
    from pyrovae.config import ConfigError
    from pyrovae.device import resolve_device

    run = RunFolder(path).require()
    saved = run.read_config()
    try:
        config = saved_config(run)
        data_dim = int(saved["data_dim"])
    except (KeyError, TypeError, ConfigError) as e:
        raise RunError(f"{run.config_path} is not a valid pyrovae run config ({e})") from None
    dev = resolve_device(device)
    state = load_checkpoint(checkpoint or run.checkpoint_path, map_location=dev)
    if (
        not same_model(state.get("config") or {}, saved["config"])
        or state.get("data_dim") != data_dim
    ):
        raise RunError(
            f"{checkpoint or run.checkpoint_path} belongs to another model than "
            f"{run.config_path}; "
            "the run folder is inconsistent: retrain it"
        )
    model, guide = build_model(config, saved.get("data_shape") or data_dim)
    try:
        model.load_state_dict(state["model"])
        guide.load_state_dict(state["guide"])
        if "average" in state:  # the run evaluates its moving average (pyrovae.averaging)
            apply_average(state["average"], {"model": model, "guide": guide})
    except (RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0]
        raise RunError(f"{run.checkpoint_path} does not fit its model ({first})") from None
    model.to(dev).eval()
    guide.to(dev).eval()
    info = {k: v for k, v in saved.items() if k != "config"}
    info["epoch"] = state.get("epoch")
    return config, model, guide, info
