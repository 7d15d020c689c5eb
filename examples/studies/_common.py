"""What every replication study in ``examples/studies/`` shares: options, data slices, runs, JSON.

A study is a script whose ``main(argv)`` trains through :func:`pyrovae.train.train` (one run
folder per configuration, under ``--runs-dir``), writes one JSON of its numbers (``--out``) and
its PNG figures (``--figures``), and returns the JSON's content. This module holds the parts
they share, with a deliberately small API:

* :func:`parse_args` — the common options (``--quick``, ``--out``, ``--figures``,
  ``--runs-dir``, ``--threads``, ``--data-dir``, ``--seed``), plus a study's own;
* :func:`override_options`, :func:`settings` — the optional ``--latents`` / ``--epochs``
  options and a mode's settings with the options given on the command line;
* :func:`study_config` — the AEVB training recipe as a :class:`~pyrovae.config.RunConfig`
  dict (tanh, Adagrad, M = 100, L = 1, L^B) with overrides; :func:`mnist_config` and
  :func:`frey_config` — that recipe on ``mnist-dynamic`` and on Frey Face;
* :func:`load` — a dataset from the registry, sliced (:func:`subset`) to the first ``n``
  points of each split; :func:`spread` — evenly spaced rows; :func:`load_spread` — a dataset
  whose test split is :func:`spread`;
* :func:`train_run` — :func:`pyrovae.train.train` into ``RUNS_DIR/<study>/<label>``
  (replacing an earlier run there), returning the result and its per-epoch curve;
* :func:`evaluate_elbo` — a trained model's ELBO on any tensor (e.g. the training set);
* :func:`best_test_elbo`, :func:`elbo_summary`, :func:`without_curves` — small summaries of
  run records;
* :func:`data_budget`, :func:`header`, :func:`write_json`, :func:`finish` — the budget's
  data fields, the JSON's common fields (command line, settings), a strict writer (finite
  numbers only), and the last step (wall time, write); :func:`finish_runs` — that last step
  for a study of one figure and a table of runs;
* :func:`new_figure`, :func:`save_figure` — small matplotlib figures (80 dpi) without pyplot;
  :func:`plot_train_test`, :func:`train_test_legend`, :func:`elbo_ylim` — the train / test
  curves the studies draw.

Everything a study writes goes under ``runs/studies/`` (git-ignored) unless told otherwise: the
JSON to ``runs/studies/<study>.json``, the PNGs beside it, the run folders to
``runs/studies/<study>/<label>``. The committed results in ``docs/results/studies/`` are
regenerated only by naming them, e.g.
``python examples/studies/<study>.py --out docs/results/studies/<study>.json
--figures docs/results/studies``.

Numbers are per data point, in nats; ELBOs are reported as they are (negative for binary data).
Scripts import this module as ``_common`` (their own folder is first on ``sys.path`` when run
as ``python examples/studies/<study>.py``; tests prepend the folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pyrovae.provenance import provenance

ROOT = Path(__file__).resolve().parents[2]
#: where the JSON and PNGs go by default (``runs/`` is git-ignored)
RESULTS_DIR = ROOT / "runs" / "studies"
#: where the run folders go (``runs/`` is git-ignored)
RUNS_DIR = ROOT / "runs" / "studies"
#: where the committed JSON and PNGs are; written only when named by ``--out`` / ``--figures``
COMMITTED_DIR = "docs/results/studies"
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

    Defaults, all under the git-ignored ``runs/``: ``--out runs/studies/<name>.json``,
    ``--figures`` the folder of ``--out``, ``--runs-dir runs/studies`` (runs go to
    ``<runs-dir>/<name>/<label>``); one thread. The committed results are rewritten only by
    ``--out docs/results/studies/<name>.json --figures docs/results/studies``.
    The returned namespace also has ``name`` and ``command`` (the command line, for the JSON).
    """
    committed = f"--out {COMMITTED_DIR}/{name}.json --figures {COMMITTED_DIR}"
    epilog = f"to regenerate the committed results, add {committed}"
    p = argparse.ArgumentParser(prog=f"{name}.py", description=description, epilog=epilog)
    p.add_argument("--quick", action="store_true", help="tiny budget, for tests (< 30 s)")
    p.add_argument("--out", default=None, help=f"JSON path (default {RESULTS_DIR}/{name}.json)")
    p.add_argument(
        "--figures", default=None, help="folder of the PNGs (default: the folder of --out)"
    )
    p.add_argument("--runs-dir", default=None, help=f"folder of run folders (default {RUNS_DIR})")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--data-dir", default=None, help="data folder (default $PYROVAE_DATA)")
    p.add_argument("--seed", type=int, default=0)
    if extra is not None:
        extra(p)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    args.name = name
    args.out = Path(args.out) if args.out else RESULTS_DIR / f"{name}.json"
    args.figures = Path(args.figures) if args.figures else args.out.parent
    args.runs_dir = Path(args.runs_dir) if args.runs_dir else RUNS_DIR
    args.figures.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    # command (machine paths made portable), commit, machine: for the JSON's header
    args.provenance = provenance(argv, script=Path(__file__).parent / f"{name}.py")
    args.command = args.provenance["command"]
    args.start = time.perf_counter()
    return args


def override_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--latents`` (the N_z to compare) and ``--epochs``, both overriding the mode's."""
    parser.add_argument("--latents", type=int, nargs="+", default=None, help="the N_z to compare")
    parser.add_argument("--epochs", type=int, default=None)


def settings(
    args: argparse.Namespace,
    quick: dict[str, Any],
    full: dict[str, Any],
    keys: Sequence[str] = ("latents", "epochs"),
) -> dict[str, Any]:
    """A copy of ``quick`` (``--quick``) or ``full``, with every option of ``keys`` that was
    given on the command line (not ``None``) in place of the mode's value."""
    s = dict(quick if args.quick else full)
    for key in keys:
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    return s


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


def mnist_config(**overrides: Any) -> dict[str, Any]:
    """:func:`study_config` on ``mnist-dynamic`` (Bernoulli decoder, 500 hidden units)."""
    return study_config(
        **{"dataset": "mnist-dynamic", "likelihood": "bernoulli", "hidden": [500], **overrides}
    )


def frey_config(**overrides: Any) -> dict[str, Any]:
    """:func:`study_config` on Frey Face: 200 hidden units, the Gaussian decoder with learned
    variance and sigmoid means, and ``nan_policy="rollback"`` (that decoder is unbounded)."""
    frey = {
        "dataset": "frey",
        "likelihood": "gaussian-learned",
        "mean_activation": "sigmoid",
        "hidden": [200],
        "nan_policy": "rollback",
    }
    return study_config(**{**frey, **overrides})


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


def spread_index(size: int, n: int) -> torch.Tensor:
    """The indices of ``min(n, size)`` rows evenly spaced over ``size`` rows."""
    return torch.linspace(0, size - 1, min(n, size)).long()


def spread(x: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` rows of ``x`` evenly spaced: the binarised MNIST test split is sorted by digit
    class (≈ 1000 0s, then 1s, ...), so ``x[:n]`` is not a representative sample."""
    return x[spread_index(x.shape[0], n)]


def load_spread(name: str, args: argparse.Namespace, n_train: int | None, n_test: int):
    """Dataset ``name`` with its first ``n_train`` training points and ``n_test`` test points
    :func:`spread` over its test split (validation split left whole)."""
    data = load(name, args, n_train, None)
    return dataclasses.replace(data, test=spread(data.test, n_test))


def train_run(config: dict, args: argparse.Namespace, label: str, dataset, plots: bool = False):
    """Train ``config`` on ``dataset`` into ``<runs-dir>/<study>/<label>`` (replacing a run
    there) with :func:`pyrovae.train.train`; returns ``(result, record)``.

    ``record`` has the label, the config, the wall time and ``curve``: one row per epoch with
    ``epoch``, ``step``, ``samples_seen`` (= epoch × training-set size: every point is visited
    once per epoch; equal to step × M when M divides the set), ``train_elbo`` (the mean of the
    epoch's minibatch estimates, taken while training), ``test_elbo`` with its ``test_rate``
    and ``test_distortion`` (None where the trainer does not report them) and ``seconds``
    (the epoch's training pass).
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
            # the ELBO's two terms (Alemi et al.): a rate near 0 is posterior collapse
            "test_rate": r.get("test_rate"),
            "test_distortion": r.get("test_distortion"),
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


def best_test_elbo(curve: list[dict]) -> float:
    """The highest test ELBO of a run's per-epoch ``curve``."""
    return max(p["test_elbo"] for p in curve)


def elbo_summary(record: dict) -> dict[str, float]:
    """A :func:`train_run` record's final train and test ELBO and its best test ELBO."""
    return {
        "final_train_elbo": record["final_train_elbo"],
        "final_test_elbo": record["final_test_elbo"],
        "best_test_elbo": best_test_elbo(record["curve"]),
    }


def without_curves(rows: list[dict]) -> list[dict]:
    """``rows`` without their ``curve`` entries (the JSON's summary table)."""
    return [{k: v for k, v in r.items() if k != "curve"} for r in rows]


def data_budget(dataset, epochs: int, **extra: Any) -> dict[str, Any]:
    """The budget fields of a run on ``dataset``: its sizes, ``epochs`` and the training samples
    seen (epochs × training-set size), then ``extra``."""
    n = dataset.train.shape[0]
    return {
        "num_train": n,
        "num_test": dataset.test.shape[0],
        "epochs": epochs,
        "samples_seen": epochs * n,
        **extra,
    }


def header(args: argparse.Namespace, replicates: str, budget: dict) -> dict[str, Any]:
    """The fields every study JSON starts with (with its command, commit and machine)."""
    import pyro

    import pyrovae

    return {
        "study": args.name,
        "replicates": replicates,
        "command": args.command,
        "commit": args.provenance["commit"],
        "dirty": args.provenance["dirty"],
        "machine": args.provenance["machine"],
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


def finish_runs(
    args: argparse.Namespace, replicates: str, budget: dict, figure: Path, rows: list[dict]
) -> dict:
    """:func:`finish` a study of one ``figure`` and one row per run: after the
    :func:`header`, the figure's name, the ``table`` (the rows without their curves) and the
    ``runs`` (the rows)."""
    report = {
        **header(args, replicates, budget),
        "figures": [figure.name],
        "table": without_curves(rows),
        "runs": rows,
    }
    return finish(args, report)


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


def plot_train_test(
    ax, curve: list[dict], colour: str, label: str, x: str = "epoch", train_first: bool = False
) -> None:
    """Draw a run's test (solid) and running-mean train (dashed) ELBO against ``x`` in
    ``colour``, with one legend entry ``label``; ``train_first`` draws the train curve below."""
    xs = [p[x] for p in curve]
    lines = [("test_elbo", "-", 1.5), ("train_elbo", "--", 1)]
    for key, style, width in reversed(lines) if train_first else lines:
        ax.plot(xs, [p[key] for p in curve], style, color=colour, lw=width)
    ax.plot([], [], "-", color=colour, label=label)


def train_test_legend(ax) -> None:
    """The legend entries of the line styles of :func:`plot_train_test`."""
    ax.plot([], [], "k-", label="test")
    ax.plot([], [], "k--", label="train (running mean)")


def elbo_ylim(ax, rows: list[dict], pad: float = 5) -> None:
    """Limit ``ax``'s y axis to the train and test ELBOs of the runs' curves after the first
    epoch (far below the rest), with ``pad`` nats either side."""
    values = [p[k] for r in rows for p in r["curve"][1:] for k in ("train_elbo", "test_elbo")]
    if values:
        ax.set_ylim(min(values) - pad, max(values) + pad)
