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

The same goes for the CPU: when the command line is given no ``--threads``
(and the environment no ``OMP_NUM_THREADS``), the number of torch threads is
chosen from the work and the machine (:func:`choose_threads`), instead of
torch's one thread per core. The rule:

    threads = max(1, min(idle cores, ⌊W / 2·10⁸⌋)),

where W is the work of one training step, the FLOPs of its matrix products
and convolutions forward and backward (:func:`step_flops`: 3 × the forward
pass, counted on the ``meta`` device), and the idle cores are the cores this
process may run on minus those already busy (:func:`idle_cores`). Each thread
must get at least 2·10⁸ FLOPs a step (≈ 3 ms of a core at the ≈ 70 GFLOP/s a
training step reaches here) to repay OpenMP's fork and join on the step's
hundred-odd operations: the README's digits VAE (64-400-2, batch 100,
W ≈ 3·10⁷) trains on one thread, a 784-400-40 MNIST VAE (W ≈ 4·10⁸) on two
when two cores are idle. The threshold is an estimate, to be confirmed on a
quiet machine by ``benchmarks/default_threads.py``. Why not torch's default:
an OpenMP thread on a core that another process uses holds up every parallel
region until it is scheduled; on this 2-core machine under a load average of
≈ 6, a 784-400-40 step took 402 ms on two threads against 25 ms on one. The
command line also lets OpenMP's waiting threads sleep
(``OMP_WAIT_POLICY=PASSIVE`` unless set; libgomp reads it once, so it is set
before torch is imported): the same loaded step on two threads then took
33 ms. The count chosen for a training run is recorded in its ``config.json``
(``threads``), and a resumed run keeps it, since results depend, slightly, on
the number of threads.
"""

from __future__ import annotations

import contextvars
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    import torch

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
    :param what: the pass, for the message.
    :param fix: the options to reduce.
    """
    need = rows * max(widths) * 4 * _PASS_COPIES
    available = available_memory() if available is None else available
    if available is not None and need > available:
        raise ConfigError(
            f"{what} of {rows:,} rows needs about {_gb(need)} and this machine has "
            f"{_gb(available)} available: {fix}"
        )


# -- threads ---------------------------------------------------------------------------

#: the FLOPs of a training step each torch thread must get for one more thread to pay
FLOPS_PER_THREAD = 2e8

#: set while the thread count is pyrovae's to choose (the command line, no --threads given)
_AUTOMATIC: contextvars.ContextVar[_Automatic | None] = contextvars.ContextVar(
    "pyrovae_automatic_threads", default=None
)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def busy_cores() -> float:
    """Cores other work is using: the larger of the 1-minute load average and the tasks
    runnable at this moment besides this one (``/proc/loadavg``), 0 where unknown."""
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0
    try:
        running = Path("/proc/loadavg").read_text().split()[3].split("/")[0]
        busy = max(busy, int(running) - 1)
    except (OSError, IndexError, ValueError):
        pass
    return busy


def idle_cores(cores: int | None = None, busy: float | None = None) -> int:
    """The usable cores not already busy, rounded, at least 1 and at most ``cores``."""
    cores = usable_cores() if cores is None else cores
    busy = busy_cores() if busy is None else busy
    return max(1, min(cores, math.floor(cores - busy + 0.5)))


def choose_threads(work: float, idle: int | None = None) -> int:
    """The torch threads for ``work`` FLOPs a step: ``max(1, min(idle, ⌊work / 2·10⁸⌋))``.

    :param work: the FLOPs of one training step (:func:`step_flops`).
    :param idle: the idle cores (default: :func:`idle_cores`, read now).
    """
    idle = idle_cores() if idle is None else idle
    return max(1, min(idle, int(work // FLOPS_PER_THREAD)))


def step_flops(config: RunConfig, shape: int | tuple[int, ...]) -> float:
    """The FLOPs of one training step of the run ``config`` names on data of ``shape``.

    Three times the FLOPs of the loss's forward pass on one minibatch (a backward pass
    of matrix products and convolutions costs about two forwards), counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` on the ``meta`` device, which
    computes nothing. A part that cannot run there (it reads values) is replaced as in
    :func:`count_parameters`, then by the default likelihood, guide and objective; a
    run none of that fits is estimated as ``6 × batch × parameters`` (a lower bound).
    """
    import pyro
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pyrovae.build import build_model
    from pyrovae.infer.objectives import make_objective

    dim = shape if isinstance(shape, int) else math.prod(shape)
    candidates = (
        lambda: config,
        lambda: config.replace(prior="standard", weights="point", init_from=None),
        lambda: config.replace(
            prior="standard",
            weights="point",
            init_from=None,
            likelihood="bernoulli",
            guide="diagonal",
            objective="meanfield",
        ),
    )
    for candidate in candidates:
        try:
            simpler = candidate()
            with pyro.validation_enabled(False), torch.device("meta"):
                model, guide = build_model(simpler, shape)
                loss_fn = make_objective(simpler.objective, simpler.particles)(model, guide)
                x = torch.zeros(simpler.batch_size, dim)
            with FlopCounterMode(display=False) as counter:
                loss_fn(x, num_data=10 * simpler.batch_size)
            return 3.0 * counter.get_total_flops()
        except Exception:  # a part that needs values; the next candidate is simpler
            continue
    return 6.0 * config.batch_size * count_parameters(config, shape)


def automatic_threads() -> bool:
    """Whether the thread count is pyrovae's to choose: set by the command line when it is
    given no ``--threads`` and the environment no ``OMP_NUM_THREADS``."""
    return _AUTOMATIC.get() is not None


@dataclass
class _Automatic:
    """A command's automatic thread count: torch's count before it (if torch was already
    imported: the command runs inside a Python process), and whether it was changed."""

    before: int | None
    changed: bool = False


def command_line_threads(environ: dict | None = None) -> Callable[[], None]:
    """The command line's thread settings, made at its entry before torch is imported.

    Lets OpenMP's waiting threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``
    unless the environment sets a policy; libgomp reads it once, when torch loads it),
    and, unless ``OMP_NUM_THREADS`` is set, makes the thread count pyrovae's to choose
    (:func:`automatic_threads`) until the returned function is called. That function
    also puts back the count of a Python process that had imported torch before the
    command (a test, a notebook), if the command chose another.

    :param environ: the environment to read and set (default: ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    automatic = None
    if "OMP_NUM_THREADS" not in environ:
        torch = sys.modules.get("torch")
        automatic = _Automatic(torch.get_num_threads() if torch is not None else None)
    token = _AUTOMATIC.set(automatic)

    def done() -> None:
        _AUTOMATIC.reset(token)
        if automatic is not None and automatic.changed and automatic.before is not None:
            sys.modules["torch"].set_num_threads(automatic.before)

    return done


def apply_automatic_threads(work: float | None = None) -> int | None:
    """Set torch's threads by the rule, if they are pyrovae's to choose; the count or None.

    :param work: the FLOPs of a training step; None for an evaluation, whose batches of
        many importance samples are large: all the idle cores.
    """
    automatic = _AUTOMATIC.get()
    if automatic is None:
        return None
    import torch

    threads = idle_cores() if work is None else choose_threads(work)
    torch.set_num_threads(threads)
    automatic.changed = True
    return threads
