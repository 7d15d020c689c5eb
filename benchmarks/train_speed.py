"""Seconds per training epoch: pyrovae's trainer against a plain-PyTorch loop.

All sides train the same network (784-H-Z encoder and decoder, tanh, Bernoulli
likelihood) with the same analytic-KL loss (L^B), Adam, the same data order
and batch size on static binarised MNIST (50 000 training images). Two plain
loops: ``torch``, as users write it (default ``torch.optim.Adam``: the issue's
reference), and ``torch_fused``, with the fused Adam that pyrovae's trainer
picks (:func:`pyrovae.train.make_optimizer`), which isolates the overhead of
pyrovae's own machinery. Epochs are interleaved, the first side rotating, so
that drift in machine speed hits all; the JSON reports every epoch time, the
medians and the ratios (1.0 = no overhead), in wall-clock and in process CPU
time (the latter is robust to other jobs sharing the machine). Only the
training passes are timed, not evaluation.

    python benchmarks/train_speed.py --epochs 5 --batch-size 100 --batch-size 256 \
        --out benchmarks/results/train_speed.json
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from _report import write_report

from pyrovae.build import build_model
from pyrovae.config import RunConfig
from pyrovae.data import load_dataset
from pyrovae.train import Trainer


def plain_torch_epoch(model, guide, optimizer, train, batch_size, seed, epoch) -> float:
    """One epoch of the hand-written loss: BCE(x, decoder(z)) + KL(q ‖ N(0, I)), z = μ + σ ε."""
    n = train.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    enc, dec = guide.encoder, model.decoder
    start = time.perf_counter()
    device = next(enc.parameters()).device
    for idx in order.split(batch_size):
        x = train[idx].to(device, non_blocking=True)
        loc, raw = enc(x).split(guide.latent_dim, dim=-1)
        scale = F.softplus(raw) + guide.min_scale
        z = loc + scale * torch.randn_like(loc)
        logits = dec(z)
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1.0 - 2.0 * scale.log()).sum()
        loss = (nll + kl) * (n / x.shape[0])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(
    data, batch_size: int, epochs: int, hidden: int, latent: int, seed: int, device: str = "cpu"
) -> dict:
    config = RunConfig(
        dataset=data.name,
        likelihood="bernoulli",
        latent_dim=latent,
        hidden=[hidden],
        batch_size=batch_size,
        epochs=epochs,
        seed=seed,
        objective="meanfield",
        device=device,
    )
    pyro.set_rng_seed(seed)
    model, guide = build_model(config, data.data_dim)
    trainer = Trainer(config, data, model, guide)
    references = {}
    for name, fused in (("torch", False), ("torch_fused", True)):
        ref_model, ref_guide = build_model(config, data.data_dim)
        ref_model, ref_guide = ref_model.to(trainer.device), ref_guide.to(trainer.device)
        ref_model.load_state_dict(model.state_dict())
        ref_guide.load_state_dict(guide.state_dict())
        params = [*ref_model.parameters(), *ref_guide.parameters()]
        opt = torch.optim.Adam(params, lr=config.lr, **({"fused": True} if fused else {}))
        references[name] = (ref_model, ref_guide, opt)
    sides = ["pyrovae", *references]
    times = {k: [] for k in sides}
    cpu = {k: [] for k in sides}
    for epoch in range(epochs):
        for side in sides[epoch % 3 :] + sides[: epoch % 3]:  # rotate who goes first
            start_cpu = time.process_time()
            if side == "pyrovae":
                times[side].append(trainer.train_pass()[1])
            else:
                ref_model, ref_guide, opt = references[side]
                times[side].append(
                    plain_torch_epoch(
                        ref_model, ref_guide, opt, data.train, batch_size, seed, epoch
                    )
                )
            cpu[side].append(time.process_time() - start_cpu)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "batch_size": batch_size,
        "steps_per_epoch": math.ceil(data.train.shape[0] / batch_size),
        "pyrovae_optimizer": repr(trainer.optimizer.defaults.get("fused")),
        "seconds_per_epoch": times,
        "cpu_seconds_per_epoch": cpu,
        "median_seconds": med,
        "median_cpu_seconds": med_cpu,
        # the reference: the plain loop as users write it (default torch.optim.Adam)
        "ratio_pyrovae_over_torch": med["pyrovae"] / med["torch"],
        # pyrovae's own overhead: the plain loop with the same fused Adam that pyrovae uses
        "ratio_pyrovae_over_torch_fused": med["pyrovae"] / med["torch_fused"],
        # CPU time is what the process itself spent: robust to other jobs on a busy machine
        "cpu_ratio_pyrovae_over_torch": med_cpu["pyrovae"] / med_cpu["torch"],
        "cpu_ratio_pyrovae_over_torch_fused": med_cpu["pyrovae"] / med_cpu["torch_fused"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder with binarized_mnist/")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, action="append")
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--latent", type=int, default=50)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist-binarized", data_dir=args.data_dir)
    results = [
        measure(data, b, args.epochs, args.hidden, args.latent, args.seed, args.device)
        for b in (args.batch_size or [100, 256])
    ]
    report = {
        "benchmark": "train_speed",
        "network": f"784-{args.hidden}-{args.latent} (encoder and decoder), tanh, Bernoulli, L^B",
        "dataset": "mnist-binarized (50000 train)",
        "epochs_each": args.epochs,
        "threads": args.threads,
        "device": args.device,
        "results": results,
    }
    write_report(report, args.out)
    for r in results:
        print(
            f"batch {r['batch_size']:4d}: pyrovae {r['median_seconds']['pyrovae']:.2f} s, "
            f"torch {r['median_seconds']['torch']:.2f} s per epoch, "
            f"ratio {r['ratio_pyrovae_over_torch']:.3f} "
            f"(CPU time {r['cpu_ratio_pyrovae_over_torch']:.3f}); "
            f"against torch with fused Adam {r['median_seconds']['torch_fused']:.2f} s, "
            f"ratio {r['ratio_pyrovae_over_torch_fused']:.3f}"
        )


if __name__ == "__main__":
    main()
