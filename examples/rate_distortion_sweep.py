"""The rate–distortion plane of Alemi et al.'s discrete toy model (exact, ~30 s on a CPU).

Sweeps β of ``D + βR`` for two model families on the same data (H known exactly):

* a restricted decoder (a discretised Gaussian per latent value, ``K_z = 2``),
  whose frontier is a curve above the line ``D + R = H`` that β traces;
* the paper's table decoder, which can reach the line: β < 1 lands near
  ``R = H`` (autoencoder), β > 1 at ``R = 0`` (autodecoder), and at β = 1 every
  point of the line has the same ELBO, ``−H`` — here the ELBO fit from a
  near-uniform start is the autodecoder, while a fixed target rate
  (``D + |R − 0.5|``) keeps 0.5 nats in the latent at the same ELBO.

Writes ``OUT/toy_rate_distortion.png`` and ``OUT/toy_rate_distortion.json``, ``OUT`` being
``--out``, by default ``runs/toy-rd`` (git-ignored); ``--quick`` fits 3 β values for 100 steps
(≈ 2 s, for tests)::

    python examples/rate_distortion_sweep.py
    python examples/rate_distortion_sweep.py --beta 0.1:2:0.1 --steps 4000

The committed results in ``docs/results/rate_distortion/`` are rewritten only when named::

    python examples/rate_distortion_sweep.py --out docs/results/rate_distortion

``--replot`` redraws ``OUT/toy_rate_distortion.png`` from ``OUT/toy_rate_distortion.json``
without fitting anything (:func:`plot_from_json`)::

    python examples/rate_distortion_sweep.py --replot --out docs/results/rate_distortion

For binarised MNIST, the same plane comes from ``pyrovae sweep`` (see ``pyrovae sweep --help``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pyrovae import plots
from pyrovae.models.toy import ToyModel, fit_toy, toy_data, toy_sweep
from pyrovae.provenance import provenance
from pyrovae.run import write_json
from pyrovae.sweep import parse_betas

OUT_HELP = "output folder (default runs/toy-rd; the committed one: docs/results/rate_distortion)"
PNG, JSON = "toy_rate_distortion.png", "toy_rate_distortion.json"
DPI = 100


def _grouped_labels(rows: list[dict], scale: tuple[float, float], tol: float = 0.06) -> list:
    """One β label per run of consecutive β whose points lie within ``tol`` (a fraction of
    the axes, ``scale`` = their spans) of the run's first point: ``β = 0.2–0.8``."""
    groups: list[list[int]] = []
    for i, row in enumerate(rows):
        if row["beta"] is None:
            continue
        if groups:
            first = rows[groups[-1][0]]
            dr = (row["rate"] - first["rate"]) / scale[0]
            dd = (row["distortion"] - first["distortion"]) / scale[1]
            if math.hypot(dr, dd) < tol:
                groups[-1].append(i)
                continue
        groups.append([i])
    labels: list[str | None] = [None] * len(rows)
    for g in groups:
        low, high = rows[g[0]]["beta"], rows[g[-1]]["beta"]
        labels[g[0]] = f"β = {low:g}" if len(g) == 1 else f"β = {low:g}–{high:g}"
    return labels


def _frontier(report: dict) -> list[tuple[str, dict]]:
    """The points the zoom shows: the restricted decoder's runs away from R = 0 (its curve
    above R + D = H) and the target-rate fit."""
    entropy = report["entropy"]
    return [
        (name, row)
        for name, rows in report["series"].items()
        for row in rows
        if (name.startswith("gaussian") and row["rate"] > 0.05 * entropy) or row["beta"] is None
    ]


def figure(report: dict) -> Figure:
    """The toy model's rate–distortion plane from its report (the JSON this script writes):
    (a) the whole plane, runs that land on the same spot labelled together, and (b) a zoom
    on the restricted decoder's frontier, each β labelled."""
    entropy, series = report["entropy"], report["series"]
    order = list(series)
    fig = Figure(figsize=(11, 5.4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax_all, ax_zoom = fig.subplots(1, 2)
    rates = [row["rate"] for rows in series.values() for row in rows]
    dists = [row["distortion"] for rows in series.values() for row in rows]
    scale = (max(rates) - min(rates) or 1.0, max(dists) - min(dists) or 1.0)
    everything = [
        {"rate": row["rate"], "distortion": row["distortion"], "series": name, "label": label}
        for name, rows in series.items()
        for row, label in zip(rows, _grouped_labels(rows, scale))
    ]
    drawn_all = plots.draw_rate_distortion(
        ax_all, everything, entropy, contours=False, series=order
    )
    ax_all.set_title("(a) the whole plane; runs on the same spot share a label", fontsize=10)
    frontier = _frontier(report)
    zoom_rates = [row["rate"] for _, row in frontier]
    zoom_dists = [row["distortion"] for _, row in frontier]
    pad_r = 0.12 * (max(zoom_rates) - min(zoom_rates) or 0.1)
    pad_d = 0.12 * (max(zoom_dists) - min(zoom_dists) or 0.1)
    xlim = (min(zoom_rates) - pad_r, max(zoom_rates) + pad_r)
    ylim = (min(zoom_dists) - pad_d, max(zoom_dists) + pad_d)
    in_zoom = {id(row) for _, row in frontier if row["beta"] is not None}
    zoomed = [
        {
            "rate": row["rate"],
            "distortion": row["distortion"],
            "series": name,
            "label": f"β = {row['beta']:g}" if id(row) in in_zoom else None,
        }
        for name, rows in series.items()
        for row in rows
    ]
    drawn_zoom = plots.draw_rate_distortion(
        ax_zoom, zoomed, entropy, xlim=xlim, ylim=ylim, series=order
    )
    ax_zoom.set_title("(b) zoom on the dotted box: the gaussian decoder's frontier", fontsize=10)
    box = Rectangle(
        (xlim[0], ylim[0]), xlim[1] - xlim[0], ylim[1] - ylim[0], fill=False, ls=":", lw=1
    )
    ax_all.add_patch(box)
    handles: dict[str, object] = {}
    for ax in (ax_all, ax_zoom):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(
        list(handles.values()), list(handles), fontsize=8, loc="outside lower center", ncols=3
    )
    fig.suptitle(
        "Alemi et al.'s discrete toy model: exact rate R and distortion D (nats), "
        f"entropy H = {entropy:.4g}"
    )
    plots.annotate_rate_distortion(ax_all, drawn_all)
    plots.annotate_rate_distortion(ax_zoom, drawn_zoom)
    plots.freeze_layout(fig)
    return fig


def plot_from_json(path: Path, out: Path | None = None) -> Path:
    """Draw :func:`figure` from a report written by this script into ``out`` (a PNG path;
    default: ``toy_rate_distortion.png`` beside the JSON)."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"{path} not found: run without --replot first to fit the models")
    out = path.with_name(PNG) if out is None else Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure(json.loads(path.read_text())).savefig(out, dpi=DPI)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/toy-rd"), help=OUT_HELP)
    parser.add_argument("--quick", action="store_true", help="β ∈ {0.5, 1, 2}, 100 steps")
    parser.add_argument(
        "--beta", default=None, help="β values (list or start:stop:step; default 0.2:2:0.2)"
    )
    parser.add_argument("--values", type=int, default=30, help="K, the number of values of x")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps per fit (default 2000)")
    parser.add_argument(
        "--replot", action="store_true", help=f"only redraw OUT/{PNG} from OUT/{JSON}"
    )
    args = parser.parse_args(argv)
    if args.replot:
        print(f"wrote {plot_from_json(args.out / JSON)}")
        return
    mode = {"beta": "0.5,1,2", "steps": 100} if args.quick else {"beta": "0.2:2:0.2", "steps": 2000}
    for key, value in mode.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    torch.set_num_threads(1)

    data = toy_data(num_values=args.values)
    betas = parse_betas(args.beta)
    fit = {"steps": args.steps, "lr": 0.1}
    series = {
        "gaussian decoder, K_z = 2": toy_sweep(
            betas, data=data, num_latent=2, decoder="gaussian", **fit
        ),
        "table decoder": toy_sweep(betas, data=data, decoder="table", **fit),
    }
    torch.manual_seed(0)
    target = fit_toy(ToyModel(data.p_x), target_rate=0.5, **fit).terms()
    series["table decoder, target rate 0.5"] = [{"beta": None, **target}]

    report = {
        "entropy": data.entropy,
        "true_information": data.true_information,
        "noise": data.noise,
        "series": series,
        **provenance(argv, script=__file__),  # command, commit, machine
    }
    path = write_json(args.out / JSON, report)
    png = plot_from_json(path)
    print(f"H = {data.entropy:.4f} nats; wrote {png} and {path}")
    for name, rows in series.items():
        print(name)
        for row in rows:
            beta = "  –  " if row["beta"] is None else f"{row['beta']:5.2f}"
            print(
                f"  β {beta}  R {row['rate']:.4f}  D {row['distortion']:.4f}  "
                f"I {row['information']:.4f}  ELBO {row['elbo']:.4f}"
            )


if __name__ == "__main__":
    main()
