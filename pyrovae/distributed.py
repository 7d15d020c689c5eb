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
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    """Where this process sits: ``rank`` of ``world_size`` (1 when not distributed)."""

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


def wrap(module: torch.nn.Module) -> torch.nn.Module:
    """``DistributedDataParallel(module)``, without re-broadcasting buffers every step.

    The buffers (input scales, frozen constants) are equal on every process; DDP's
    option for that was renamed in torch 2.13 (``broadcast_buffers`` →
    ``forward_sync_buffers``).
    """
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    params = inspect.signature(DistributedDataParallel.__init__).parameters
    option = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return DistributedDataParallel(module, **{option: False})


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
