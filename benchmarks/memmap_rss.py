"""Peak resident memory of training from a ``.npy`` file kept on disk, against the file's size.

Each measurement runs in a fresh Python process, which reports its own resident set from
``/proc/self/status`` (Linux; ``ru_maxrss`` would include the parent's, as Linux keeps it across
``exec``):

1. it trains 20 steps on a small in-memory array first, so that what the first steps of any run
   allocate (Pyro's traces, autograd, the allocator) is part of its baseline, then resets its
   peak (``/proc/self/clear_refs``) and takes the resident set as the baseline;
2. it loads ``--size`` × ``--budget-mib`` of ``uint8`` 28 × 28 images from a ``.npy`` file with
   ``on_disk="always"`` (the header is opened with ``numpy.load(mmap_mode="r")``; the load-time
   checks and every batch read the rows they need with positional reads, see
   :mod:`pyrovae.data.files`) and 0.2 % of the points for each of valid and test;
3. it trains ``--steps`` steps of a 784-400-20 VAE at batch 100 through the trainer's own batch
   loop (``Trainer._batches`` and ``Trainer._step``: random batches over the whole file).

The file is written fresh for each size, so it sits in the page cache (which is not part of a
process's resident set). Target: every peak under the memory budget while the file is up to four
times larger. For contrast, the smallest file is also loaded into memory (``on_disk="never"``).

    python benchmarks/memmap_rss.py --out benchmarks/results/memmap_rss.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _report import write_report

CHILD = """
import json, sys, time
import numpy as np, pyro, torch
from pyrovae.build import build_model
from pyrovae.config import RunConfig
from pyrovae.data import load_dataset
from pyrovae.trainer import Trainer

torch.set_num_threads(1)
path, steps, on_disk, hidden, latent = sys.argv[1], int(sys.argv[2]), sys.argv[3], *sys.argv[4:6]
config = RunConfig(latent_dim=int(latent), hidden=[int(hidden)], batch_size=100,
                   likelihood="gaussian-fixed")

def status(key):  # this process's own resident set (ru_maxrss would include the parent's)
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith(key + ":"))

def run(data, steps):
    pyro.set_rng_seed(0)
    model, guide = build_model(config, data.shape)
    trainer = Trainer(config, data, model, guide)
    start = time.perf_counter()
    for i, x in enumerate(trainer._batches(0)):
        if i == steps:
            break
        trainer._step(x, data.train.shape[0])
    return time.perf_counter() - start

run(load_dataset(np.arange(2000 * 784, dtype=np.uint8).reshape(2000, 28, 28)), 20)
warm_peak = status("VmHWM")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the current resident set
before = status("VmRSS")
start = time.perf_counter()
data = load_dataset(path, on_disk=on_disk, valid_fraction=0.002, test_fraction=0.002)
load_seconds = time.perf_counter() - start
after_load = status("VmHWM")
train_seconds = run(data, steps)
print(json.dumps({"baseline": before, "after_load": after_load,
                  "peak": max(warm_peak, status("VmHWM")), "peak_since_baseline": status("VmHWM"),
                  "load_seconds": load_seconds, "train_seconds": train_seconds,
                  "on_disk": data.on_disk, "train_points": data.train.shape[0]}))
"""

MIB = 2**20


def write_npy(path: Path, nbytes: int) -> int:
    """A ``uint8`` ``(N, 28, 28)`` file of about ``nbytes`` bytes, written in blocks with plain
    writes (a map would make this process's resident set the file's size); returns N."""
    rows = nbytes // 784
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        header = {"descr": "|u1", "fortran_order": False, "shape": (rows, 28, 28)}
        np.lib.format.write_array_header_1_0(f, header)
        for start in range(0, rows, 1 << 16):
            stop = min(start + (1 << 16), rows)
            f.write(rng.integers(0, 256, (stop - start, 28, 28), dtype=np.uint8).tobytes())
    return rows


def measure(path: Path, steps: int, on_disk: str, hidden: int = 400, latent: int = 20) -> dict:
    """Resident memory of a fresh process that loads ``path`` and trains ``steps`` steps of
    a 784-``hidden``-``latent`` VAE (the keys of :data:`CHILD`'s JSON line, in bytes)."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(steps), on_disk, str(hidden), str(latent)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mib", type=float, default=1024)
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.5, 1, 2, 4])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=None, help="folder for the files")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/memmap_rss.json"))
    args = parser.parse_args()
    budget = args.budget_mib * MIB
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for size in sorted(args.sizes):
            path = Path(tmp) / f"data-{size:g}.npy"
            points = write_npy(path, int(size * budget))
            modes = ("always", "never") if size == min(args.sizes) else ("always",)
            for on_disk in modes:
                m = measure(path, args.steps, on_disk)
                row = {
                    "file_mib": path.stat().st_size / MIB,
                    "file_over_budget": path.stat().st_size / budget,
                    "points": points,
                    "on_disk": m["on_disk"],
                    "steps": args.steps,
                    "baseline_rss_mib": m["baseline"] / MIB,
                    "peak_rss_mib": m["peak"] / MIB,
                    "peak_above_baseline_mib": (m["peak_since_baseline"] - m["baseline"]) / MIB,
                    "peak_after_load_mib": m["after_load"] / MIB,
                    "load_seconds": m["load_seconds"],
                    "train_seconds": m["train_seconds"],
                    "under_budget": m["peak"] < budget,
                }
                rows.append(row)
                where = "disk  " if m["on_disk"] else "memory"
                print(
                    f"file {row['file_mib']:7.0f} MiB ({size:g} x budget), {where}: peak RSS "
                    f"{row['peak_rss_mib']:6.0f} MiB (+{row['peak_above_baseline_mib']:.0f} over "
                    f"baseline), load {m['load_seconds']:.1f} s, {args.steps} steps "
                    f"{m['train_seconds']:.1f} s"
                )
            path.unlink()
    report = {
        "benchmark": "memmap_rss",
        "run": f"784-400-20 VAE, batch 100, {args.steps} steps over uint8 28x28 images read from "
        "a .npy file (on_disk=always; valid and test 0.2 % each, in memory)",
        "memory_budget_mib": args.budget_mib,
        "measurements": rows,
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
