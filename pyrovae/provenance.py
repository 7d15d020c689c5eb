"""Where a result came from: the command, the commit and the machine, for every results JSON.

A number on the results page is only as good as the record behind it. Every script that
writes a JSON under ``docs/`` or ``benchmarks/results/`` adds the fields of
:func:`provenance` to it:

* ``command`` — the command line that reproduces the file, as a user would type it from the
  repository's root: ``python <script> <args>`` with the script relative to the root
  (``python -m pyrovae ...`` and console scripts such as ``pyrovae sweep ...`` as they are).
  Nothing machine-specific is kept: an absolute path inside the checkout becomes relative to
  its root, one beside the checkout (``/work/shared/data`` next to ``/work/main``) becomes
  ``../shared/data``, and the data folder named by ``PYROVAE_DATA`` becomes
  ``$PYROVAE_DATA``. Other absolute paths are kept (they are what ran), and the results
  linter flags them on the page. Relative arguments are kept as given: run the commands from
  the root.
* ``commit`` and ``dirty`` — ``git rev-parse HEAD`` of the checkout (the one holding the
  script, else the one pyrovae runs from) and whether ``git status --porcelain`` listed
  anything (tracked changes or untracked files), so a number measured on uncommitted code
  says so; both ``None`` outside a git checkout or without git.
* ``machine`` — what a number (a timing above all) depends on beside the code: the CPU
  model, the logical cores and those this process may use (its affinity), the torch
  intra-op threads at the time of writing, the Python, torch and Pyro versions and the
  platform string.

Example::

    report = {"median_seconds": 4.48, **provenance()}

A script that is called with an argument list (``main(argv)``) passes it on, with its own
path: ``provenance(argv, script=__file__)``.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["machine", "portable", "provenance", "repository_root"]

#: the environment variable naming the data folder (see :mod:`pyrovae.data`)
DATA_VARIABLE = "PYROVAE_DATA"
_ABSOLUTE = re.compile(r"(^|[=,:;\s'\"])(/[^\s,;:'\"]*)")


def repository_root(start: str | os.PathLike | None = None) -> Path:
    """The checkout a script belongs to: the nearest folder above ``start`` that holds
    ``.git`` or ``pyproject.toml``; without ``start`` (or with none found), the checkout
    pyrovae runs from, or else the current directory (pyrovae installed elsewhere)."""
    if start is not None:
        for folder in Path(start).resolve().parents:
            if (folder / ".git").exists() or (folder / "pyproject.toml").is_file():
                return folder
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").is_file() else Path.cwd().resolve()


def _under(path: str, folder: str) -> str | None:
    """``path`` relative to ``folder`` if it lies inside it (``""`` for the folder itself)."""
    folder = folder.rstrip("/") or "/"
    if path == folder:
        return ""
    if path.startswith(folder + "/"):
        return path[len(folder) + 1 :]
    return None


def _portable_path(path: str, root: Path) -> str:
    candidates = []  # (folder, how it is written), most specific first
    data = os.environ.get(DATA_VARIABLE)
    if data and os.path.isabs(data):
        for form in {os.path.normpath(data), os.path.realpath(data)}:
            candidates.append((form, "$" + DATA_VARIABLE))
    for form in {os.path.normpath(root), os.path.realpath(root)}:
        candidates.append((form, "."))
        parent = os.path.dirname(form)
        if parent != "/":
            candidates.append((parent, ".."))
    candidates.sort(key=lambda c: len(c[0]), reverse=True)
    normal = os.path.normpath(path)
    for folder, written in candidates:
        rest = _under(normal, folder)
        if rest is not None:
            if written == ".":
                return rest or "."
            return f"{written}/{rest}" if rest else written
    return path


def portable(text: str, root: str | Path | None = None) -> str:
    """``text`` with every absolute path in it written without the machine's folders.

    A path is an absolute path at the start of ``text`` or after ``=``, ``,``, ``:``, ``;``,
    a space or a quote (so ``--out=/x/y`` is seen). Paths inside ``$PYROVAE_DATA`` become
    ``$PYROVAE_DATA/...``, paths inside ``root`` (default :func:`repository_root`) become
    relative to it, paths beside it ``../...``; any other path is left as it is.
    """
    root = Path(root) if root is not None else repository_root()
    return _ABSOLUTE.sub(lambda m: m.group(1) + _portable_path(m.group(2), root), text)


def _quote(arg: str) -> str:
    """Shell quoting that leaves ``$PYROVAE_DATA`` expandable."""
    variable = "$" + DATA_VARIABLE
    if variable not in arg:
        return shlex.quote(arg)
    if shlex.quote(arg.replace(variable, "DATA")) == arg.replace(variable, "DATA"):
        return arg
    escaped = re.sub(r'(["\\`])', r"\\\1", arg)
    return f'"{escaped}"'


def _program(script: str, root: Path) -> list[str]:
    path = Path(script)
    if path.name == "__main__.py":  # python -m package
        return ["python", "-m", path.parent.name]
    if path.suffix == ".py":
        if path.is_absolute():
            return ["python", portable(str(path), root)]
        return ["python", script]
    return [path.name]  # a console script: pyrovae, or a name given as is


def _command(argv: Sequence[str], script: str, root: Path) -> str:
    words = [*_program(script, root)]
    return " ".join([*words, *(_quote(portable(str(a), root)) for a in argv)])


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what :mod:`platform` knows where there is
    none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine a number was measured on.

    :returns: ``processor`` (the CPU model from ``/proc/cpuinfo``, else the platform's
        processor name), ``cores`` (``logical``: :func:`os.cpu_count`; ``usable``: the
        cores this process may run on, its affinity, where the OS tells), ``torch_threads``,
        and the ``python``, ``torch`` and ``pyro`` versions and the ``platform`` string.
    """
    import pyro
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "processor": cpu_model(),
        "cores": {"logical": os.cpu_count(), "usable": usable},
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "platform": platform.platform(),
    }


def provenance(
    argv: Sequence[str] | None = None, script: str | os.PathLike | None = None
) -> dict[str, Any]:
    """The ``command``, ``commit``, ``dirty`` and ``machine`` fields of a results JSON.

    :param argv: the arguments after the program, as ``argparse`` sees them (default
        ``sys.argv[1:]``).
    :param script: the program: a ``.py`` file (written ``python <path relative to the
        root>``), a package's ``__main__.py`` (``python -m <package>``) or a console script's
        name or path (its name, e.g. ``pyrovae``); default ``sys.argv[0]``.
    :returns: ``{"command": str, "commit": str | None, "dirty": bool | None,
        "machine": dict}``; see the module's docstring.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    script = str(sys.argv[0] if script is None else script)
    root = repository_root(script if Path(script).suffix == ".py" else None)
    head = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain") if head else None
    return {
        "command": _command(argv, script, root),
        "commit": head.strip() if head else None,
        "dirty": bool(status.strip()) if status is not None else None,
        "machine": machine(),
    }
