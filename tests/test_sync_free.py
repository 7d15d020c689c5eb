"""Training steps without a host sync: a faulty step is skipped on the device and found later.

A NaN injected into step k must leave the parameters (and the Polyak average) bit for bit as
step k - 1 left them, for fused optimisers (Adam, the default, and Adagrad: ``found_inf``) and
a non-fused one (RMSprop: the masked update), and the fault must still be named at its step.
The host reads of an epoch are counted with a dispatch mode that sees every ``.item()``,
``bool()``, ``float()`` of a tensor (``aten._local_scalar_dense``) and every op whose output
size depends on the data: their number must not grow with the number of steps.
"""

from __future__ import annotations

import pyro
import pytest
import torch
from conftest import small
from torch.utils._python_dispatch import TorchDispatchMode

from pyrovae import registry
from pyrovae.build import build_model
from pyrovae.config import RunConfig
from pyrovae.data import load_dataset
from pyrovae.trainer import Trainer, TrainingError

BASE = dict(
    dataset="digits", hidden=[32], latent_dim=4, batch_size=50, iw_samples=0, seed=1, epochs=2
)
STEPS_PER_EPOCH = 26  # 1297 digits in batches of 50


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture
def rmsprop():
    """A registered optimiser without a fused kernel."""
    registry.OPTIMIZERS.register("rmsprop", torch.optim.RMSprop)
    yield "rmsprop"
    registry.OPTIMIZERS.unregister("rmsprop")


def _trainer(data, **options) -> Trainer:
    config = RunConfig.from_dict({**BASE, **options}).for_data(data.binary)
    pyro.set_rng_seed(config.seed)
    model, guide = build_model(config, data.shape)
    return Trainer(config, data, model, guide)


class _PoisonGradient(torch.autograd.Function):
    """The identity, whose backward pass returns infinity: a finite loss, a faulty gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("inf"))


def _inject(trainer: Trainer, at: int, kind: str) -> dict:
    """Make the ``at``-th loss computed (1-based) faulty; record what stood before it."""
    seen: dict = {"calls": 0}
    loss_of = trainer._loss

    def faulty(x, n):
        seen["calls"] += 1
        if seen["calls"] != at:
            return loss_of(x, n)
        seen["params"] = [p.detach().clone() for p in trainer._parameters]
        seen["state"] = [
            v.clone()
            for s in trainer.optimizer.state.values()
            for v in s.values()
            if torch.is_tensor(v)
        ]
        if trainer.average is not None:
            seen["average"] = [a.clone() for a in trainer.average.average]
        loss = loss_of(x, n)
        if kind == "loss":
            return loss * float("nan")
        weight = trainer.model.decoder[0].weight
        return loss + 0.0 * _PoisonGradient.apply(weight.sum())

    trainer._loss = faulty
    return seen


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int32 if t.element_size() == 4 else torch.int64)


def _same_bits(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(_bits(x), _bits(y)) for x, y in zip(a, b))


@pytest.mark.parametrize("kind", ["loss", "gradient"])
@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "rmsprop"])
def test_a_faulty_step_leaves_the_parameters_of_the_step_before_bit_for_bit(
    digits, kind, optimizer, request
):
    if optimizer == "rmsprop":
        request.getfixturevalue("rmsprop")
    trainer = _trainer(digits, optimizer=optimizer, ema_decay=0.9)
    assert trainer.guard.fused == (optimizer != "rmsprop")  # both ways of skipping are tested
    seen = _inject(trainer, at=5, kind=kind)
    with pytest.raises(TrainingError, match=r"at epoch 1, step 5; the parameters were not"):
        trainer.train_pass()
    # the check came at the epoch's end: every step ran, none waited for the host
    assert seen["calls"] == STEPS_PER_EPOCH
    assert _same_bits([p.detach() for p in trainer._parameters], seen["params"])
    assert _same_bits(trainer.average.average, seen["average"])
    if optimizer != "rmsprop":  # a fused kernel leaves its state alone as well
        state = [v for s in trainer.optimizer.state.values() for v in s.values()]
        assert _same_bits(state, seen["state"])


def test_the_check_comes_every_n_steps_when_asked(digits):
    trainer = _trainer(digits, nan_check_every=3)
    seen = _inject(trainer, at=5, kind="loss")
    with pytest.raises(TrainingError, match=r"epoch 1, step 5;"):
        trainer.train_pass()
    assert seen["calls"] == 6  # found by the check after steps 4-6
    assert _same_bits([p.detach() for p in trainer._parameters], seen["params"])


def test_a_rollback_restarts_the_epoch_from_the_good_state(digits):
    trainer = _trainer(digits, nan_policy="rollback")
    _inject(trainer, at=STEPS_PER_EPOCH + 3, kind="loss")
    trainer.fit()
    assert (
        len(trainer.rolled_back) == 1
        and f"epoch 2, step {STEPS_PER_EPOCH + 3}" in (trainer.rolled_back[0])
    )
    assert trainer.rollbacks == 1 and trainer.epoch == 2
    assert trainer.step == 2 * STEPS_PER_EPOCH
    for p in trainer._parameters:
        assert torch.isfinite(p).all()


class _HostReads(TorchDispatchMode):
    """Counts the ops that make the host wait for the device: reading a value
    (``.item()``, ``bool()``, ``float()``, ``int()``) and ops whose output size depends on
    the data (``nonzero``, boolean-mask indexing, ``unique``)."""

    OPS = {
        "_local_scalar_dense",
        "nonzero",
        "masked_select",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "repeat_interleave",
    }

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in self.OPS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _host_reads_in_an_epoch(data, monkeypatch, **options) -> int:
    trainer = _trainer(data, **options)
    trainer.train_pass()  # the optimiser's state is created; warm-up
    reads = _HostReads()
    # tolist() and numpy() read tensors without dispatching an op: count them too
    for name in ("tolist", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            reads.count += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    with reads:
        trainer.train_pass()
    monkeypatch.undo()
    return reads.count


def test_an_epoch_reads_the_device_a_fixed_number_of_times_not_once_per_step(digits, monkeypatch):
    short = small(digits, 200, 50)  # 4 steps
    long = small(digits, 800, 50)  # 16 steps
    reads = {n: _host_reads_in_an_epoch(d, monkeypatch) for n, d in ((4, short), (16, long))}
    assert reads[4] == reads[16] and 1 <= reads[16] <= 3, reads
    # the probe sees per-step reads where there are some: a check after every step
    every = _host_reads_in_an_epoch(long, monkeypatch, nan_check_every=1)
    assert every >= 16 + reads[16] - 1, every
