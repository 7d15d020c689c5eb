"""Peak resident memory: a full-MNIST training run, and IW evaluation against its chunk size.

Each measurement runs in a fresh Python process, which reports its own peak
resident set size (``ru_maxrss``) when it ends, so one measurement cannot
inflate the next:

* ``train``: ``pyrovae.train.train`` on the 60 000 MNIST training images
  (784-400-50, a Bernoulli likelihood on the grey values as in AEVB, L^B,
  batch 100) for ``--epochs`` epochs, with its final test evaluation (IW
  log-likelihood at 100 samples) and plots — everything ``pyrovae train``
  does. Target: at most 1.5 GB.
* ``iw``: ``iw_log_likelihood`` on 1000 test images at K = 1000 with a fixed
  batch of 200 points and chunk sizes 10, 100, 1000; the peak above the
  process's size before evaluating grows with ``chunk × batch`` (the
  ``(chunk, batch, 784)`` logits), not with K.

    python benchmarks/memory.py --out benchmarks/results/memory.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

TRAIN = """
import resource, sys, torch
from pyrovae.train import train
torch.set_num_threads(1)
train(dict(dataset="mnist", likelihood="bernoulli", latent_dim=50, hidden=[400],
           batch_size=100, epochs={epochs}, iw_samples=100, threads=1, relaxed_bernoulli=True),
      sys.argv[1],
      overwrite=True)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""

IW = """
import resource, sys, torch, pyro
from pyrovae.data import load_dataset
from pyrovae.guides import DiagonalGaussian
from pyrovae.infer.evaluation import iw_log_likelihood
from pyrovae.models import VAE, Bernoulli
torch.set_num_threads(1)
x = load_dataset("mnist-binarized").test[:1000]
pyro.set_rng_seed(0)
model, guide = VAE(784, 50, hidden=[400], likelihood=Bernoulli(784)), DiagonalGaussian(784, 50)
iw_log_likelihood(model, guide, x[:10], 10)  # warm up the allocator and kernels
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
ll = iw_log_likelihood(model, guide, x, 1000, chunk_size={chunk}, batch_size=200)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(before, after, float(ll.mean()))
"""


def _run(code: str, *args: str) -> list[float]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"measurement failed:\n{done.stderr[-2000:]}")
    return [float(v) for v in done.stdout.split()[-3:] if v]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/memory.json"))
    args = parser.parse_args()
    mib = 2**20
    with tempfile.TemporaryDirectory() as tmp:
        peak = _run(TRAIN.format(epochs=args.epochs), str(Path(tmp) / "run"))[-1]
    iw = []
    for chunk in (10, 100, 1000):
        before, after, mean = _run(IW.format(chunk=chunk))
        iw.append(
            {
                "chunk_size": chunk,
                "batch_size": 200,
                "samples": 1000,
                "peak_rss_mib": after / mib,
                "peak_above_baseline_mib": (after - before) / mib,
                "logits_tensor_mib": chunk * 200 * 784 * 4 / mib,
                "mean_log_likelihood": mean,
            }
        )
        print(f"IW chunk {chunk:5d}: peak {after / mib:.0f} MiB (+{(after - before) / mib:.0f})")
    report = {
        "benchmark": "memory",
        "train": {
            "run": f"mnist 60000 train, 784-400-50, batch 100, {args.epochs} epoch(s), "
            "final IW at 100 samples, plots",
            "peak_rss_mib": peak / mib,
            "target_mib": 1.5 * 1024,
        },
        "iw": iw,
    }
    print(f"training run: peak {peak / mib:.0f} MiB (target 1536)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
