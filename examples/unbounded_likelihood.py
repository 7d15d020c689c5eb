"""The unbounded Gaussian decoder (Mattei & Frellsen 2018) on Frey Face, beside three bounded ones.

A decoder that emits a per-pixel variance (``gaussian-learned``, AEVB's Frey Face model) has an
unbounded likelihood: once it reproduces a training frame, shrinking σ there raises the
likelihood without limit. Flooring σ at ξ (``bounded-gaussian``), fixing it (``gaussian-fixed``)
or setting it from the batch with a floor (``baggins``) bounds it: each has a ceiling on
log p(x|z) per frame, drawn dashed in the figure. This script trains the four on the same Frey
frames (same seed, architecture, optimiser and number of steps) and records after every epoch
the train ELBO, the test ELBO and the smallest decoder σ over the training frames (every pixel
of every frame, decoder output at the frame's posterior mean).

How it trains: with the library's :class:`pyrovae.train.Trainer`, one ``train_epoch()`` at a time
(exactly what ``train()`` does in ``Trainer.fit``, without writing a checkpoint every epoch), so
σ can be read from the model after each epoch at no cost. A non-finite loss or gradient, or a σ
that underflows to 0 (which the Normal refuses), makes the trainer raise ``TrainingError``; it
is recorded as the blow-up (its epoch and message), the metrics of the epochs before it are
kept, and the parameters of the last finite step are evaluated.

Setting (full mode): the first 5 frames of the fixed Frey training split (batch 5, so one step
per epoch), latent 5, 200 tanh hidden units (AEVB's Frey architecture), Adam lr 1e-3, 5000
epochs; test numbers on the 200 test frames, log p(x) by importance sampling (K = 1000). Why 5
frames: with Adam the run-away is slow (σ falls to a few grey levels quickly, then creeps; most
likely Adam's step size limits how exactly a mean can match a frame). In our run on 50 frames,
``--frames 50 --batch-size 25 --epochs 2000`` (4000 steps), the unbounded and floored decoders
behaved alike: both over-fit, neither reached ξ's ceiling (max train ELBO 1374 and 1458 nats
against 2064). On 5 frames the floored decoder reaches its ceiling within the budget and the
unbounded one climbs past it.

Budget: full ≈ 5 min on 2 busy cores (measured 312 s wall, 209 s CPU; one torch thread),
``--quick`` ≈ 10 s.

    python examples/unbounded_likelihood.py [--quick] [--data-dir DIR] [--out DIR] [--seed S]

The JSON and PNG go to ``--out``, by default ``runs/fyffe/`` (git-ignored); the committed ones in
``docs/results/fyffe/`` are rewritten only when named::

    python examples/unbounded_likelihood.py --data-dir DIR --out docs/results/fyffe

``--replot`` redraws the PNG from the JSON in ``--out`` without training (:func:`plot_from_json`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import textwrap
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pyrovae.build import build_model
from pyrovae.config import RunConfig
from pyrovae.data import load_dataset
from pyrovae.provenance import provenance
from pyrovae.train import Trainer, TrainingError, check_data

NAME = "unbounded_likelihood"
LIKELIHOODS = ("gaussian-learned", "bounded-gaussian", "gaussian-fixed", "baggins")
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
QUANTUM = 1 / 255  # one grey level of the 8-bit Frey frames
INFO_MAX = 3.0  # BAGGINS I_max, nats per pixel (the library default)
OUT_HELP = "folder of the JSON and PNG (default runs/fyffe; the committed ones: docs/results/fyffe)"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few epochs, for tests (< 30 s)")
    p.add_argument("--data-dir", default=None, help="folder with frey/ (default $PYROVAE_DATA)")
    p.add_argument("--out", default="runs/fyffe", help=OUT_HELP)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=5, help="training frames")
    p.add_argument("--batch-size", type=int, default=None, help="default: all frames")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 5000)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latent", type=int, default=5)
    p.add_argument("--floor", type=float, default=0.01, help="ξ of bounded-gaussian")
    p.add_argument("--sigma", type=float, default=0.1, help="σ of gaussian-fixed")
    p.add_argument("--iw-samples", type=int, default=None, help="K for test log p(x)")
    p.add_argument("--log-every", type=int, default=None, help="epochs between JSON rows")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--replot", action="store_true", help=f"only redraw OUT/{NAME}.png from OUT/{NAME}.json"
    )
    args = p.parse_args(argv)
    quick = {"epochs": 60, "iw_samples": 50, "log_every": 5}
    full = {"epochs": 5000, "iw_samples": 1000, "log_every": 25}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.batch_size is None:
        args.batch_size = args.frames
    return args


def _finite(v):
    return v if v is not None and math.isfinite(v) else None


@torch.no_grad()
def decoder_sigma(model, guide, x: torch.Tensor) -> torch.Tensor:
    """The decoder's σ for every pixel of every frame in ``x``, at z = the posterior mean.

    ``model`` must be in eval mode (BAGGINS then uses its training-set σ², frozen by the trainer).
    """
    dist = model.likelihood(model.decoder(guide.posterior(x).mean))
    return dist.variance.sqrt().expand(x.shape)


def log_likelihood_ceiling(name: str, args, train_x: torch.Tensor) -> float | None:
    """The largest log p(x|z) per frame a likelihood allows (None: unbounded)."""
    d = train_x.shape[1]
    if name == "bounded-gaussian":
        return -d * (math.log(args.floor) + HALF_LOG_2PI)
    if name == "gaussian-fixed":
        return -d * (math.log(args.sigma) + HALF_LOG_2PI)
    if name == "baggins":  # per batch; with batch = all frames, the training set's S
        signal = train_x.var(0, unbiased=False).mean().item()
        return -0.5 * d * math.log(2 * math.pi * signal / math.expm1(2 * INFO_MAX))
    return None


def run_one(name: str, args, dataset) -> tuple[dict, list[dict]]:
    """Train one likelihood epoch by epoch with the library's Trainer; read σ after each."""
    config = RunConfig.from_dict(
        {
            "dataset": "frey",
            "likelihood": name,
            "floor": args.floor,
            "info_max": INFO_MAX,
            "sigma": args.sigma,
            "latent_dim": args.latent,
            "hidden": [200],
            "batch_size": args.batch_size,
            "lr": args.lr,
            "epochs": args.epochs,
            "seed": args.seed,
            "iw_samples": args.iw_samples,
            "device": "cpu",
        }
    )
    # what pyrovae.train.train does before Trainer.fit (no run folder)
    pyro.set_rng_seed(config.seed)
    model, guide = build_model(config, dataset.data_dim)
    check_data(model.likelihood, dataset)
    model.likelihood.fit_to_data(model, guide, dataset.train)  # BAGGINS' data scale
    trainer = Trainer(config, dataset, model, guide)
    rows, blowup = [], None
    start = time.perf_counter()
    while trainer.epoch < config.epochs:
        try:
            row = trainer.train_epoch()  # one pass, then the test ELBO (model left in eval mode)
        except TrainingError as e:  # a non-finite loss or gradient, or invalid parameters
            blowup = {
                "epoch": trainer.epoch + 1,
                "step": trainer.step + 1,
                "error": type(e).__name__,
                "message": str(e),
            }
            break
        trainer.metrics.append(row)
        sigma = decoder_sigma(model, guide, dataset.train)
        rows.append(
            {
                "epoch": row["epoch"],
                "train_elbo": _finite(row["train_elbo"]),
                "test_elbo": _finite(row["test_elbo"]),
                "min_sigma": sigma.min().item(),
                "median_sigma": sigma.median().item(),
            }
        )
    seconds = time.perf_counter() - start
    torch.manual_seed(args.seed)
    try:  # test ELBO, IW log p(x) (K = iw_samples); after a blow-up, of the last finite step
        summary = trainer.summarize() if rows else {}
    except ValueError as e:  # parameters no distribution accepts
        summary = {"error": str(e)}
    train_elbos = [r["train_elbo"] for r in rows if r["train_elbo"] is not None]
    ceiling = log_likelihood_ceiling(name, args, dataset.train)
    logged = [r for r in rows if r["epoch"] % args.log_every == 0 or r is rows[-1]]
    last = train_elbos[-max(1, len(train_elbos) // 4) :]  # the last quarter of training
    return {
        "likelihood": name,
        "epochs_completed": len(rows),
        "blowup": blowup,
        "max_train_elbo": max(train_elbos) if train_elbos else None,
        "final_train_elbo": rows[-1]["train_elbo"] if rows else None,
        "last_quarter_train_elbo": {
            "min": min(last, default=None),
            "max": max(last, default=None),
            "sd": float(np.std(last)) if last else None,
        },
        "final_test_elbo": rows[-1]["test_elbo"] if rows else None,
        "best_test_elbo": max(
            (r["test_elbo"] for r in rows if r["test_elbo"] is not None), default=None
        ),
        "min_sigma_reached": min(r["min_sigma"] for r in rows) if rows else None,
        "final_min_sigma": rows[-1]["min_sigma"] if rows else None,
        "final_median_sigma": rows[-1]["median_sigma"] if rows else None,
        "log_likelihood_ceiling": ceiling,
        "test_iw_log_likelihood": _finite(summary.get("test_iw_log_likelihood", math.nan)),
        "train_seconds": seconds,
        "per_epoch": logged,
    }, rows


COLOURS = {
    "gaussian-learned": "tab:red",
    "bounded-gaussian": "tab:blue",
    "gaussian-fixed": "tab:green",
    "baggins": "tab:purple",
}


def _running_max(rows: list[dict]) -> tuple[list[int], np.ndarray]:
    train = [row["train_elbo"] if row["train_elbo"] is not None else math.nan for row in rows]
    return [row["epoch"] for row in rows], np.fmax.accumulate(np.array(train, dtype=float))


def figure(report: dict) -> Figure:
    """The four likelihoods' runs from the report (the JSON this script writes), 2 × 2:
    (a) the running maximum of the train ELBO (over the logged epochs) against each bounded
    likelihood's ceiling on log p(x|z), dashed; (b) the same, zoomed on the ceilings, where
    the unbounded decoder climbs past them; (c) the test ELBO (symmetric log scale);
    (d) the smallest decoder σ (log scale). One legend, below the panels."""
    results = report["results"]
    fig = Figure(figsize=(11, 8.2), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    (ax_train, ax_zoom), (ax_test, ax_sigma) = fig.subplots(2, 2)
    ceilings = [r["log_likelihood_ceiling"] for r in results if r["log_likelihood_ceiling"]]
    maxima = [r["max_train_elbo"] for r in results if r["max_train_elbo"] is not None]
    for r in results:
        name, rows = r["likelihood"], r["per_epoch"]
        c = COLOURS[name]
        epochs, running = _running_max(rows)
        for ax in (ax_train, ax_zoom):
            ax.plot(epochs, running, color=c, lw=1.6)
            if r["log_likelihood_ceiling"] is not None:
                ax.axhline(r["log_likelihood_ceiling"], color=c, ls="--", lw=1.1)
        ax_test.plot(epochs, [row["test_elbo"] for row in rows], color=c, lw=0.8)
        ax_sigma.plot(epochs, [row["min_sigma"] for row in rows], color=c, lw=0.9)
        if r["blowup"] is not None:
            for ax in (ax_train, ax_zoom, ax_test, ax_sigma):
                ax.axvline(r["blowup"]["epoch"], color=c, ls=":", lw=1)
    top = max(ceilings + maxima + [0.0])
    lowest = min(float(np.nanmin(_running_max(r["per_epoch"])[1])) for r in results)
    ax_train.set_ylim(max(min(0.0, lowest), -0.3 * top), top * 1.06)  # a start far below: cut
    ax_train.set_title(
        "(a) train ELBO: running maximum (solid)\nand each bounded likelihood's ceiling (dashed)"
    )
    # the zoom: the highest ceilings and the highest climb (which may stop below them)
    high = [c for c in ceilings if c >= 0.5 * max(ceilings + maxima + [1.0])]
    low = min(high + [max(maxima + [0.0])])
    span = top - low or 1.0
    ax_zoom.set_ylim(low - 0.35 * span, top + 0.08 * span)
    first = report["headline"].get("unbounded_first_epoch_above_floored_ceiling")
    zoom_title = "(b) zoom on the highest ceilings"
    if first is not None:
        ax_zoom.axvline(first, color=COLOURS["gaussian-learned"], ls=":", lw=1)
        zoom_title += f"\ngaussian-learned passes bounded-gaussian's at epoch {first} (dotted)"
    ax_zoom.set_title(zoom_title)
    ax_test.set_yscale("symlog", linthresh=100)
    ax_test.set_title(f"(c) test ELBO, {results[0]['test_frames']} held-out frames (symlog)")
    ax_sigma.axhline(QUANTUM, color="0.5", ls="--", lw=0.8)
    ax_sigma.axhline(results[0]["floor"], color=COLOURS["bounded-gaussian"], ls="-.", lw=0.8)
    ax_sigma.set_yscale("log")
    ax_sigma.set_title("(d) smallest decoder σ over the training frames (z = posterior mean)")
    for ax in (ax_train, ax_zoom, ax_test, ax_sigma):
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(9)
        ax.set_xlabel("epoch")
    for ax in (ax_train, ax_zoom, ax_test):
        ax.set_ylabel("nats per frame")
    ax_sigma.set_ylabel("σ (data scale [0, 1])")
    handles, labels = [], []
    for r in results:
        ceiling = r["log_likelihood_ceiling"]
        handles.append(Line2D([], [], color=COLOURS[r["likelihood"]], lw=2))
        labels.append(
            f"{r['likelihood']}: "
            + ("unbounded" if ceiling is None else f"ceiling {ceiling:.0f}")
            + f", max train ELBO {r['max_train_elbo']:.0f}"
        )
    handles += [
        Line2D([], [], color="0.3", lw=1.6),
        Line2D([], [], color="0.3", ls="--", lw=1.1),
        Line2D([], [], color="0.5", ls="--", lw=0.8),
        Line2D([], [], color=COLOURS["bounded-gaussian"], ls="-.", lw=0.8),
    ]
    logged = [row["epoch"] for row in results[0]["per_epoch"]]
    every = f" (every {logged[1] - logged[0]}th)" if len(logged) > 1 else ""
    labels += [
        f"(a, b) running max of the train ELBO over the logged epochs{every}",
        "(a, b) ceiling on log p(x|z) per frame",
        "(d) one grey level, 1/255",
        "(d) floor ξ of bounded-gaussian",
    ]
    if any(r["blowup"] for r in results):
        handles.append(Line2D([], [], color="0.3", ls=":", lw=1))
        labels.append("non-finite loss (blow-up)")
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8)
    fig.suptitle(textwrap.fill(report["setting"], 150), fontsize=9)
    return fig


def plot_from_json(path: Path, out: Path | None = None) -> Path:
    """Draw :func:`figure` from a report this script wrote into ``out`` (a PNG path;
    default: ``unbounded_likelihood.png`` beside the JSON)."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"{path} not found: run the example without --replot first")
    out = path.with_name(f"{NAME}.png") if out is None else Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure(json.loads(path.read_text())).savefig(out)
    return out


def _first_epoch_above(rows: list[dict], level: float | None) -> int | None:
    if level is None:
        return None
    return next((r["epoch"] for r in rows if (r["train_elbo"] or -math.inf) > level), None)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.replot:
        print(f"wrote {plot_from_json(Path(args.out) / f'{NAME}.json')}")
        return json.loads((Path(args.out) / f"{NAME}.json").read_text())
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    full = load_dataset("frey", data_dir=args.data_dir)
    dataset = dataclasses.replace(full, train=full.train[: args.frames])
    start = time.perf_counter()
    results, rows = [], {}
    for name in LIKELIHOODS:
        r, rows[name] = run_one(name, args, dataset)
        r["test_frames"], r["floor"] = int(dataset.test.shape[0]), args.floor
        results.append(r)
        print(
            f"{name:17s} max train ELBO {r['max_train_elbo']:8.1f}  final test ELBO "
            f"{r['final_test_elbo'] or math.nan:9.1f}  test log p(x) "
            f"{r['test_iw_log_likelihood'] or math.nan:9.1f}  min σ "
            f"{r['min_sigma_reached'] or math.nan:.2e}  blow-up "
            f"{r['blowup']['epoch'] if r['blowup'] else '-'}  ({r['train_seconds']:.0f} s)",
            flush=True,
        )
    by_name = {r["likelihood"]: r for r in results}
    unbounded, floored = by_name["gaussian-learned"], by_name["bounded-gaussian"]
    setting = (
        f"Frey Face, first {args.frames} training frames, batch {args.batch_size}, latent "
        f"{args.latent}, hidden [200], Adam lr {args.lr:g}, {args.epochs} epochs, floor ξ = "
        f"{args.floor:g}, fixed σ = {args.sigma:g}, seed {args.seed}"
    )
    report = {
        "example": NAME,
        "quick": args.quick,
        "setting": setting,
        "seed": args.seed,
        "train_frames": args.frames,
        "test_frames": int(dataset.test.shape[0]),
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "lr": args.lr,
        "iw_samples": args.iw_samples,
        "floor": args.floor,
        "sigma_fixed": args.sigma,
        "sigma_measured": "decoder σ at z = posterior mean, over every training frame and "
        "pixel, after every epoch (BAGGINS: its σ² frozen at the training set by the trainer)",
        "log_likelihood_ceiling_note": "largest log p(x|z) per frame each likelihood allows; "
        "the ELBO is below it by at least the KL. BAGGINS' ceiling depends on the batch's signal "
        "variance S; with batch = training set it is the one shown",
        "per_epoch_note": f"per_epoch keeps every {args.log_every}th epoch (and the last); the "
        "max/min statistics use every epoch",
        "headline": {
            "unbounded_max_train_elbo": unbounded["max_train_elbo"],
            "unbounded_min_sigma": unbounded["min_sigma_reached"],
            "unbounded_blowup": unbounded["blowup"],
            "floored_ceiling": floored["log_likelihood_ceiling"],
            "floored_max_train_elbo": floored["max_train_elbo"],
            "unbounded_first_epoch_above_floored_ceiling": _first_epoch_above(
                rows["gaussian-learned"], floored["log_likelihood_ceiling"]
            ),
            "max_train_elbo": {r["likelihood"]: r["max_train_elbo"] for r in results},
            "final_test_elbo": {r["likelihood"]: r["final_test_elbo"] for r in results},
            "test_iw_log_likelihood": {
                r["likelihood"]: r["test_iw_log_likelihood"] for r in results
            },
            "min_sigma": {r["likelihood"]: r["min_sigma_reached"] for r in results},
        },
        "results": results,
        "wall_seconds": time.perf_counter() - start,
        "torch_threads": args.threads,
        **provenance(argv, script=__file__),  # command, commit, machine
    }
    (out / f"{NAME}.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    plot_from_json(out / f"{NAME}.json")  # the figure is drawn from the JSON alone
    print(
        f"wrote {out / f'{NAME}.json'} and {out / f'{NAME}.png'} in {report['wall_seconds']:.0f} s"
    )
    return report


if __name__ == "__main__":
    main()
