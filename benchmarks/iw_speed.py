"""Throughput of importance-weighted evaluation: chunked vectorised samples vs a loop over k.

``iw_log_likelihood`` draws ``chunk_size`` of the K importance samples in one
vectorised pass, and for pyrovae's own model/guide pairs computes the weights
without Pyro traces (``fast_log_weights``). Two references: the same chunks
through Pyro's vectorised traces (``traced``), and one sample at a time in a
Python loop (``loop``), as a naive implementation would. All three walk the
points in batches of ``--batch-size`` (100 samples × 50 points = 5000 rows per
pass keeps every tensor under glibc's 32 MB mmap threshold). All consume the same
random numbers, so their estimates agree to rounding; the JSON reports the
throughput (data points × samples per second) of each, the ratios, the largest
difference between the estimates, and the projected time of the headline
evaluation (10 000 test points × 5000 samples).

    python benchmarks/iw_speed.py --out benchmarks/results/iw_speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pyro
import torch
from _report import write_report

from pyrovae.data import load_dataset
from pyrovae.guides import DiagonalGaussian
from pyrovae.infer.evaluation import chunked_log_mean_exp, iw_log_likelihood
from pyrovae.infer.importance import log_importance_weights
from pyrovae.models import VAE, Bernoulli


def traced_weights(model, guide):
    """``log_weights(xb, k)`` through Pyro's vectorised traces (the general path)."""
    return lambda xb, k: log_importance_weights(model, guide, xb, num_samples=k)[0]


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(repeats):
        pyro.set_rng_seed(0)
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--chunk-size", type=int, default=100)
    parser.add_argument(
        "--batch-size", type=int, default=50, help="data points per vectorised pass"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--latent", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/iw_speed.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("mnist-binarized", data_dir=args.data_dir)
    x = data.test[:: max(1, len(data.test) // args.points)][: args.points].to(device)
    pyro.set_rng_seed(0)
    model = VAE(784, args.latent, hidden=[args.hidden], likelihood=Bernoulli(784)).to(device)
    guide = DiagonalGaussian(784, args.latent, hidden=[args.hidden]).to(device)
    k = args.samples
    traced = traced_weights(model, guide)
    t_vec, est_vec = timed(
        lambda: iw_log_likelihood(
            model, guide, x, k, chunk_size=args.chunk_size, batch_size=args.batch_size
        ),
        args.repeats,
    )
    t_traced, est_traced = timed(
        lambda: chunked_log_mean_exp(traced, x, k, args.chunk_size, args.batch_size), args.repeats
    )
    # the naive reference: one guide/model pass per sample k
    t_loop, est_loop = timed(
        lambda: chunked_log_mean_exp(traced, x, k, 1, args.batch_size), args.repeats
    )
    work = len(x) * k
    report = {
        "benchmark": "iw_speed",
        "network": f"784-{args.hidden}-{args.latent}, Bernoulli, diagonal guide",
        "points": len(x),
        "samples": k,
        "chunk_size": args.chunk_size,
        "batch_size": args.batch_size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "median_seconds": {"vectorised": t_vec, "traced": t_traced, "loop": t_loop},
        "throughput_point_samples_per_second": {
            "vectorised": work / t_vec,
            "traced": work / t_traced,
            "loop": work / t_loop,
        },
        "speedup": t_loop / t_vec,
        "speedup_over_traced": t_traced / t_vec,
        "max_abs_difference_nats": max(
            (est_vec - est_loop).abs().max().item(), (est_vec - est_traced).abs().max().item()
        ),
        "projected_seconds_10k_points_5000_samples": 10_000 * 5000 / (work / t_vec),
    }
    write_report(report, args.out)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
