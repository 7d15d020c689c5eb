"""What every speed benchmark's JSON ends with: the machine it ran on, and the writing."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pyro
import torch


def machine() -> dict[str, str]:
    """Processor, Python, torch and Pyro versions: what a timing depends on beside the code."""
    return {
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
    }


def write_report(report: dict, out: Path) -> None:
    """Write ``report`` (with :func:`machine` added) to ``out`` as indented JSON."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**report, "machine": machine()}, indent=2) + "\n")
