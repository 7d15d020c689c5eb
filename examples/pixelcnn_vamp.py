"""Seed 003's "-+v" experiment: conv encoder, PixelCNN decoder, VampPrior, β = 0.1 … 1.1.

Alemi et al. (2018, *Fixing a Broken ELBO*, section 4.2) train on static binarised
MNIST a convolutional encoder (−), an autoregressive PixelCNN decoder (+) and a
VampPrior marginal (v) with the objective D + βR. With a decoder that can model the
images alone, the ELBO's optimum may leave z unused; β decides how much the code
carries. This script runs

1. the β sweep of -+v (``pyrovae.sweep.sweep``): the rate–distortion plane and, per β,
   reconstructions and generations (``OUT/sweep/summary/``);
2. four corners at β = 1: MLP/MLP, conv/conv, conv/PixelCNN with the standard prior,
   conv/PixelCNN with the VampPrior (the sweep's β = 1 run) — rate, distortion, ELBO and
   IW log-likelihood side by side;

then evaluates every run on ``--test-size`` test images spread evenly over the test file
(which is ordered by class: its first thousand images are all zeros) — R, D and ELBO on
all of them, the IW log-likelihood on every ``--iw-every``-th — and writes ``--json``
(numbers, budget, wall times) and the figures (RD plane, reconstructions and samples by β)
to ``--figures``. Every run is an ordinary resumable run folder, and every evaluation is
kept beside it (``evaluation-spread.json``): rerun the same command after an interruption
and it continues where it stopped.

The CPU budget of ``docs/results.md`` (one torch thread each; the sweep's β values were
split over two processes, then one call writes the figures and the JSON)::

    python examples/pixelcnn_vamp.py --part sweep --epochs 10 --betas 0.1,0.3,0.5,0.7
    python examples/pixelcnn_vamp.py --part sweep --epochs 10 --betas 1.1,1.0
    python examples/pixelcnn_vamp.py --part corners --epochs 10
    python examples/pixelcnn_vamp.py --part all --epochs 10 --betas 0.1,0.3,0.5,0.7,1.0,1.1 \
        --json docs/results/pixelcnn_vamp.json --figures docs/results/pixelcnn_vamp

``--part replot`` redraws the figures from ``--json`` without training or evaluating: the
rate–distortion plane from the JSON alone, the reconstructions and samples by β from the
run folders it names, when they are on this machine (:func:`plot_from_json`)::

    python examples/pixelcnn_vamp.py --part replot --json docs/results/pixelcnn_vamp.json \
        --figures docs/results/pixelcnn_vamp

The paper's budget needs a GPU (full 50 000 training images, more epochs, a larger
PixelCNN, all 10 000 test images)::

    python examples/pixelcnn_vamp.py --device cuda --train-size 50000 --test-size 10000 \\
        --epochs 100 --betas 0.1:1.1:0.1 --pixelcnn-layers 5 --pixelcnn-channels 32 \\
        --latent 64 --out runs/pixelcnn-vamp-full --json runs/pixelcnn-vamp-full/results.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import pyro
import torch

from pyrovae.data import load_dataset
from pyrovae.provenance import provenance
from pyrovae.run import RunFolder, write_json
from pyrovae.sweep import parse_betas, run_folder, sweep
from pyrovae.train import train

#: the four corners at β = 1: (encoder, decoder, prior)
CORNERS = {
    "mlp/mlp, standard": ("mlp", "mlp", "standard"),
    "conv/conv, standard": ("conv", "conv", "standard"),
    "conv/pixelcnn, standard": ("conv", "pixelcnn", "standard"),
    "conv/pixelcnn, vamp": ("conv", "pixelcnn", "vamp"),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--part",
        choices=["all", "sweep", "corners", "evaluate", "report", "replot"],
        default="all",
        help="evaluate: only the sweep's runs at --betas (to spread it over processes); "
        "replot: only the figures, from --json",
    )
    p.add_argument("--out", type=Path, default=Path("runs/pixelcnn-vamp"))
    p.add_argument("--json", type=Path, default=Path("runs/pixelcnn-vamp/results.json"))
    p.add_argument("--figures", type=Path, default=Path("runs/pixelcnn-vamp/figures"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--train-size", type=int, default=5000, help="first N training images")
    p.add_argument(
        "--test-size", type=int, default=1000, help="N test images, evenly spaced over the file"
    )
    p.add_argument(
        "--iw-every", type=int, default=5, help="IW log-likelihood on every k-th of them"
    )
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--betas", default="0.1,0.3,0.5,0.7,1.0,1.1")
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--hidden", default="256")
    p.add_argument("--pixelcnn-layers", type=int, default=3)
    p.add_argument("--pixelcnn-channels", type=int, default=16)
    p.add_argument("--iw-samples", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def base_config(args) -> dict:
    return {
        "dataset": "mnist-binarized",
        "data_dir": args.data_dir,
        "latent_dim": args.latent,
        "hidden": [int(h) for h in args.hidden.split(",")],
        "activation": "relu",
        "conv_channels": [32, 64],
        "kernel_size": 4,
        "pixelcnn_layers": args.pixelcnn_layers,
        "pixelcnn_channels": args.pixelcnn_channels,
        "pixelcnn_kernel": 5,
        "epochs": args.epochs,
        "batch_size": 100,
        "lr": 1e-3,
        "iw_samples": args.iw_samples,
        "threads": args.threads,
        "device": args.device,
        "seed": args.seed,
    }


def budget_data(args):
    """Static binarised MNIST: the first ``train_size`` training images (the training file
    is shuffled) and ``test_size`` test images spread evenly over the test file (which is
    ordered by class)."""
    data = load_dataset("mnist-binarized", data_dir=args.data_dir)
    spread = torch.linspace(0, len(data.test) - 1, args.test_size).round().long()
    return dataclasses.replace(data, train=data.train[: args.train_size], test=data.test[spread])


def run_sweep(args, data) -> None:
    config = {**base_config(args), "encoder": "conv", "decoder": "pixelcnn"}
    sweep(config, parse_betas(args.betas), ["vamp"], args.out / "sweep", dataset=data, log=print)


def corner_folder(args, name: str) -> Path:
    encoder, decoder, prior = CORNERS[name]
    if (encoder, decoder, prior) == ("conv", "pixelcnn", "vamp"):
        return run_folder(args.out / "sweep", "vamp", 1.0)  # the sweep's β = 1 run
    return args.out / "corners" / f"{encoder}-{decoder}-{prior}"


def run_corners(args, data) -> None:
    for name, (encoder, decoder, prior) in CORNERS.items():
        folder = corner_folder(args, name)
        if prior == "vamp" and decoder == "pixelcnn":
            continue  # trained by the sweep
        status = RunFolder(folder).read_status() if RunFolder(folder).exists() else {}
        if status.get("state") == "complete":
            print(f"{name}: finished ({folder})")
            continue
        config = {**base_config(args), "encoder": encoder, "decoder": decoder, "prior": prior}
        train(config, folder, resume=True, dataset=data)
        print(f"{name}: trained ({folder})", flush=True)


def evaluate(args, folder: Path, data) -> dict:
    """R, D, ELBO (analytic KL, one z per point) on the spread test images and the IW
    log-likelihood on every ``iw_every``-th, with standard errors; kept in the run folder."""
    from pyrovae.infer.evaluation import elbo_terms, iw_log_likelihood
    from pyrovae.run import load_run

    path = folder / "evaluation-spread.json"
    protocol = {"test_size": args.test_size, "iw_every": args.iw_every, "iw": args.iw_samples}
    if path.exists():
        kept = json.loads(path.read_text())
        if kept.get("protocol") == protocol:
            return kept
    _, model, guide, _ = load_run(folder, device=args.device)
    x = data.test.to(next(model.parameters()).device)
    pyro.set_rng_seed(args.seed)
    start = time.perf_counter()
    terms = elbo_terms(model, guide, x, batch_size=100)
    ll = iw_log_likelihood(model, guide, x[:: args.iw_every], args.iw_samples)
    numbers = {"protocol": protocol, "seconds": time.perf_counter() - start}
    for key, values in [*terms.items(), ("iw_log_likelihood", ll)]:
        values = values.double()
        numbers[key] = values.mean().item()
        numbers[f"{key}_se"] = (values.std() / len(values) ** 0.5).item()
    write_json(path, numbers)
    return numbers


def _numbers(args, folder: Path, data) -> dict:
    run = RunFolder(folder)
    summary = run.read_summary()
    numbers = evaluate(args, folder, data)
    keys = ("rate", "distortion", "elbo", "iw_log_likelihood")
    return {
        **{k: numbers[k] for k in keys},
        **{f"{k}_se": numbers[f"{k}_se"] for k in keys},
        "epochs": summary["epoch"],
        "train_seconds": sum(row.get("seconds", 0.0) for row in run.read_metrics()),
        "eval_seconds": numbers["seconds"],
        "parameters": summary.get("parameters"),
        "run": str(folder),
    }


def report(args, data, wall: float) -> dict:
    from pyrovae.sweep import write_figures, write_table

    rows = []
    for beta in parse_betas(args.betas):
        folder = run_folder(args.out / "sweep", "vamp", beta)
        rows.append({"prior": "vamp", "beta": beta, **_numbers(args, folder, data)})
        print(f"evaluated β = {beta:g}", flush=True)
    corners = {name: _numbers(args, corner_folder(args, name), data) for name in CORNERS}
    result = {
        "experiment": "seed 003 -+v: conv encoder, PixelCNN decoder, VampPrior (Alemi et al.)",
        **provenance(script=__file__),  # command, commit, machine
        "budget": {
            "dataset": "mnist-binarized (static): the first train_size training images; "
            "test_size test images evenly spaced over the class-ordered test file (R, D, "
            "ELBO), every iw_every-th of them for the IW log-likelihood",
            "train_size": args.train_size,
            "test_size": args.test_size,
            "iw_every": args.iw_every,
            "iw_samples": args.iw_samples,
            "epochs": args.epochs,
            "threads": args.threads,
            "device": args.device,
            "seeds": [args.seed],
        },
        "config": base_config(args),
        "sweep": rows,
        "corners_beta_1": corners,
        "report_seconds": wall,
    }
    write_json(args.json, result)
    write_table(rows, args.figures)
    write_figures(rows, args.figures, data)
    return result


def plot_from_json(path: Path, out: Path, data=None) -> list[Path]:
    """The figures of a results JSON written by this script, into the folder ``out``: the
    rate–distortion plane (``rate_distortion.png``) from the JSON's sweep rows and, given the
    budget's ``data``, the reconstructions and samples by β from the run folders the rows
    name (:func:`pyrovae.sweep.write_figures`)."""
    from pyrovae.sweep import write_figures

    rows = json.loads(Path(path).read_text())["sweep"]
    return write_figures(rows, out, data)


def replot(args) -> list[Path]:
    """``--part replot``: the figures from ``--json``, the test images of its budget."""
    if not args.json.is_file():
        raise SystemExit(f"{args.json} not found: give --json of a finished report")
    result = json.loads(args.json.read_text())
    args.train_size = result["budget"]["train_size"]
    args.test_size = result["budget"]["test_size"]
    runs = [Path(row["run"]) for row in result["sweep"]]
    data = budget_data(args) if all(RunFolder(r).exists() for r in runs) else None
    if data is None:
        print("the sweep's run folders are not here: the rate–distortion plane only")
    paths = plot_from_json(args.json, args.figures, data)
    print("wrote " + ", ".join(str(p) for p in paths))
    return paths


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.part == "replot":
        replot(args)
        return None
    start = time.perf_counter()
    data = budget_data(args)
    if args.part in ("all", "sweep"):
        run_sweep(args, data)
    if args.part in ("all", "corners"):
        run_corners(args, data)
    if args.part == "evaluate":
        for beta in parse_betas(args.betas):
            evaluate(args, run_folder(args.out / "sweep", "vamp", beta), data)
            print(f"evaluated β = {beta:g}", flush=True)
    if args.part in ("all", "report"):
        result = report(args, data, time.perf_counter() - start)
        for name, row in result["corners_beta_1"].items():
            print(
                f"{name:26s} R {row['rate']:7.2f}  D {row['distortion']:7.2f}  "
                f"ELBO {row['elbo']:8.2f}  IW {row['iw_log_likelihood']:8.2f}"
            )
        return result
    return None


if __name__ == "__main__":
    main()
