r"""Data-parallel training on ``torch.distributed`` (DistributedDataParallel).

Launch any training command under ``torchrun``; nothing else changes::

    torchrun --standalone --nproc_per_node 2 -m pyrovae train --dataset mnist-binarized ...

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`setup`
reads them and joins the process group (gloo on CPU, NCCL on CUDA, where
process ``LOCAL_RANK`` takes device ``cuda:LOCAL_RANK``). Then, in
:class:`pyrovae.train.Trainer`:

* every process draws the **same** minibatch of ``B`` points (the data order
  is seeded by ``(seed, epoch)``) and keeps its shard, ``x.tensor_split(W)[rank]``;
* the loss module (Pyro's ``ELBOModule`` around the model and guide) is wrapped
  in :class:`torch.nn.parallel.DistributedDataParallel`, which averages the
  gradients over the ``W`` processes during ``backward``;
* shard ``r`` of ``B_r`` points gives the Pyro loss ``(N/B_r) Σ_{i∈r} ℓ_i``;
  weighted by ``W B_r / B`` the average over processes is ``(N/B) Σ_{i∈B} ℓ_i``,
  the single-process loss of the whole batch, so its gradient is the same
  (up to the Monte Carlo noise, which each process draws for its own shard);
* only rank 0 evaluates, writes the run folder and prints; a checkpoint holds
  no trace of the number of processes, so it resumes on any number of them.

Process ``r`` re-seeds the global torch RNG at each epoch from ``(seed, epoch,
r)``, so shards do not share noise and a run is reproducible for a fixed
number of processes; a resumed run repeats the uninterrupted one when it
resumes at an epoch's end (resumed mid-epoch, after a signal, the rest of
that epoch draws other noise). (A single process keeps its usual RNG stream, which is
why a W-process run equals the single-process run only where the noise does
not matter — the test uses a near-deterministic guide.)

**Batch statistics are global.** BILBO's floating prior (``m_j``, the batch
mean of ``μ_j²``) and BAGGINS's σ² (residual mean square and signal variance)
are statistics of the *whole* minibatch, not of one shard. Inside the forward
pass of the module that :func:`wrap` returns they are computed as
:class:`torch.nn.SyncBatchNorm` computes its moments: each process sums over
its shard, the sums and counts are all-reduced (:func:`sum_over_processes`,
whose backward all-reduces the gradient, so gradients flow through the
statistics to every shard), and the ratio is taken. With DDP averaging the
gradients, a ``W``-process step is then the single-process step on the
combined batch for every objective, shards of one point included. Outside that
forward pass — one process, evaluation on rank 0, a module wrapped in a plain
``DistributedDataParallel`` — nothing is reduced (see
:func:`synchronized_batch_statistics` to opt in elsewhere), and the
single-process computation is the unchanged one.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Context:
    """Where this process sits: ``rank`` of ``world_size`` (1 when not distributed).

    Example:

    >>> import torch
    >>> from pyrovae.distributed import from_environment
    >>> context = from_environment()  # outside torchrun: one process
    >>> context, context.is_main, context.enabled
    (Context(rank=0, world_size=1, local_rank=0), True, False)
    >>> part, weight = context.shard(torch.zeros(10, 3))  # the whole batch, weight 1
    >>> part.shape, weight
    (torch.Size([10, 3]), 1.0)
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that evaluates, writes and prints."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of ``value`` over all processes (a copy; ``value`` itself unchanged)."""
        out = value.detach().clone()
        if self.enabled:
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process when ``flag`` is true on any of them."""
        if not self.enabled:
            return flag
        return bool(self.sum(torch.tensor(float(flag), device=device)) > 0)

    def shard(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """This process's rows of the batch ``x`` and the weight ``W B_r / B`` of its loss."""
        if not self.enabled:
            return x, 1.0
        part = x.tensor_split(self.world_size)[self.rank]
        return part, self.world_size * part.shape[0] / x.shape[0]


def from_environment() -> Context:
    """The context that ``torchrun``'s environment variables describe (default: one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    return Context(
        rank=int(os.environ.get("RANK", "0")),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def setup(device: torch.device) -> Context:
    """Join the process group that ``torchrun`` describes (once); return this process's place.

    :param device: the device the run asked for; CUDA selects NCCL and ``cuda:LOCAL_RANK``.
    """
    ctx = from_environment()
    if ctx.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(backend=backend)
    return ctx


def local_device(device: torch.device, ctx: Context) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` under CUDA, else ``device``."""
    if ctx.enabled and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


#: the process group batch statistics are reduced over, while one is in effect
_STATISTICS_GROUP: contextvars.ContextVar[tuple | None] = contextvars.ContextVar(
    "pyrovae_statistics_group", default=None
)


@contextlib.contextmanager
def synchronized_batch_statistics(group=None) -> Iterator[None]:
    """Within this context, batch statistics are sums over the processes of ``group``.

    The module :func:`wrap` returns enters it around every forward pass; enter it
    yourself around the forward pass of a module you wrap in DDP another way. It has
    an effect only when ``torch.distributed`` is initialised and the group has more
    than one process; every process of the group must then compute the same
    statistics in the same order (as they do in one DDP forward pass).

    :param group: the process group (default: the world).
    """
    token = _STATISTICS_GROUP.set((group,))
    try:
        yield
    finally:
        _STATISTICS_GROUP.reset(token)


def synchronizing() -> bool:
    """Whether batch statistics are being reduced across processes here and now."""
    active = _STATISTICS_GROUP.get()
    return (
        active is not None
        and dist.is_available()
        and dist.is_initialized()
        and dist.get_world_size(active[0]) > 1
    )


class _SumOverProcesses(torch.autograd.Function):
    """``all_reduce(SUM)`` with its gradient: the backward pass all-reduces the gradient.

    Process ``r``'s input ``s_r`` enters every process's output ``Σ_r s_r``, so the
    gradient of the sum of all processes' losses with respect to ``s_r`` is the sum of
    their output gradients (as in ``torch.nn.SyncBatchNorm``).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def sum_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the processes (differentiably) when :func:`synchronizing`.

    Otherwise ``tensor`` itself. Every process must pass a tensor of the same shape.
    """
    if not synchronizing():
        return tensor
    return _SumOverProcesses.apply(tensor, _STATISTICS_GROUP.get()[0])


class SynchronizedDDP(DistributedDataParallel):
    """``DistributedDataParallel`` whose forward pass reduces batch statistics globally."""

    def forward(self, *args, **kwargs):
        with synchronized_batch_statistics(self.process_group):
            return super().forward(*args, **kwargs)


def wrap(module: torch.nn.Module) -> torch.nn.Module:
    """``SynchronizedDDP(module)``, without re-broadcasting buffers every step.

    Its forward pass runs inside :func:`synchronized_batch_statistics`, so BILBO's
    and BAGGINS's batch statistics are those of the combined batch (module
    docstring). The buffers (input scales, frozen constants) are equal on every
    process; DDP's option for that was renamed in torch 2.13 (``broadcast_buffers``
    → ``forward_sync_buffers``).
    """
    import inspect

    params = inspect.signature(DistributedDataParallel.__init__).parameters
    option = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return SynchronizedDDP(module, **{option: False})


def check_batches(num_data: int, batch_size: int, ctx: Context) -> None:
    """Every batch must give each process at least one point.

    :raises ValueError: naming the batch that is too small and the fix.
    """
    if not ctx.enabled:
        return
    last = num_data % batch_size or batch_size
    smallest = min(batch_size, num_data, last)
    if smallest < ctx.world_size:
        raise ValueError(
            f"with {ctx.world_size} processes every batch needs at least {ctx.world_size} "
            f"points, but a batch has {smallest} ({num_data} points in batches of "
            f"{batch_size}); choose a batch size whose remainder is 0 or >= {ctx.world_size}"
        )


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
