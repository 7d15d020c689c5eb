"""Training throughput (data points per second) on whatever device it is given.

Times full training steps of pyrovae's trainer — fast path, the default
objective (L^B), Adam — on static binarised MNIST, after a warm-up, and
reports the median over several timed windows. On CUDA the batches are taken
from pinned memory with non-blocking copies and the clock is read after a
``torch.cuda.synchronize()``, so the number is the device's, not the launch
queue's. The first GPU this project touches gives a number at once:

    python benchmarks/throughput.py --device cuda --batch-size 256
    python benchmarks/throughput.py --device cpu --out benchmarks/results/throughput_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import pyro
import torch

from pyrovae.build import build_model
from pyrovae.config import RunConfig
from pyrovae.data import load_dataset
from pyrovae.device import DeviceError, resolve_device
from pyrovae.train import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--latent", type=int, default=50)
    parser.add_argument("--objective", default="meanfield")
    parser.add_argument("--particles", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except DeviceError as e:
        raise SystemExit(f"error: {e}") from None
    data = load_dataset("mnist-binarized", data_dir=args.data_dir)
    config = RunConfig(
        dataset=data.name,
        likelihood="bernoulli",
        hidden=[args.hidden],
        latent_dim=args.latent,
        batch_size=args.batch_size,
        objective=args.objective,
        particles=args.particles,
        device=str(device),
        epochs=1,
    )
    pyro.set_rng_seed(0)
    model, guide = build_model(config, data.data_dim)
    trainer = Trainer(config, data, model, guide)
    n = data.train.shape[0]
    batches = trainer._batches(0)
    rates = []
    for window in range(args.windows + 1):  # window 0 is the warm-up
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            x = next(batches, None)
            if x is None:
                batches = trainer._batches(window)
                x = next(batches)
            loss = trainer.loss_fn(x, num_data=n)
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trainer.optimizer.step()
        _sync(device)
        if window:
            rates.append(args.steps * args.batch_size / (time.perf_counter() - start))
    report = {
        "benchmark": "throughput",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "network": f"784-{args.hidden}-{args.latent}, Bernoulli, {args.objective}, "
        f"L={args.particles}",
        "points_per_second_median": statistics.median(rates),
        "points_per_second": rates,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_cuda_mb": torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else None,
        "torch": torch.__version__,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
