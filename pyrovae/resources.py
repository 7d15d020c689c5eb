"""Bounded requests: what a model or an evaluation pass will need, checked before it is spent.

A request that cannot fit in this machine's memory is refused with one line
giving the number and the fix, before anything is allocated. The estimates:

* **training** a model of ``P`` parameters (float32) needs about ``4 P`` bytes
  for each of the parameters, their gradients and Adam's two moments (and one
  more copy for a moving average): ``16 P`` to ``20 P`` bytes, activations
  aside. ``P`` is counted by building the model on PyTorch's ``meta`` device,
  which allocates nothing; a part that cannot be built there (it reads values
  at construction) is counted with the standard prior and point-estimate
  weights instead, a lower bound.
* **an importance-weighted pass** over ``chunk × batch`` rows holds a few
  float32 tensors of ``rows × (D + decoder outputs + hidden widths)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pyrovae.config import ConfigError, RunConfig

GB = 1024**3
#: tensors alive per row of an importance-weighted pass, in units of its widest layer
_PASS_COPIES = 4


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable``), if known."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def count_parameters(config: RunConfig, shape: int | tuple[int, ...]) -> int:
    """The parameters of the model and guide ``config`` names, counted without allocating."""
    from pyrovae.build import build_model

    try:
        with torch.device("meta"):
            model, guide = build_model(config, shape)
    except (RuntimeError, NotImplementedError):  # a part reads values while it is built
        simpler = config.replace(prior="standard", weights="point", init_from=None)
        with torch.device("meta"):
            model, guide = build_model(simpler, shape)
    return sum(p.numel() for m in (model, guide) for p in m.parameters())


def _gb(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= 0.1 * GB else f"{n / 1024**2:.0f} MB"


def check_model_fits(
    config: RunConfig, shape: int | tuple[int, ...], available: int | None = None
) -> int:
    """Refuse a model whose training state cannot fit in memory; return its parameter count.

    :raises ConfigError: naming the parameter count, the bytes needed and available, and
        the options to reduce.
    """
    params = count_parameters(config, shape)
    copies = 5 if config.ema_decay > 0 else 4
    need = params * 4 * copies
    available = available_memory() if available is None else available
    if available is not None and need > available:
        raise ConfigError(
            f"the model has {params:,} parameters and needs about {_gb(need)} to train "
            f"(parameters, gradients, optimiser state); this machine has {_gb(available)} "
            "available: reduce --latent-dim or --hidden"
        )
    return params


def check_pass_fits(
    rows: int, widths: list[int], what: str, fix: str, available: int | None = None
) -> None:
    """Refuse an evaluation pass over ``rows`` rows whose widest layer does not fit.

    :param widths: the widths of the layers a row goes through (data, hidden, outputs).
    :param what: the pass, for the message; :param fix: the options to reduce.
    """
    need = rows * max(widths) * 4 * _PASS_COPIES
    available = available_memory() if available is None else available
    if available is not None and need > available:
        raise ConfigError(
            f"{what} of {rows:,} rows needs about {_gb(need)} and this machine has "
            f"{_gb(available)} available: {fix}"
        )
