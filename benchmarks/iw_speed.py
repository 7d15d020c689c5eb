"""Throughput of importance-weighted evaluation, and the projected time of the headline one.

``iw_log_likelihood(model, guide, x, K)`` — called as the README calls it, with no
chunk or batch size — chooses its passes from K, N and D within a memory budget
(:func:`pyrovae.infer.evaluation.pass_sizes`) and, for pyrovae's own model/guide pairs,
computes the weights without Pyro traces (the encoder once per batch, the prior once,
a Bernoulli MLP decoder in reused buffers). Three references on the same points:

* ``traced``: the same passes through Pyro's vectorised traces (the general path); it
  consumes the same random numbers, so its estimates agree to rounding
  (``max_abs_difference_nats``);
* ``explicit_100x50``: ``chunk_size=100, batch_size=50``, the sizes callers used to pass;
* ``loop``: one sample at a time through traces, as a naive implementation would, on
  ``--loop-points`` points × ``--loop-samples`` samples (throughput only).

The sides are interleaved ``--repeats`` times; the JSON reports medians of wall and
process-CPU seconds, point-samples per second, points per second at K and the projected
wall time of the headline evaluation (10 000 test points × 5000 samples) on this machine,
with ``os.getloadavg()`` before and after (other jobs slow every side alike).

    python benchmarks/iw_speed.py --out benchmarks/results/iw_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import pyro
import torch
from _report import write_report

from pyrovae.data import load_dataset
from pyrovae.guides import DiagonalGaussian
from pyrovae.infer.evaluation import chunked_log_mean_exp, iw_log_likelihood, pass_sizes
from pyrovae.infer.importance import log_importance_weights
from pyrovae.models import VAE, Bernoulli

#: the headline evaluation the projection is for: test points × samples
HEADLINE = (10_000, 5000)


def traced_weights(model, guide):
    """``log_weights(xb, k)`` through Pyro's vectorised traces (the general path)."""
    return lambda xb, k: log_importance_weights(model, guide, xb, num_samples=k)[0]


def timed(fn, times: dict, name: str) -> torch.Tensor:
    """Run ``fn`` once from seed 0; append its wall and CPU seconds to ``times[name]``."""
    pyro.set_rng_seed(0)
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    times[name]["wall"].append(time.perf_counter() - wall)
    times[name]["cpu"].append(time.process_time() - cpu)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--loop-points", type=int, default=5)
    parser.add_argument("--loop-samples", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--latent", type=int, default=40)
    parser.add_argument("--activation", default="relu", help="the pythae network's: relu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/iw_speed.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    data = load_dataset("mnist-binarized", data_dir=args.data_dir)
    test = data.test.to(device)
    x = test[:: max(1, len(test) // args.points)][: args.points]  # spread over the classes
    x_loop = test[:: max(1, len(test) // args.loop_points)][: args.loop_points]
    pyro.set_rng_seed(0)
    net = dict(hidden=[args.hidden], activation=args.activation)
    model = VAE(784, args.latent, likelihood=Bernoulli(784), **net).to(device)
    guide = DiagonalGaussian(784, args.latent, **net).to(device)
    k = args.samples
    chunk, batch = pass_sizes(k, num_points=x.shape[0], point_bytes=x[0].numel() * x.element_size())
    traced = traced_weights(model, guide)
    sides = {
        "default": lambda: iw_log_likelihood(model, guide, x, k),
        "traced": lambda: chunked_log_mean_exp(traced, x, k),
        "explicit_100x50": lambda: iw_log_likelihood(
            model, guide, x, k, chunk_size=100, batch_size=50
        ),
        "loop": lambda: chunked_log_mean_exp(traced, x_loop, args.loop_samples, 1, 1),
    }
    times = {name: {"wall": [], "cpu": []} for name in sides}
    estimates = {}
    for _ in range(args.repeats):
        for name, fn in sides.items():
            estimates[name] = timed(fn, times, name)
    work = {name: x.shape[0] * k for name in sides}
    work["loop"] = x_loop.shape[0] * args.loop_samples
    median = {name: {c: statistics.median(v) for c, v in t.items()} for name, t in times.items()}
    rate = {name: work[name] / median[name]["wall"] for name in sides}
    points_per_second = rate["default"] / k
    n, big_k = HEADLINE
    report = {
        "benchmark": "iw_speed",
        "network": f"784-{args.hidden}-{args.latent}, {args.activation}, Bernoulli, diagonal "
        "guide, N(0, I) prior (untrained)",
        "points": x.shape[0],
        "samples": k,
        "default_pass": {"chunk": chunk, "batch": batch},
        "loop": {"points": x_loop.shape[0], "samples": args.loop_samples},
        "device": str(device),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "seconds": times,
        "median_seconds": median,
        "throughput_point_samples_per_second": rate,
        "speedup_over_traced": rate["default"] / rate["traced"],
        "speedup_over_explicit_100x50": rate["default"] / rate["explicit_100x50"],
        "speedup_over_loop": rate["default"] / rate["loop"],
        "max_abs_difference_nats": (estimates["default"] - estimates["traced"]).abs().max().item(),
        "points_per_second_at_samples": points_per_second,
        f"projected_seconds_{n}_points_{big_k}_samples": n * big_k / rate["default"],
        f"projected_cpu_seconds_{n}_points_{big_k}_samples": n
        * big_k
        / (work["default"] / median["default"]["cpu"]),
    }
    write_report(report, args.out)
    print(json.dumps({k: v for k, v in report.items() if k != "seconds"}, indent=2))


if __name__ == "__main__":
    main()
