"""Numerical faults in a training step: find them before the parameters change, and name them.

A step is *faulty* when its loss or any gradient is NaN or infinite. The
trainer checks after ``backward()`` and before ``optimizer.step()``, so a
faulty step never reaches the parameters. :func:`describe_fault` then says
where it came from: the first sample site of the model or guide whose
log-probability is non-finite on the offending batch, or the first parameter
with a non-finite gradient.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pyro.poutine as poutine
import torch
from torch import nn


def step_is_finite(loss: torch.Tensor, params: Iterable[torch.Tensor]) -> bool:
    """True when the loss and every gradient are finite (one host sync per step)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return bool(torch.isfinite(loss))
    norms = torch.stack([loss.detach().reshape(()), *torch._foreach_norm(grads)])
    return bool(torch.isfinite(norms).all())


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
