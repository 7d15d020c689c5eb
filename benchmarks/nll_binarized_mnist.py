"""Headline benchmark: test negative log-likelihood on static binarised MNIST.

Trains each configuration on the 50 000 training images of the static
binarisation (Larochelle's files), selects the epoch with the best
**validation** ELBO (the test split is never used for training or selection),
and estimates the test NLL = −(1/N) Σ log p̂(x) with ``iw_log_likelihood`` at
5000 importance samples (Burda et al. 2016). One JSON row per configuration:
architecture, objective, prior, epochs, wall time, device, test NLL, test
ELBO, rate and distortion.

Published numbers to compare with (test NLL, nats): Burda et al. (784-200-200-50,
3280 epochs) VAE 88.71, IWAE k=5 87.63, IWAE k=50 87.10; pythae (784-400-40) VAE 89.78,
IWAE-50 86.82, VampPrior 85.79 (its configurations train the VAE 500 epochs at lr 1e-4,
the VampPrior 2000 and IWAE-50 3280).

The epoch is selected by the validation ELBO, or with ``--select-iw-samples K`` by the
importance-weighted log-likelihood of every 5th validation point: the number the test
reports, which the ELBO does not rank alike (weight decay raises one and lowers the other).

    python benchmarks/nll_binarized_mnist.py --config vae-pythae --epochs 100
    python benchmarks/nll_binarized_mnist.py --quick  # seconds, into runs/nll-quick/; tests use it
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path

import pyro
import torch

from pyrovae.data import load_dataset
from pyrovae.infer.evaluation import elbo_terms, iw_log_likelihood
from pyrovae.provenance import provenance
from pyrovae.run import load_run, write_json
from pyrovae.train import train

#: the pythae network: 784-400-40, ReLU, L^B
PYTHAE = dict(hidden=[400], latent_dim=40, objective="meanfield", activation="relu")
#: pythae's own schedule for it: Adam 1e-4, × 10^(-1/5) at each milestone
PYTHAE_SCHEDULE = dict(lr=1e-4, lr_milestones=[200, 350, 500, 750, 1000], lr_gamma=10 ** (-1 / 5))
#: Burda et al.'s schedule: 3^i epochs at lr 1e-3 · 10^(-i/7), i = 0..7 (3280 epochs)
BURDA_SCHEDULE = dict(
    lr=1e-3, lr_milestones=[1, 4, 13, 40, 121, 364, 1093], lr_gamma=10 ** (-1 / 7)
)
#: Burda et al.'s network: 784-200-200-50, tanh
BURDA = dict(hidden=[200, 200], latent_dim=50, activation="tanh")
#: the convolutional encoder of the CPU-budget rows (and its mirror for conv decoders);
#: the PixelCNN of 3 gated layers × 16 channels is what a 2-core CPU trains in minutes
CONV = dict(
    encoder="conv",
    conv_channels=[32, 64],
    kernel_size=4,
    hidden=[256],
    latent_dim=32,
    activation="relu",
    objective="meanfield",
    pixelcnn_layers=3,
    pixelcnn_channels=16,
)

#: name -> (RunConfig overrides, what it reproduces)
CONFIGS: dict[str, tuple[dict, str]] = {
    "vae-pythae": (
        {**PYTHAE, "lr_milestones": [200, 250]},
        "pythae VAE 784-400-40 (89.78 nats with 200 importance samples)",
    ),
    "vae-pythae-schedule": (
        {**PYTHAE, **PYTHAE_SCHEDULE},
        "pythae VAE 784-400-40, pythae's schedule: lr 1e-4, ×10^(-1/5) at 200, 350, 500, 750…",
    ),
    "vae-pythae-warmup": (
        {**PYTHAE, "lr_milestones": [200, 250], "beta_schedule": "linear", "beta_warmup": 50.0},
        "vae-pythae with a 50-epoch linear KL warm-up (Sønderby et al. 2016)",
    ),
    "vae-pythae-exp": (
        {**PYTHAE, "lr_milestones": [200, 250], "scale_transform": "exp"},
        "vae-pythae with pythae's posterior parametrisation σ = exp(log σ² / 2)",
    ),
    "vae-pythae-wd100": (
        {**PYTHAE, "lr_milestones": [200, 250], "weight_decay": 100.0},
        "vae-pythae, MAP weights: L2 100 on the dataset-scaled loss, a N(0, 0.1²) weight prior",
    ),
    "vae-pythae-ema": (
        {**PYTHAE, "lr_milestones": [200, 250], "ema_decay": 0.9995},
        "vae-pythae evaluated at the moving average of its parameters (Polyak averaging, "
        "decay 0.9995: about 4 epochs)",
    ),
    "vae-pythae-ema-const": (
        {**PYTHAE, "ema_decay": 0.9995},
        "vae-pythae at a constant lr 1e-3, evaluated at the moving average of its parameters",
    ),
    "vae-pythae-ema-b20": (
        {**PYTHAE, "batch_size": 20, "ema_decay": 0.9999},
        "vae-pythae-ema-const at batch 20 (five times the steps; pythae's IWAE batch), the "
        "average over about 4 epochs",
    ),
    "vae-pythae-long": (
        {**PYTHAE, **BURDA_SCHEDULE},
        "the pythae network on Burda et al.'s 3280-epoch schedule (resumable across sessions)",
    ),
    "vae-burda": (
        {**BURDA, "objective": "meanfield"},
        "Burda et al. VAE 784-200-200-50 (88.71 nats at 3280 epochs)",
    ),
    "iwae5-burda": (
        {**BURDA, "objective": "iwae", "particles": 5},
        "Burda et al. IWAE k=5 (87.63 nats)",
    ),
    "iwae5-pythae": (
        {**PYTHAE, "objective": "iwae", "particles": 5, "lr_milestones": [200, 250]},
        "IWAE k=5 on the pythae network 784-400-40 (pythae's IWAE-50 there: 86.82)",
    ),
    "iwae10-pythae-ema": (
        {**PYTHAE, "objective": "iwae", "particles": 10, "ema_decay": 0.9995},
        "IWAE k=10 on the pythae network at a constant lr 1e-3, evaluated at the moving "
        "average of its parameters",
    ),
    "iwae50-pythae-ema": (
        {**PYTHAE, "objective": "iwae", "particles": 50, "ema_decay": 0.9995},
        "IWAE k=50 on the pythae network at a constant lr 1e-3, Polyak-averaged (pythae: "
        "86.82 nats after 3280 epochs at batch 20)",
    ),
    "vamp-pythae": (
        {**PYTHAE, "prior": "vamp", "prior_components": 500, "lr_milestones": [200, 250]},
        "pythae VampPrior K=500, 784-400-40 (85.79 nats; its config trains 2000 epochs)",
    ),
    "vamp-pythae-ema": (
        {**PYTHAE, "prior": "vamp", "prior_components": 500, "ema_decay": 0.9995},
        "VampPrior K=500 on the pythae network at a constant lr 1e-3, evaluated at the moving "
        "average of its parameters (pythae: 85.79 nats after 2000 epochs at lr 1e-4)",
    ),
    "iwae50-burda": (
        {**BURDA, "objective": "iwae", "particles": 50},
        "Burda et al. IWAE k=50 (87.10 nats)",
    ),
    "conv-vae": (
        {**CONV, "decoder": "conv"},
        "a conv VAE: the conv encoder and its mirror, transposed convolutions",
    ),
    "pixelcnn-vae": (
        {**CONV, "decoder": "pixelcnn"},
        "a PixelCNN VAE (PixelVAE's class, Gulrajani et al. 2017: 79.66 nats)",
    ),
    "pixelcnn-vamp": (
        {**CONV, "decoder": "pixelcnn", "prior": "vamp", "prior_components": 500},
        "a PixelCNN VAE with the VampPrior (PixelHVAE + VampPrior, Tomczak & Welling 2018: "
        "79.78 nats)",
    ),
}
#: published test NLLs (nats) drawn beside ours in the figure
PUBLISHED = {
    "pythae VAE": 89.78,
    "Burda VAE": 88.71,
    "Burda IWAE-5": 87.63,
    "Burda IWAE-50": 87.10,
    "pythae VampPrior": 85.79,
    "PixelVAE": 79.66,
    "PixelHVAE + VampPrior": 79.78,
}
#: data points per IW pass: 100 samples × 50 points keeps each (rows, 784) tensor at 16 MB
IW_BATCH = 50
BASE = dict(
    dataset="mnist-binarized",
    likelihood="bernoulli",
    batch_size=100,
    lr=1e-3,
    optimizer="adam",
    iw_samples=0,
    seed=0,
)


#: validation points of the importance-weighted selection check (every 5th: all classes)
SELECT_STRIDE = 5


def _iw(model, guide, x: torch.Tensor, samples: int) -> torch.Tensor:
    """Per-point IW log-likelihoods, in passes of ≤ 100 samples × IW_BATCH points."""
    return iw_log_likelihood(
        model, guide, x, samples, chunk_size=min(samples, 100), batch_size=IW_BATCH
    )


def _validate(run_dir: Path, x: torch.Tensor, iw_samples: int = 0) -> dict[str, float]:
    """The validation ELBO and, with ``iw_samples``, the IW log-likelihood of every 5th point."""
    _, model, guide, _ = load_run(run_dir)
    pyro.set_rng_seed(0)  # common random numbers: checks differ by the model alone
    out = {"valid_elbo": elbo_terms(model, guide, x, batch_size=1000)["elbo"].mean().item()}
    if iw_samples:
        out["valid_iw"] = _iw(model, guide, x[::SELECT_STRIDE], iw_samples).mean().item()
    return out


def select(
    name,
    data,
    epochs,
    select_every,
    device,
    run_dir: Path,
    resume=False,
    settings=None,
    select_iw: int = 0,
) -> dict:
    """Train with a validation check every ``select_every`` epochs; keep the best checkpoint.

    The best checkpoint has the highest validation ELBO or, with ``select_iw`` > 0, the
    highest importance-weighted log-likelihood of every 5th validation point with that
    many samples: the criterion the test reports, where the ELBO rewards models that
    suit the guide (regularised ones, for instance) over models that fit the data.
    Writes ``best-checkpoint.pt`` and ``selection.json`` (history, best epoch, wall time)
    into the run folder after every check, so an interrupted benchmark loses nothing;
    ``resume`` continues from the last check that ``selection.json`` records;
    ``settings`` replaces the configuration's own RunConfig overrides.
    """
    key = "valid_iw" if select_iw else "valid_elbo"
    config = {**BASE, **(settings or CONFIGS[name][0]), "device": device}
    best_path = run_dir / "best-checkpoint.pt"
    history, best, done, spent = [], None, 0, 0.0
    if resume and (run_dir / "selection.json").exists():
        previous = json.loads((run_dir / "selection.json").read_text())
        history, best = previous["history"], previous["best"]
        done, spent = previous["epochs"], previous["train_wall_seconds"]
    start = time.perf_counter() - spent
    while done < epochs:
        first = done == 0  # a fresh run starts afresh
        done = min(epochs, done + select_every)
        train(
            {**config, "epochs": done},
            run_dir,
            resume=not first,
            overwrite=first,
            dataset=data,
            plots=False,
        )
        history.append({"epoch": done, **_validate(run_dir, data.valid, select_iw)})
        iw = f", IW ({select_iw}) {history[-1]['valid_iw']:.2f}" if select_iw else ""
        print(f"{name}: epoch {done} valid ELBO {history[-1]['valid_elbo']:.2f}{iw}", flush=True)
        if best is None or history[-1][key] > best.get(key, -math.inf):
            best = history[-1]
            shutil.copyfile(run_dir / "checkpoint.pt", best_path)
        selection = {
            "history": history,
            "best": best,
            "selected_by": key,
            "epochs": done,
            "train_wall_seconds": time.perf_counter() - start,
        }
        write_json(run_dir / "selection.json", selection)
    return selection


def _architecture(overrides: dict) -> str:
    mlp = f"784-{'-'.join(map(str, overrides['hidden']))}-{overrides['latent_dim']}"
    if overrides.get("encoder", "mlp") == "mlp" and overrides.get("decoder", "mlp") == "mlp":
        return mlp
    conv = f"conv {'-'.join(map(str, overrides['conv_channels']))}, then {mlp[4:]}"
    decoder = overrides.get("decoder", "mlp")
    if decoder == "pixelcnn":
        pixel = f"{overrides['pixelcnn_layers']}x{overrides['pixelcnn_channels']}"
        return f"encoder {conv}; decoder its mirror + gated PixelCNN {pixel}"
    return f"encoder {conv}; decoder {'its mirror' if decoder == 'conv' else decoder}"


def run_config(
    name,
    data,
    epochs,
    select_every,
    iw_samples,
    device,
    runs_dir,
    test_limit,
    eval_only=False,
    resume=False,
    milestones=None,
    select_iw=0,
    seed=0,
    rounds=0,
):
    """Train (unless ``eval_only``), select on validation, evaluate the test NLL: a JSON row.

    ``seed`` seeds the run (initialisation, data order, noise); a nonzero seed trains in
    ``<name>-seed<seed>``. ``rounds`` > 0 adds pythae's protocol: the mean over ``rounds``
    independent 200-sample IW estimates (``test_nll_200_rounds``), beside the main one.
    """
    overrides, reproduces = CONFIGS[name]
    if milestones is not None:
        overrides = {**overrides, "lr_milestones": milestones}
    overrides = {**overrides, "seed": seed}
    run_dir = runs_dir / (name if seed == 0 else f"{name}-seed{seed}")
    if eval_only:
        selection = json.loads((run_dir / "selection.json").read_text())
    else:
        selection = select(
            name,
            data,
            epochs,
            select_every,
            device,
            run_dir,
            resume,
            settings=overrides,
            select_iw=select_iw,
        )
    best = selection["best"]
    _, model, guide, _ = load_run(run_dir, device=device, checkpoint=run_dir / "best-checkpoint.pt")
    test = data.test[:test_limit].to(next(model.parameters()).device)
    pyro.set_rng_seed(0)
    start = time.perf_counter()
    terms = elbo_terms(model, guide, test, batch_size=1000)
    ll = _iw(model, guide, test, iw_samples)
    eval_seconds = time.perf_counter() - start
    extra = {}
    if rounds:
        estimates = torch.stack([-_iw(model, guide, test, 200).mean() for _ in range(rounds)])
        extra = {
            "test_nll_200_rounds": estimates.mean().item(),
            "test_nll_200_rounds_each": estimates.tolist(),
        }
    return {
        "config": name,
        "seed": seed,
        "reproduces": reproduces,
        "architecture": _architecture(overrides),
        "activation": overrides["activation"],
        "objective": overrides["objective"],
        "particles": overrides.get("particles", 1),
        "lr": {**BASE, **overrides}["lr"],
        "batch_size": {**BASE, **overrides}["batch_size"],
        "lr_gamma": overrides.get("lr_gamma", 0.1),
        "beta_schedule": overrides.get("beta_schedule", "constant"),
        "lr_milestones": overrides.get("lr_milestones", []),
        "prior": overrides.get("prior", "standard"),
        "weight_decay": overrides.get("weight_decay", 0.0),
        "ema_decay": overrides.get("ema_decay", 0.0),
        "epochs_trained": selection["epochs"],
        "selected_by": selection.get("selected_by", "valid_elbo"),
        "selected_epoch": best["epoch"],
        "selected_valid_elbo": best["valid_elbo"],
        **({"selected_valid_iw": best["valid_iw"]} if "valid_iw" in best else {}),
        "valid_history": selection["history"],
        "train_wall_seconds": selection["train_wall_seconds"],
        "train_points": data.train.shape[0],
        "eval_wall_seconds": eval_seconds,
        "device": str(next(model.parameters()).device),
        "test_points": len(test),
        "iw_samples": iw_samples,
        "test_nll": -ll.mean().item(),
        "test_nll_standard_error": (ll.std() / len(ll) ** 0.5).item(),
        "test_elbo": terms["elbo"].mean().item(),
        "test_rate": terms["rate"].mean().item(),
        "test_distortion": terms["distortion"].mean().item(),
        **extra,
    }


def plot(rows: list[dict], path: Path) -> Path:
    """The benchmark's figure, from its JSON rows (seed-spread rows, ``seed`` ≠ 0, left out).

    (a) The validation ELBO of the runs whose epoch was selected by it, at every check, and
    (b) the same zoomed on the selected values; (c) the validation IW log-likelihood of the
    runs selected by that (``selected_by``): each run is drawn in the quantity it was
    selected by, its selected epoch marked. (d) Test NLL with its standard error, the marker
    saying the protocol (K importance samples, test images), beside the published numbers,
    each labelled with its own K. One colour per configuration, named in the legend.
    """
    import re

    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    #: importance samples K behind each published number: Burda et al. (2016) and Tomczak &
    #: Welling (2018) used 5000; pythae's model cards: its VAE "NLL (200 IS)", its VampPrior
    #: "NLL (5000 IS)"; PixelVAE: 5000 as docs/results.md states
    published_samples = {
        "pythae VAE": 200,
        "Burda VAE": 5000,
        "Burda IWAE-5": 5000,
        "Burda IWAE-50": 5000,
        "pythae VampPrior": 5000,
        "PixelVAE": 5000,
        "PixelHVAE + VampPrior": 5000,
    }
    rows = [r for r in rows if not r.get("seed")]  # seed spreads have their own summary
    colours = matplotlib.colormaps["tab20"]
    colour = {r["config"]: colours(i % colours.N) for i, r in enumerate(rows)}
    full = {r["config"]: r.get("test_points", 0) >= 10000 for r in rows}
    fig = Figure(figsize=(14, 8.4), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 3, width_ratios=[1, 1, 1.2])
    ax_all, ax_zoom = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0])
    ax_iw, ax_key = fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 1])
    ax_nll = fig.add_subplot(grid[:, 2])

    def draw(ax, row, key, selected):
        epochs = [h["epoch"] for h in row["valid_history"] if h.get(key) is not None]
        values = [h[key] for h in row["valid_history"] if h.get(key) is not None]
        style = "-" if full[row["config"]] else ":"
        ax.plot(epochs, values, style, color=colour[row["config"]], lw=1.3, marker=".", ms=3)
        ax.plot(row["selected_epoch"], selected, "o", color=colour[row["config"]], ms=6)

    by_elbo = [r for r in rows if r.get("selected_by", "valid_elbo") == "valid_elbo"]
    by_iw = [r for r in rows if r.get("selected_by") == "valid_iw"]
    for r in by_elbo:
        for ax in (ax_all, ax_zoom):
            draw(ax, r, "valid_elbo", r["selected_valid_elbo"])
    for r in by_iw:
        draw(ax_iw, r, "valid_iw", r["selected_valid_iw"])
    chosen = [r["selected_valid_elbo"] for r in by_elbo if full[r["config"]]]
    if chosen:  # the zoom: the selected values of the full-data runs
        ax_zoom.set_ylim(min(chosen) - 1.0, max(chosen) + 0.6)
    ks = {
        m.group(1)
        for r in by_iw
        for m in [re.search(r"--select-iw-samples (\d+)", r.get("command", ""))]
        if m
    }
    k_iw = f"K = {'/'.join(sorted(ks))}" if ks else "K as run"
    ax_all.set_title("(a) validation ELBO at every check\nof the runs selected by it", fontsize=9)
    ax_zoom.set_title(
        "(b) the same, zoomed on the selected\nvalues (●) of the full-data runs", fontsize=9
    )
    ax_iw.set_title(
        f"(c) validation IW log-likelihood ({k_iw}, every\n{SELECT_STRIDE}th image) "
        "of the runs selected by it (●)",
        fontsize=9,
    )
    for ax in (ax_all, ax_zoom, ax_iw):
        ax.set_xscale("log")
        ax.set_xlabel("epoch (log scale)")
        ax.grid(True, alpha=0.3)
    ax_all.set_ylabel("validation ELBO (nats)")
    ax_zoom.set_ylabel("validation ELBO (nats)")
    ax_iw.set_ylabel("validation log p(x), IW (nats)")
    # the key: one entry per configuration (†: the CPU budget, dotted), then the markers of (d)
    handles = [Line2D([], [], color=colour[r["config"]], lw=2) for r in rows]
    labels = [r["config"] + ("" if full[r["config"]] else " †") for r in rows]
    ax_key.set_axis_off()
    key = ax_key.legend(
        handles,
        labels,
        loc="upper center",
        ncols=2,
        fontsize=7.5,
        title="configuration († CPU budget: 5000 train images, dotted)",
        title_fontsize=7.5,
    )
    ax_key.add_artist(key)
    # (d): test NLL, ours (sorted) then the published numbers (sorted)
    ours = sorted(rows, key=lambda r: (not full[r["config"]], r["test_nll"]))
    names, values, errors, styles = [], [], [], []
    for r in ours:
        k, n = r.get("iw_samples"), r.get("test_points")
        names.append(r["config"] if full[r["config"]] else f"{r['config']} (K={k}, {n} images)")
        values.append(r["test_nll"])
        errors.append(r["test_nll_standard_error"])
        styles.append({"marker": "o" if k == 5000 else "s", "color": colour[r["config"]]})
    for label, value in sorted(PUBLISHED.items(), key=lambda t: t[1]):
        k = published_samples.get(label)
        names.append(f"{label} (published, K={k if k else '?'})")
        values.append(value)
        errors.append(0.0)
        styles.append({"marker": "D", "color": "black", "mfc": "white" if k != 5000 else "black"})
    where = np.arange(len(names))
    for y, v, e, st in zip(where, values, errors, styles):
        ax_nll.errorbar(v, y, xerr=e or None, ms=6, ls="none", capsize=2, **st)
        ax_nll.annotate(
            f"{v:.2f}",
            (v + e, y),
            xytext=(5, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )
    ax_nll.axhline(len(ours) - 0.5, color="0.5", lw=0.8)
    ax_nll.set_yticks(where, names, fontsize=8)
    ax_nll.set_ylim(len(names) - 0.5, -0.5)
    span = max(v + e for v, e in zip(values, errors)) - min(values)
    ax_nll.set_xlim(
        min(values) - 0.04 * span, max(v + e for v, e in zip(values, errors)) + 0.14 * span
    )
    ax_nll.grid(True, axis="x", alpha=0.3)
    ax_nll.set_xlabel("test NLL (nats; lower is better)")
    ax_nll.set_title("(d) test NLL ± standard error", fontsize=9)
    protocols = [
        ("o", "0.3", "0.3", "ours: K = 5000 importance samples, 10 000 test images"),
        ("s", "0.3", "0.3", "ours, CPU budget: K = 200, 500 test images"),
        ("D", "black", "black", "published, K = 5000"),
        ("D", "black", "white", "published, K = 200"),
    ]
    ax_key.legend(
        [Line2D([], [], ls="none", marker=m, color=c, mfc=f) for m, c, f, _ in protocols],
        [t for *_, t in protocols],
        loc="lower center",
        fontsize=7.5,
        title="(d)'s markers: the protocol",
        title_fontsize=7.5,
    )
    fig.suptitle("static binarised MNIST: model selection on validation, test NLL", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        action="append",
        choices=sorted(CONFIGS),
        help="configuration(s) to run [default: vae-pythae]",
    )
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument(
        "--select-every", type=int, default=5, help="epochs between validation checks"
    )
    parser.add_argument("--iw-samples", type=int, default=5000)
    parser.add_argument(
        "--select-iw-samples",
        type=int,
        default=0,
        help="select the epoch by the IW log-likelihood of every 5th validation point with "
        "this many samples, not by the validation ELBO [default: 0, the ELBO]",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/nll"))
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/nll_binarized_mnist.json")
    )
    parser.add_argument(
        "--eval-only",
        action="store_true",
        help="skip training: evaluate the selected checkpoint of an earlier run",
    )
    parser.add_argument(
        "--lr-milestones",
        type=lambda v: [int(m) for m in v.split(",") if m],
        default=None,
        help="epochs at which the learning rate drops tenfold, e.g. 40,50 "
        "[default: each configuration's own]",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted or shorter run from its last validation check",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--quick", action="store_true", help="tiny slices, 1 epoch, 20 samples: a smoke test"
    )
    parser.add_argument(
        "--train-size", type=int, default=None, help="train on the first N images (a CPU budget)"
    )
    parser.add_argument(
        "--test-size",
        type=int,
        default=None,
        help="evaluate N test images spread evenly over the (class-ordered) test file",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="run seed; nonzero seeds train in <config>-seed<N>"
    )
    parser.add_argument(
        "--rounds-200",
        type=int,
        default=0,
        help="also report the mean of this many 200-sample IW estimates (pythae's protocol: 5)",
    )
    parser.add_argument(
        "--replot",
        action="store_true",
        help="only redraw the figure (--out with .png) from the rows in --out; run nothing",
    )
    args = parser.parse_args(argv)
    if args.replot:
        if not args.out.is_file():
            sys.exit(f"{args.out} not found: give --out the benchmark's JSON")
        rows = json.loads(args.out.read_text())
        print(f"wrote {plot(rows, args.out.with_suffix('.png'))}")
        return rows
    if args.threads:
        torch.set_num_threads(args.threads)
    record = provenance(argv or sys.argv[1:], script=__file__)  # command, commit, machine
    data = load_dataset("mnist-binarized", data_dir=args.data_dir)
    test_limit = args.test_size
    if args.train_size:
        data = dataclasses.replace(data, train=data.train[: args.train_size])
    if args.test_size:  # evenly spaced: the test file is ordered by class (zeros first)
        spread = torch.linspace(0, len(data.test) - 1, args.test_size).round().long()
        data = dataclasses.replace(data, test=data.test[spread])
        test_limit = None
    if args.quick:
        if args.out == Path("benchmarks/results/nll_binarized_mnist.json"):  # not the results
            args.out = Path("runs/nll-quick/nll_binarized_mnist.json")
        data = dataclasses.replace(data, train=data.train[:1000], valid=data.valid[:200])
        args.epochs, args.select_every, args.iw_samples, test_limit = 2, 1, 20, 200
        args.select_iw_samples = min(args.select_iw_samples, 10)
    rows = [
        run_config(
            name,
            data,
            args.epochs,
            args.select_every,
            args.iw_samples,
            args.device,
            args.runs_dir,
            test_limit,
            eval_only=args.eval_only,
            resume=args.resume,
            milestones=args.lr_milestones,
            select_iw=args.select_iw_samples,
            seed=args.seed,
            rounds=args.rounds_200,
        )
        for name in (args.config or ["vae-pythae"])
    ]
    for row in rows:
        row.update(record)
        if args.test_size:
            row["test_selection"] = "evenly spaced over the class-ordered test file"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() and not args.quick else []
    done = {(row["config"], row["seed"]) for row in rows}
    keep = [r for r in previous if (r["config"], r.get("seed", 0)) not in done]
    args.out.write_text(json.dumps(keep + rows, indent=2) + "\n")
    print(f"wrote {args.out} and {plot(keep + rows, args.out.with_suffix('.png'))}")
    for r in rows:
        print(
            f"{r['config']}: test NLL {r['test_nll']:.2f} ± {r['test_nll_standard_error']:.2f} "
            f"(ELBO {r['test_elbo']:.2f}), epoch {r['selected_epoch']}/{r['epochs_trained']}, "
            f"{r['train_wall_seconds'] / 60:.1f} min training"
        )
    return rows


if __name__ == "__main__":
    main()
