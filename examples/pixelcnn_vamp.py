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

and writes ``--json`` (numbers, budget, wall times) and copies the sweep's figures to
``--figures``. Every run is an ordinary resumable run folder: rerun the same command
after an interruption and it continues where it stopped.

The CPU budget of ``docs/results.md`` (one torch thread each; the sweep's β values were
split over two processes, then one call writes the figures and the JSON)::

    python examples/pixelcnn_vamp.py --part sweep --epochs 10 --betas 0.1,0.3,0.5,0.7
    python examples/pixelcnn_vamp.py --part sweep --epochs 10 --betas 1.1,1.0
    python examples/pixelcnn_vamp.py --part corners --epochs 10
    python examples/pixelcnn_vamp.py --part all --epochs 10 --betas 0.1,0.3,0.5,0.7,1.0,1.1 \
        --json docs/results/pixelcnn_vamp.json --figures docs/results/pixelcnn_vamp

The paper's budget needs a GPU (full 50 000 training images, more epochs, a larger
PixelCNN, all 10 000 test images)::

    python examples/pixelcnn_vamp.py --device cuda --train-size 50000 --test-size 10000 \\
        --epochs 100 --betas 0.1:1.1:0.1 --pixelcnn-layers 5 --pixelcnn-channels 32 \\
        --latent 64 --out runs/pixelcnn-vamp-full --json runs/pixelcnn-vamp-full/results.json
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

import torch

from pyrovae.data import load_dataset
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
    p.add_argument("--part", choices=["all", "sweep", "corners", "report"], default="all")
    p.add_argument("--out", type=Path, default=Path("runs/pixelcnn-vamp"))
    p.add_argument("--json", type=Path, default=Path("runs/pixelcnn-vamp/results.json"))
    p.add_argument("--figures", type=Path, default=Path("runs/pixelcnn-vamp/figures"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--train-size", type=int, default=5000, help="first N training images")
    p.add_argument("--test-size", type=int, default=500, help="first N test images")
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
    """Static binarised MNIST, cut to the first ``train_size`` / ``test_size`` images."""
    data = load_dataset("mnist-binarized", data_dir=args.data_dir)
    return dataclasses.replace(
        data, train=data.train[: args.train_size], test=data.test[: args.test_size]
    )


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


def _numbers(folder: Path) -> dict:
    run = RunFolder(folder)
    summary = run.read_summary()
    seconds = sum(row.get("seconds", 0.0) for row in run.read_metrics())
    return {
        "rate": summary["test_rate"],
        "distortion": summary["test_distortion"],
        "elbo": summary["test_elbo"],
        "iw_log_likelihood": summary.get("test_iw_log_likelihood"),
        "epochs": summary["epoch"],
        "train_seconds": seconds,
        "parameters": summary.get("parameters"),
        "run": str(folder),
    }


def report(args, wall: float) -> dict:
    from pyrovae.sweep import load_table

    rows = load_table(args.out / "sweep")
    corners = {name: _numbers(corner_folder(args, name)) for name in CORNERS}
    result = {
        "experiment": "seed 003 -+v: conv encoder, PixelCNN decoder, VampPrior (Alemi et al.)",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "budget": {
            "dataset": "mnist-binarized (static), first train_size training images, "
            "first test_size test images",
            "train_size": args.train_size,
            "test_size": args.test_size,
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
    args.figures.mkdir(parents=True, exist_ok=True)
    for png in sorted((args.out / "sweep" / "summary").glob("*.png")):
        shutil.copy(png, args.figures / png.name)
    return result


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = budget_data(args) if args.part != "report" else None
    if args.part in ("all", "sweep"):
        run_sweep(args, data)
    if args.part in ("all", "corners"):
        run_corners(args, data)
    if args.part in ("all", "report"):
        result = report(args, time.perf_counter() - start)
        for name, row in result["corners_beta_1"].items():
            print(
                f"{name:26s} R {row['rate']:7.2f}  D {row['distortion']:7.2f}  "
                f"ELBO {row['elbo']:8.2f}  IW {row['iw_log_likelihood']:8.2f}"
            )
        return result
    return None


if __name__ == "__main__":
    main()
