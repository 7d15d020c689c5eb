"""Numerical faults in a training step: keep them from the parameters, and name them.

A step is *faulty* when its loss or any gradient is NaN or infinite. After
``backward()`` the trainer folds the step's verdict into an on-device flag
(:func:`nonfinite_flag`, :class:`StepGuard`) and the optimiser step is skipped
on the device when the flag is set, so a faulty step never reaches the
parameters and no step waits for the host: the flag is read (one host sync)
every ``nan_check_every`` steps or at the epoch's end. :func:`describe_fault`
and :func:`diagnose_step` then say where the fault came from: the first sample
site of the model or guide whose log-probability is non-finite on the offending
batch, or the first parameter with a non-finite gradient.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import pyro.poutine as poutine
import torch
from torch import nn


def nonfinite_flag(loss: torch.Tensor, params: Iterable[torch.Tensor]) -> torch.Tensor:
    """1.0 when the loss or any gradient is NaN or infinite, else 0.0, without a host sync.

    A float32 scalar on the loss's device: the form torch's fused optimisers take as
    ``found_inf``. A gradient counts through its 2-norm, so one whose norm overflows
    float32 (entries beyond ~1e19) counts as non-finite too.
    """
    grads = [p.grad for p in params if p.grad is not None]
    norms = [loss.detach().reshape(()).float()]
    if grads:
        norms += [n.float() for n in torch._foreach_norm(grads)]
    return (~torch.isfinite(torch.stack(norms)).all()).to(torch.float32)


def step_is_finite(loss: torch.Tensor, params: Iterable[torch.Tensor]) -> bool:
    """True when the loss and every gradient are finite (one host sync)."""
    return not bool(nonfinite_flag(loss, params))


def _skips_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step()`` honours ``optimizer.found_inf``: torch's fused
    implementations (Adam, AdamW, SGD, Adagrad with ``fused=True``) do; the others
    assert that it is unset."""
    return type(optimizer).__module__.startswith("torch.optim") and all(
        group.get("fused") for group in optimizer.param_groups
    )


class StepGuard:
    """Optimiser steps that a faulty step and every step after it skip, on the device.

    Each step's verdict f_t ∈ {0, 1} (:func:`nonfinite_flag`) is folded into a sticky
    flag F ← max(F, f_t), and the optimiser steps under F:

    * a fused torch optimiser (``fused=True``: Adam, AdamW, SGD, Adagrad) takes F as
      its ``found_inf``, as under :class:`torch.amp.GradScaler`, and its kernel leaves
      the parameters and its state untouched when F = 1 (the contract of
      ``torch/optim/adam.py``'s ``_fused_adam``: F must be a float32 0.0 or 1.0);
    * any other optimiser steps, then has its parameters and tensor state put back
      from a copy taken before the step where F = 1 (``torch.where``, exact). This
      copy costs a pass over the parameters and state per step; fused optimisers
      pay nothing.

    So from the first faulty step on, the parameters stay bit for bit where the last
    good step left them until :meth:`check` reads F: the one host sync of a window
    of steps. A state the optimiser creates lazily inside a skipped step (SGD's
    momentum buffer) may hold garbage, which is harmless: a detected fault always
    ends in a stop or a rollback to a saved state.

    :param optimizer: the optimiser whose steps are guarded.
    :param params: the parameters whose gradients are checked (those it steps).

    Example:

    >>> import torch
    >>> from pyrovae.faults import StepGuard
    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> optimizer = torch.optim.SGD([w], lr=0.1)
    >>> guard = StepGuard(optimizer, [w])
    >>> for scale in (1.0, float("nan"), 1.0):  # the second step's gradient is not finite
    ...     optimizer.zero_grad()
    ...     loss = (scale * w).sum()
    ...     loss.backward()
    ...     guard.record(loss)
    ...     guard.step()
    >>> w  # one good step; the faulty one and the one after it were skipped
    Parameter containing:
    tensor([0.9000, 0.9000], requires_grad=True)
    >>> guard.check()  # the host sync: the first faulty step came after 1 good one
    1
    """

    def __init__(self, optimizer: torch.optim.Optimizer, params: Iterable[torch.Tensor]):
        self.optimizer = optimizer
        self.params = list(params)
        device = self.params[0].device if self.params else torch.device("cpu")
        #: F: 1.0 from the first faulty step since the last check on
        self.flag = torch.zeros((), dtype=torch.float32, device=device)
        #: the steps since the last check before the first faulty one
        self.clean = torch.zeros((), dtype=torch.int64, device=device)
        self.fused = _skips_on_device(optimizer)

    def record(self, loss: torch.Tensor) -> None:
        """Fold this step's verdict (after ``backward()``) into the flag; no host sync."""
        self.flag.copy_(torch.maximum(self.flag, nonfinite_flag(loss, self.params)))
        self.clean += self.flag == 0

    @torch.no_grad()
    def step(self) -> None:
        """``optimizer.step()``, skipped on the device when the flag is set."""
        if self.fused:
            self.optimizer.found_inf = self.flag
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf
            return
        tensors = [*self.params, *_state_tensors(self.optimizer)]
        saved = [t.clone() for t in tensors]
        self.optimizer.step()
        keep = self.flag == 0
        for t, s in zip(tensors, saved):
            t.copy_(torch.where(keep.to(t.device), t, s))

    def check(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> int | None:
        """Read the flag (a host sync) and start a new window.

        :param reduce: combines the flag over processes (a sum), so all agree.
        :returns: None when no step since the last check was faulty, else the number of
            steps before the first faulty one.
        """
        flag = self.flag if reduce is None else reduce(self.flag)
        faulty = bool(flag > 0)
        first = int(self.clean) if faulty else None
        self.flag.zero_()
        self.clean.zero_()
        return first


def _state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The tensors of the optimiser's state (moments, step counts), parameter by parameter."""
    return [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]


@torch.no_grad()
def nonfinite_site(model, guide, *args, **kwargs) -> str | None:
    """The first site (guide first, then model) whose log-probability is not finite."""
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    for where, trace in (("guide", guide_trace), ("model", model_trace)):
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or name == "data":
                continue
            try:
                log_p = site["fn"].log_prob(site["value"])
            except (ValueError, RuntimeError) as e:  # validation refused the value
                return f"{where} site {name!r} ({first_line(e)})"
            if not torch.isfinite(log_p).all():
                return f"{where} site {name!r}"
    return None


def nonfinite_parameter(*modules: nn.Module) -> str | None:
    """The name of the first parameter whose gradient is not finite."""
    for module in modules:
        for name, p in module.named_parameters():
            if p.grad is not None and not torch.isfinite(p.grad).all():
                return name
    return None


def first_line(error: BaseException) -> str:
    """The first line of an error's message (distribution errors print whole tensors)."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    # torch's validation messages embed shapes: "parameter scale (Tensor of shape (1, 20)) of
    # distribution Normal(loc: torch.Size([1, 20]), ...)"; keep the words, drop the shapes
    line = re.sub(
        r" ?\((Tensor of shape|loc:|probs:|logits:)(?:[^()]|\([^()]*\))*\)",
        "",
        text.splitlines()[0],
    )
    return line.rstrip(":").strip()


def describe_fault(model, guide, x: torch.Tensor, num_data: int, loss: torch.Tensor) -> str:
    """One clause naming the source of a faulty step (for the error message)."""
    if not torch.isfinite(loss):
        try:
            site = nonfinite_site(model, guide, x, num_data=num_data)
        except Exception:  # the diagnosis must never hide the fault itself
            site = None
        return (
            f"non-finite loss ({site} has a non-finite log-probability)"
            if site
            else ("non-finite loss")
        )
    name = nonfinite_parameter(model, guide)
    return f"non-finite gradient of {name}" if name else "non-finite gradient"


def diagnose_step(loss_fn: nn.Module, model, guide, x: torch.Tensor, num_data: int) -> str:
    """Recompute a faulty step found after the fact and name its source (for the message).

    Called with the parameters the faulty step started from (a skipped step leaves them
    there) and its batch; the noise is drawn anew, so a fault that only that draw made
    is reported without a source.
    """
    try:
        loss = loss_fn(x, num_data=num_data)
    except ValueError as e:  # a distribution refused a non-finite or invalid parameter
        return first_line(e)
    if not torch.isfinite(loss):
        return describe_fault(model, guide, x, num_data, loss)
    named = [(n, p) for m in (model, guide) for n, p in m.named_parameters() if p.requires_grad]
    # torch.autograd.grad leaves .grad (and DistributedDataParallel's hooks on it) alone
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    for (name, _), grad in zip(named, grads):
        if grad is not None and not torch.isfinite(grad).all():
            return f"non-finite gradient of {name}"
    return "non-finite loss or gradient (finite when recomputed with new noise)"
