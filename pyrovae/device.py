"""Device selection: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:i]``."""

from __future__ import annotations

import torch


class DeviceError(RuntimeError):
    """A device that this machine does not have."""


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``name``; ``cuda`` without CUDA is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                "--device cuda was requested but this machine has no CUDA device "
                "(or torch was built without CUDA); use --device cpu or --device auto"
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"{name} does not exist: this machine has {torch.cuda.device_count()} CUDA devices"
            )
        return device
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"unknown device {name!r}; use auto, cpu or cuda")
