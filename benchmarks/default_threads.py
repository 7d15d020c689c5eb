"""Wall time of the README's main job with pyrovae's default thread count and with fixed ones.

The job is the README's first command, ``pyrovae train --latent 2 --epochs 100 --out
runs/quickstart`` (digits, 64-400-2, batch 100; training, the summary and the plots),
shortened to ``--epochs``. Each run is a fresh process, so OpenMP starts with that
process's settings, run as a user runs it:

* ``default``: no ``--threads`` and no ``OMP_NUM_THREADS``, so pyrovae chooses
  (:mod:`pyrovae.resources`); the count it chose is read back from the run's config.json;
* ``threads=N``: ``--threads N`` for each ``--threads`` given (default 1 and 2);
* ``before``, with ``--before CHECKOUT``: the same command run by the pyrovae of another
  checkout (e.g. ``git worktree add /tmp/old <commit>``), with no ``--threads``: what the
  default was there (before pyrovae chose threads: torch's one per core, OpenMP's own
  waiting). Its ``config.json`` records no count, so ``threads`` is None.

``OMP_NUM_THREADS`` and ``OMP_WAIT_POLICY`` are removed from every run's environment, so
each gets the command line's own OpenMP settings. Two conditions:

* ``quiet``: nothing added. The load average before each run is recorded: a machine
  that other jobs keep busy is not quiet, and the numbers say so;
* ``loaded``: beside a competing process that spins a one-thread 256 × 256 matrix
  product loop (one core busy), started ``--load-warmup`` seconds before.

Variants are interleaved, their order rotating with each repeat, so that drift in the
machine's speed hits all. The JSON holds every wall time and the child's CPU time
(user + system), the medians, and per condition the ratio of each variant's median to
the best fixed count's (``default_over_best`` 1.0: the default is as fast as the best
fixed choice).

    python benchmarks/default_threads.py --epochs 100 --repeats 3 \\
        --out benchmarks/results/default_threads.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import write_report

JOBS = {
    # the README's main job (its first lines), --epochs aside
    "readme": ["--latent", "2"],
    # the other side of the rule: ~4e8 FLOPs a step, two threads when two cores are idle
    "mnist": ["--dataset", "mnist-binarized", "--latent-dim", "40", "--iw-samples", "0"],
}

#: one core kept busy: a one-thread matrix product loop
SPIN = (
    "import numpy as np\na = np.random.rand(256, 256).astype(np.float32)\nwhile True:\n    a @ a\n"
)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _environment() -> dict[str, str]:
    """The caller's environment without its OpenMP settings: the command line's own apply."""
    return {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}


def run_job(job: list[str], epochs: int, threads: int | Path | None, folder: Path) -> dict:
    """One run of the job in a fresh process: wall and CPU seconds, the threads it used.

    :param threads: ``--threads``; None for the default; a path: the default of the
        pyrovae checkout there (whose command line has ``--no-progress``, not ``--quiet``).
    """
    command = [sys.executable, "-m", "pyrovae", "train", *job, "--epochs", str(epochs)]
    command += ["--out", str(folder), "--overwrite", "--seed", "0"]
    env, cwd = _environment(), None
    if isinstance(threads, Path):  # an earlier command line: --no-progress, no --quiet
        env["PYTHONPATH"] = str(threads)
        cwd = threads  # python -m puts the working directory first on sys.path
        command.append("--no-progress")
    else:
        command.append("--quiet")
        if threads is not None:
            command += ["--threads", str(threads)]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    error = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {error.strip()[-500:]}")
    config = json.loads((folder / "config.json").read_text())["config"]
    return {
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "threads": config.get("threads"),
        "load_before": load,
    }


def measure(condition: str, variants: dict, job, epochs: int, repeats: int, work: Path) -> dict:
    """Every variant ``repeats`` times, interleaved; medians and ratios to the best fixed count."""
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            result = run_job(job, epochs, variants[name], work / f"{condition}-{name}")
            runs[name].append(result)
            print(
                f"{condition:6s} {name:10s} {result['seconds']:7.2f} s "
                f"(CPU {result['cpu_seconds']:.2f} s, threads {result['threads']}, "
                f"load {result['load_before']:.2f})",
                flush=True,
            )
    medians = {name: statistics.median(x["seconds"] for x in rs) for name, rs in runs.items()}
    best = min(v for name, v in medians.items() if name.startswith("threads="))
    return {
        "runs": runs,
        "median_seconds": medians,
        "ratio_to_best_fixed": {name: v / best for name, v in medians.items()},
        "default_over_best": medians["default"] / best,
        **({"before_over_best": medians["before"] / best} if "before" in medians else {}),
        "default_threads": sorted({x["threads"] for x in runs["default"]}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="the README's job has 100")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant")
    parser.add_argument(
        "--threads", type=int, action="append", help="fixed counts to compare [1 and 2]"
    )
    parser.add_argument("--job", choices=sorted(JOBS), default="readme")
    parser.add_argument(
        "--conditions", default="quiet,loaded", help="comma-separated: quiet, loaded"
    )
    parser.add_argument(
        "--load-warmup", type=float, default=10.0, help="seconds the competitor runs first"
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a checkout of an earlier pyrovae: also time its default (variant 'before')",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/default_threads.json"))
    args = parser.parse_args(argv)
    conditions = [c for c in args.conditions.split(",") if c]
    unknown = set(conditions) - {"quiet", "loaded"}
    if unknown:
        parser.error(f"unknown condition {sorted(unknown)[0]!r}: use quiet and/or loaded")
    variants: dict[str, int | None] = {"default": None}
    variants.update({f"threads={n}": n for n in (args.threads or [1, 2])})
    if args.before is not None:
        if not (args.before / "pyrovae" / "__init__.py").exists():
            parser.error(f"--before {args.before}: no pyrovae package there; pass a checkout")
        variants["before"] = args.before.resolve()
    job = JOBS[args.job]
    results = {}
    with tempfile.TemporaryDirectory(prefix="default_threads-") as tmp:
        for condition in conditions:
            competitor = None
            if condition == "loaded":
                env = {**os.environ, **ONE_THREAD}
                competitor = subprocess.Popen([sys.executable, "-c", SPIN], env=env)
                time.sleep(args.load_warmup)
            try:
                results[condition] = measure(
                    condition, variants, job, args.epochs, args.repeats, Path(tmp)
                )
            finally:
                if competitor is not None:
                    competitor.terminate()
                    competitor.wait(timeout=30)
    report = {
        "benchmark": "default_threads",
        "job": f"pyrovae train {' '.join(job)} --epochs {args.epochs}",
        "epochs": args.epochs,
        "repeats": args.repeats,
        "cores": len(os.sched_getaffinity(0)),
        "competitor": "one process spinning a one-thread 256x256 float32 numpy matmul loop",
        "results": results,
    }
    write_report(report, args.out, argv)
    for condition, r in results.items():
        shown = ", ".join(f"{k} {v:.2f} s" for k, v in r["median_seconds"].items())
        print(
            f"{condition}: {shown}; default ({r['default_threads']} threads) / best fixed = "
            f"{r['default_over_best']:.2f}"
        )


if __name__ == "__main__":
    main()
