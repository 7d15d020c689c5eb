"""What every replication study in ``examples/studies/`` shares: options, data slices, runs, JSON.

A study is a script whose ``main(argv)`` trains through :func:`pyrovae.train.train` (one run
folder per configuration, under ``--runs-dir``), writes one JSON of its numbers (``--out``) and
its PNG figures (``--figures``), and returns the JSON's content. This module holds the parts
they share, with a deliberately small API:

* :func:`parse_args` — the common options (``--quick``, ``--out``, ``--figures``,
  ``--runs-dir``, ``--threads``, ``--data-dir``, ``--seed``), plus a study's own;
* :func:`study_config` — the AEVB training recipe as a :class:`~pyrovae.config.RunConfig`
  dict (tanh, Adagrad, M = 100, L = 1, L^B) with overrides;
* :func:`load` — a dataset from the registry, sliced (:func:`subset`) to the first ``n``
  points of each split;
* :func:`train_run` — :func:`pyrovae.train.train` into ``RUNS_DIR/<study>/<label>``
  (replacing an earlier run there), returning the result and its per-epoch curve;
* :func:`evaluate_elbo` — a trained model's ELBO on any tensor (e.g. the training set);
* :func:`header`, :func:`write_json`, :func:`finish` — the JSON's common fields (command
  line, settings), a strict writer (finite numbers only), and the last step (wall time, write);
* :func:`new_figure`, :func:`save_figure` — small matplotlib figures (80 dpi) without pyplot.

Numbers are per data point, in nats; ELBOs are reported as they are (negative for binary data).
Scripts import this module as ``_common`` (their own folder is first on ``sys.path`` when run
as ``python examples/studies/<study>.py``; tests prepend the folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[2]
#: where the JSON and PNGs of the full runs go (``docs/results/studies/``)
RESULTS_DIR = ROOT / "docs" / "results" / "studies"
#: where the run folders go (``runs/`` is git-ignored)
RUNS_DIR = ROOT / "runs" / "studies"
DPI = 80
SIGN_CONVENTION = (
    "per data point, in nats; ELBO as it is (negative for binary data, higher is better)"
)


def parse_args(
    name: str,
    description: str,
    argv: Sequence[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The common options of study ``name``; ``extra(parser)`` may add the study's own.

    Defaults: ``--out docs/results/studies/<name>.json``, ``--figures docs/results/studies``,
    ``--runs-dir runs/studies`` (runs go to ``<runs-dir>/<name>/<label>``), one thread.
    The returned namespace also has ``name`` and ``command`` (the command line, for the JSON).
    """
    p = argparse.ArgumentParser(prog=f"{name}.py", description=description)
    p.add_argument("--quick", action="store_true", help="tiny budget, for tests (< 30 s)")
    p.add_argument("--out", default=None, help=f"JSON path (default {RESULTS_DIR}/{name}.json)")
    p.add_argument("--figures", default=None, help=f"folder of the PNGs (default {RESULTS_DIR})")
    p.add_argument("--runs-dir", default=None, help=f"folder of run folders (default {RUNS_DIR})")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--data-dir", default=None, help="data folder (default $PYROVAE_DATA)")
    p.add_argument("--seed", type=int, default=0)
    if extra is not None:
        extra(p)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    args.name = name
    args.command = shlex.join(["python", f"examples/studies/{name}.py", *argv])
    args.out = Path(args.out) if args.out else RESULTS_DIR / f"{name}.json"
    args.figures = Path(args.figures) if args.figures else RESULTS_DIR
    args.runs_dir = Path(args.runs_dir) if args.runs_dir else RUNS_DIR
    args.figures.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    args.start = time.perf_counter()
    return args


def study_config(**overrides: Any) -> dict[str, Any]:
    """The AEVB recipe (Kingma & Welling 2013, sec. 5) as a config dict, with ``overrides``.

    tanh MLPs, Adagrad (lr 0.01, from the paper's {0.01, 0.02, 0.1}), M = 100, L = 1, the
    estimator L^B (``meanfield``: analytic KL), no importance-sampled evaluation (``iw_samples
    = 0``), CPU. ``threads`` is best passed as ``threads=args.threads``.
    """
    base = {
        "activation": "tanh",
        "optimizer": "adagrad",
        "lr": 0.01,
        "batch_size": 100,
        "particles": 1,
        "objective": "meanfield",
        "guide": "diagonal",
        "iw_samples": 0,
        "device": "cpu",
    }
    return {**base, **overrides}


def subset(dataset, n_train: int | None = None, n_test: int | None = None):
    """The first ``n_train`` training and ``n_test`` test (and validation) points, labels too."""

    def cut(x, n):
        return x if x is None or n is None else x[:n]

    return dataclasses.replace(
        dataset,
        train=cut(dataset.train, n_train),
        train_labels=cut(dataset.train_labels, n_train),
        valid=cut(dataset.valid, n_test),
        valid_labels=cut(dataset.valid_labels, n_test),
        test=cut(dataset.test, n_test),
        test_labels=cut(dataset.test_labels, n_test),
    )


def load(name: str, args: argparse.Namespace, n_train=None, n_test=None):
    """Dataset ``name`` (see ``pyrovae datasets``) from ``--data-dir``, sliced; never downloads
    when ``--data-dir`` is given."""
    from pyrovae.data import load_dataset

    data = load_dataset(name, data_dir=args.data_dir, download=args.data_dir is None)
    return subset(data, n_train, n_test)


def train_run(config: dict, args: argparse.Namespace, label: str, dataset, plots: bool = False):
    """Train ``config`` on ``dataset`` into ``<runs-dir>/<study>/<label>`` (replacing a run
    there) with :func:`pyrovae.train.train`; returns ``(result, record)``.

    ``record`` has the label, the config, the wall time and ``curve``: one row per epoch with
    ``epoch``, ``step``, ``samples_seen`` (= epoch × training-set size: every point is visited
    once per epoch; equal to step × M when M divides the set), ``train_elbo`` (the mean of the
    epoch's minibatch estimates, taken while training), ``test_elbo`` and ``seconds`` (the
    epoch's training pass).
    """
    from pyrovae.train import train

    config = {"seed": args.seed, "threads": args.threads, **config}
    out = args.runs_dir / args.name / label
    start = time.perf_counter()
    result = train(config, out, dataset=dataset, plots=plots, overwrite=True)
    wall = time.perf_counter() - start
    n = dataset.train.shape[0]
    curve = [
        {
            "epoch": r["epoch"],
            "step": r["step"],
            "samples_seen": r["epoch"] * n,
            "train_elbo": r.get("train_elbo"),
            "test_elbo": r["test_elbo"],
            "seconds": r["seconds"],
        }
        for r in result.metrics
    ]
    record = {
        "label": label,
        "run_dir": str(out),
        "config": {k: config[k] for k in sorted(config)},
        "num_train": n,
        "num_test": dataset.test.shape[0],
        "wall_seconds": wall,
        "final_train_elbo": curve[-1]["train_elbo"] if curve else None,
        "final_test_elbo": result.summary["test_elbo"],
        "curve": curve,
    }
    return result, record


@torch.no_grad()
def evaluate_elbo(result, x: torch.Tensor, seed: int, num_samples: int = 1) -> float:
    """The trained model's mean ELBO (L^B: analytic KL, ``num_samples`` draws of z per point)
    on ``x``, in evaluation mode, with the torch RNG seeded by ``seed``."""
    from pyrovae.infer import elbo_terms

    result.model.eval()
    result.guide.eval()
    torch.manual_seed(seed)
    terms = elbo_terms(result.model, result.guide, x, num_samples=num_samples, batch_size=1000)
    return terms["elbo"].mean().item()


def header(args: argparse.Namespace, replicates: str, budget: dict) -> dict[str, Any]:
    """The fields every study JSON starts with."""
    import pyro

    import pyrovae

    return {
        "study": args.name,
        "replicates": replicates,
        "command": args.command,
        "quick": bool(args.quick),
        "seed": args.seed,
        "threads": args.threads,
        "budget": budget,
        "sign_convention": SIGN_CONVENTION,
        "versions": {
            "pyrovae": pyrovae.__version__,
            "torch": torch.__version__,
            "pyro": pyro.__version__,
        },
    }


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, float):
        yield obj


def write_json(path: str | Path, obj: dict) -> Path:
    """Write ``obj`` as indented JSON; refuse NaN or infinite numbers (ValueError)."""
    bad = [v for v in _numbers(obj) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{len(bad)} non-finite numbers in the results for {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, allow_nan=False) + "\n")
    return path


def finish(args: argparse.Namespace, report: dict) -> dict:
    """Add the wall time, write the JSON to ``--out`` and say where it went."""
    report["wall_seconds"] = time.perf_counter() - args.start
    write_json(args.out, report)
    print(f"wrote {args.out} ({report['wall_seconds']:.0f} s wall)", flush=True)
    return report


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A constrained-layout figure on an Agg canvas (no pyplot state)."""
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` as a PNG quantised to 256 colours (a few tens of KB)."""
    import io

    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(256).save(path, format="PNG", optimize=True)
    print(f"wrote {path}", flush=True)
    return path
