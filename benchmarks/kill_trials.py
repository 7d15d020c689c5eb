"""Kill training runs at random moments over their whole life; resume; compare with the reference.

Each trial starts ``pyrovae train`` in a subprocess, waits until the run has
claimed its folder (``status.json`` exists), then sends SIGKILL (no handler
runs) at a moment drawn uniformly over the rest of the uninterrupted run's
life up to its status "complete" (training, the summary's evaluation, the
plots, the final status). It notes the phase ``status.json`` showed, resumes
with ``pyrovae train --out RUN --resume``, and checks that the run ends
complete with the metrics and summary of the uninterrupted run and no
temporary file left behind. On a busy machine a run can finish before its
kill moment; such a trial is reported and not counted, and trials continue
until ``--trials`` kills have landed (at most three times as many attempts).

    python benchmarks/kill_trials.py --trials 20 --out benchmarks/results/kill_trials.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyrovae.run import RunFolder

RUN = ["--dataset", "digits", "--hidden", "64", "--latent", "2", "--epochs", "20"]
RUN += ["--iw-samples", "500", "--no-progress", "--seed", "7", "--threads", "1"]
TIMES = {"seconds", "eval_seconds", "train_seconds", "versions"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _train(*args: str, wait: bool = True):
    cmd = [sys.executable, "-m", "pyrovae.cli", "train", *args]
    if wait:
        return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _started(proc, out: Path) -> float:
    """Wait until the run writes its status; the time it did (perf_counter)."""
    while not (out / "status.json").exists():
        if proc.poll() is not None:
            raise SystemExit(f"the run in {out} ended before it started")
        time.sleep(0.005)
    return time.perf_counter()


def _numbers(out: Path):
    run = RunFolder(out)
    rows = [{k: v for k, v in r.items() if k not in TIMES} for r in run.read_metrics()]
    return rows, {k: v for k, v in run.read_summary().items() if k not in TIMES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "reference"
        proc = _train(*RUN, "--out", str(ref), wait=False)
        start = _started(proc, ref)
        while RunFolder(ref).read_status().get("state") != "complete":  # not the exit
            time.sleep(0.005)
        duration = time.perf_counter() - start
        assert proc.wait() == 0
        reference = _numbers(ref)
        rows = []
        for trial in range(3 * args.trials):
            if sum(r["killed_before_the_end"] for r in rows) == args.trials:
                break
            out = Path(tmp) / f"trial{trial}"
            moment = rng.uniform(0.0, duration)
            proc = _train(*RUN, "--out", str(out), wait=False)
            _started(proc, out)
            time.sleep(moment)
            status = RunFolder(out).read_status()
            epochs_done = len(RunFolder(out).read_metrics())
            proc.kill()
            proc.wait()
            phase = status.get("phase", status.get("state"))
            if status.get("state") == "running" and phase == "training":
                phase = f"training, epoch {epochs_done + 1}"
            resumed = _train("--out", str(out), "--resume", "--no-progress")
            same = resumed.returncode == 0 and _numbers(out) == reference
            complete = RunFolder(out).read_status().get("state") == "complete"
            leftovers = len(list(out.rglob(".*.tmp")))
            rows.append(
                {
                    "trial": trial,
                    "killed_before_the_end": status.get("state") != "complete",
                    "kill_after_seconds": round(moment, 3),
                    "phase_seen": phase,
                    "resumed_complete": complete,
                    "same_numbers": same,
                    "leftover_tmp_files": leftovers,
                }
            )
            print(
                f"trial {trial:2d}: killed {moment:5.2f} s into a {duration:.2f} s run "
                f"({phase}); resume complete={complete}, same numbers={same}, "
                f"leftovers={leftovers}",
                flush=True,
            )
    kills = [r for r in rows if r["killed_before_the_end"]]
    ok = sum(
        r["resumed_complete"] and r["same_numbers"] and not r["leftover_tmp_files"] for r in kills
    )
    print(
        f"{ok}/{len(kills)} runs killed before their end resumed to complete with the "
        f"uninterrupted run's numbers ({len(rows) - len(kills)} more had finished first)"
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "command": "python benchmarks/kill_trials.py " + " ".join(sys.argv[1:]),
                    "run": RUN,
                    "uninterrupted_seconds": round(duration, 3),
                    "trials": rows,
                    "killed_before_the_end": len(kills),
                    "passed": ok,
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
