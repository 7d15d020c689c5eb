"""Exponential moving average of the trained parameters (Polyak averaging).

After every optimiser step the average θ̄ moves towards the parameters θ,

    θ̄ ← θ̄ + (1 − d_t) · (θ − θ̄),   d_t = min(d, (1 + t) / (10 + t)) at update t = 0, 1, …,

starting from the initial parameters, so θ̄ averages the last ≈ 1 / (1 − d) iterates.
The warm-up d_t (the ``num_updates`` rule of TensorFlow's ``ExponentialMovingAverage``)
forgets the untrained initial weights within tens of steps, where a plain d = 0.9995
would keep e^(−1.25) ≈ 29 % of them after five epochs of 500 steps.
Evaluating θ̄ instead of the last iterate removes most of the optimiser's noise
without lowering the learning rate (Polyak & Juditsky 1992; Ruppert 1988): at a
learning rate that still explores, the average sits in the middle of the region the
iterates wander in. Measured on static binarised MNIST (docs/results.md): the average
at a constant learning rate reaches by epoch ≈ 180 the validation ELBO that decaying the
rate at epochs 200 and 250 reaches by 300, and the same test log-likelihood; it does not
generalise better.

Assumptions: only parameters are averaged (buffers, such as a guide's input scale,
are constants of the run); the average lives beside the model and guide and is
swapped into them for evaluation only (:meth:`WeightAverage.applied`), so training
always steps the raw parameters.

.. warning:: θ̄ is not an iterate of the optimiser: a run's checkpoint keeps both (the
    raw parameters to resume from), while ``pyrovae.train.train`` returns, and
    ``pyrovae.run.load_run`` loads, the model and guide at θ̄ when the run averaged
    (``ema_decay > 0``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class WeightAverage:
    """The exponential moving average of the parameters of ``modules``.

    :param modules: the modules whose parameters are averaged, by name (``model``,
        ``guide``); the names key :meth:`state_dict`.
    :param decay: d in (0, 1); the average spans ≈ 1 / (1 − d) steps.

    Example:

    >>> import torch
    >>> from pyrovae.averaging import WeightAverage
    >>> net = torch.nn.Linear(1, 1, bias=False)
    >>> _ = torch.nn.init.zeros_(net.weight)
    >>> average = WeightAverage({"model": net}, decay=0.5)  # d_t = 0.1, 0.18, 0.25 (warm-up)
    >>> for value in (1.0, 2.0, 3.0):
    ...     with torch.no_grad():
    ...         _ = net.weight.fill_(value)  # stands in for an optimiser step
    ...     average.update()
    >>> with average.applied():  # evaluate at the average
    ...     round(net.weight.item(), 4)
    2.7
    >>> net.weight.item()  # training goes on from the raw parameters
    3.0
    """

    def __init__(self, modules: dict[str, nn.Module], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay!r}")
        self.decay = float(decay)
        named = [(m, n, p) for m, module in modules.items() for n, p in _parameters(module)]
        self.names = [(m, n) for m, n, _ in named]
        self.params = [p for _, _, p in named]
        self.average = [p.detach().clone() for p in self.params]
        self.updates = 0

    @torch.no_grad()
    def update(self, skipped: torch.Tensor | None = None) -> None:
        """One step of the average, after an optimiser step.

        :param skipped: a scalar tensor, nonzero when the optimiser step was skipped
            (a faulty step, :class:`pyrovae.faults.StepGuard`); the average then stays
            exactly as it was, decided on the device without a host sync. The update
            count still advances: skipped steps only occur between a fault and its
            detection, after which the run stops or rolls back to a saved average.
        """
        weight = 1.0 - min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        if skipped is None:
            for a, p in zip(self.average, self.params):
                a.lerp_(p.detach(), weight)
        else:
            keep = skipped == 0
            for a, p in zip(self.average, self.params):
                a.copy_(torch.where(keep, a.lerp(p.detach(), weight), a))
        self.updates += 1

    @torch.no_grad()
    def adopt(self) -> None:
        """Copy the average into the modules for good (after training)."""
        for p, a in zip(self.params, self.average):
            p.copy_(a)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Swap the average into the modules; the raw parameters come back on exit."""
        with torch.no_grad():
            raw = [p.detach().clone() for p in self.params]
        self.adopt()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, r in zip(self.params, raw):
                    p.copy_(r)

    def state_dict(self) -> dict:
        """``{"decay", "updates", "<module>": {parameter name: average}}`` (CPU tensors)."""
        out: dict = {"decay": self.decay, "updates": self.updates}
        for (module, name), a in zip(self.names, self.average):
            out.setdefault(module, {})[name] = a.detach().cpu().clone()
        return out

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (the decay is the run config's)."""
        for (module, name), a in zip(self.names, self.average):
            a.copy_(state[module][name])
        self.updates = int(state["updates"])


def _parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]


def apply_average(state: dict, modules: dict[str, nn.Module]) -> None:
    """Copy a checkpoint's averaged parameters (``state["average"]``) into ``modules``."""
    with torch.no_grad():
        for module_name, module in modules.items():
            params = dict(module.named_parameters())
            for name, value in state[module_name].items():
                params[name].copy_(value)
