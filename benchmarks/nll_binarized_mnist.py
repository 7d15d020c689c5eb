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
import shlex
import shutil
import sys
import time
from pathlib import Path

import pyro
import torch

from pyrovae.data import load_dataset
from pyrovae.infer.evaluation import elbo_terms, iw_log_likelihood
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
):
    """Train (unless ``eval_only``), select on validation, evaluate the test NLL: a JSON row."""
    overrides, reproduces = CONFIGS[name]
    if milestones is not None:
        overrides = {**overrides, "lr_milestones": milestones}
    run_dir = runs_dir / name
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
    return {
        "config": name,
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
    }


def plot(rows: list[dict], path: Path) -> Path:
    """Validation ELBO by epoch (the selected epochs marked); test NLL beside published ones."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    curves, scores = fig.subplots(1, 2)
    colours = matplotlib.colormaps["tab20"]  # distinct colours for up to 20 runs
    for i, row in enumerate(rows):
        epochs = [h["epoch"] for h in row["valid_history"]]
        values = [h["valid_elbo"] for h in row["valid_history"]]
        colour = colours(i % colours.N)
        curves.plot(epochs, values, label=row["config"], color=colour)
        curves.plot(row["selected_epoch"], row["selected_valid_elbo"], "o", color=colour)
    best = max(r["selected_valid_elbo"] for r in rows)
    curves.set_ylim(best - 12, best + 1)
    curves.set(xlabel="epoch", ylabel="validation ELBO (nats)", title="model selection")
    curves.legend(fontsize=7, loc="lower right", ncol=2)
    names = [r["config"] for r in rows]
    nll = [r["test_nll"] for r in rows]
    where = range(len(rows))
    scores.errorbar(nll, where, xerr=[r["test_nll_standard_error"] for r in rows], fmt="o")
    scores.set_yticks(where, names)
    for label, value in PUBLISHED.items():
        scores.axvline(value, color="grey", linestyle="--", linewidth=0.8)
        scores.text(
            value,
            0.02,
            f" {label} (published)",
            rotation=90,
            fontsize=7,
            transform=scores.get_xaxis_transform(),
            va="bottom",
            ha="right",
        )
    scores.set_xlim(min(nll + list(PUBLISHED.values())) - 1, max(nll) + 1)
    scores.set_ylim(len(rows) - 0.5, -0.5)
    scores.set(
        xlabel="test NLL (nats; K = 5000, CPU-budget rows K = 200)",
        title="test NLL (lower is better)",
    )
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
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/nll_binarized_mnist.py", *(argv or sys.argv[1:])])
    if args.threads:
        torch.set_num_threads(args.threads)
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
        )
        for name in (args.config or ["vae-pythae"])
    ]
    for row in rows:
        row["command"] = command
        if args.test_size:
            row["test_selection"] = "evenly spaced over the class-ordered test file"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() and not args.quick else []
    keep = [r for r in previous if r["config"] not in {row["config"] for row in rows}]
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
