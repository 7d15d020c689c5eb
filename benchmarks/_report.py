"""What every speed benchmark's JSON ends with: its provenance (command, commit, machine)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pyrovae.provenance import machine, portable, provenance

__all__ = ["machine", "write_report"]


def write_report(
    report: dict, out: Path, argv: Sequence[str] | None = None, script: str | None = None
) -> None:
    """Write ``report`` with its :func:`~pyrovae.provenance.provenance` (``command``,
    ``commit``, ``dirty``, ``machine``) to ``out`` as indented JSON.

    :param argv: the benchmark's arguments (default ``sys.argv[1:]``); a ``main(argv)``
        called in-process passes its own.
    :param script: the benchmark's file (default: the file that calls this function).

    A ``command`` the report already holds is kept (made :func:`~pyrovae.provenance.portable`)
    in place of the one rebuilt from ``argv``.
    """
    if script is None:
        script = sys._getframe(1).f_code.co_filename
    record = provenance(argv, script)
    if "command" in report:
        record["command"] = portable(report["command"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**report, **record}, indent=2) + "\n")
