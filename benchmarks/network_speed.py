"""Training steps of conv and PixelCNN VAEs: pyrovae's trainer against a plain-PyTorch loop.

For each network pair (``conv/conv``, ``conv/pixelcnn``) both sides train the *same*
modules (pyrovae builds them; the plain loop copies their weights) with the same
loss — Bernoulli log-likelihood (for the PixelCNN: of its teacher-forced logits)
plus the analytic KL of the diagonal guide to N(0, I), L^B — the same Adam
(fused, as pyrovae's trainer picks it), data order and batch size, on the first
``--train-size`` images of static binarised MNIST. A third side, ``torch_channels_last``,
is the plain loop with modules and images in channels-last memory format.
Epochs are interleaved, the first side rotating; the JSON reports every epoch's
wall and process-CPU seconds, the medians and the ratios (1.0 = no overhead).
For the PixelCNN it also reports sampling speed (images per second, pixel by pixel).

    python benchmarks/network_speed.py --threads 1 --epochs 5 \\
        --out benchmarks/results/network_speed.json
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from _report import write_report

from pyrovae.build import build_model
from pyrovae.config import RunConfig
from pyrovae.data import load_dataset
from pyrovae.train import Trainer

PAIRS = {"conv/conv": ("conv", "conv"), "conv/pixelcnn": ("conv", "pixelcnn")}


def plain_loss(model, guide, x, n, channels_last: bool = False):
    """The hand-written L^B: Bernoulli NLL of the decoder's logits plus the analytic KL."""
    loc, raw = guide.encoder(x).split(guide.latent_dim, dim=-1)
    scale = F.softplus(raw) + guide.min_scale
    z = loc + scale * torch.randn_like(loc)
    h = model.decoder(z)
    lik = model.likelihood
    if hasattr(lik, "net"):  # the PixelCNN: teacher-forced logits of every pixel at once
        c, height, width = lik.net.shape
        images = x.reshape(-1, c, height, width)
        cond = h.reshape(-1, lik.net.cond_channels, height, width)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
            cond = cond.contiguous(memory_format=torch.channels_last)
        h = lik.net(images, cond).reshape(x.shape[0], -1)
    nll = F.binary_cross_entropy_with_logits(h, x, reduction="sum")
    kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1.0 - 2.0 * scale.log()).sum()
    return (nll + kl) * (n / x.shape[0])


def plain_epoch(model, guide, optimizer, train, batch_size, seed, epoch, channels_last) -> float:
    n = train.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    start = time.perf_counter()
    for idx in order.split(batch_size):
        loss = plain_loss(model, guide, train[idx], n, channels_last)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def measure(data, pair: str, args) -> dict:
    encoder, decoder = PAIRS[pair]
    config = RunConfig(
        dataset="mnist-binarized",
        likelihood="bernoulli",
        encoder=encoder,
        decoder=decoder,
        latent_dim=args.latent,
        hidden=[256],
        activation="relu",
        conv_channels=[32, 64],
        pixelcnn_layers=args.pixelcnn_layers,
        pixelcnn_channels=args.pixelcnn_channels,
        batch_size=args.batch_size,
        epochs=args.epochs,
        objective="meanfield",
        seed=args.seed,
    )
    pyro.set_rng_seed(args.seed)
    model, guide = build_model(config, data.shape)
    trainer = Trainer(config, data, model, guide)
    plain = {}
    for side, channels_last in (("torch", False), ("torch_channels_last", True)):
        m, g = build_model(config, data.shape)
        m.load_state_dict(model.state_dict())
        g.load_state_dict(guide.state_dict())
        if channels_last:
            m, g = m.to(memory_format=torch.channels_last), g.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam([*m.parameters(), *g.parameters()], lr=config.lr, fused=True)
        plain[side] = (m, g, opt, channels_last)
    sides = ["pyrovae", *plain]
    wall = {k: [] for k in sides}
    cpu = {k: [] for k in sides}
    for epoch in range(args.epochs):
        for side in sides[epoch % 3 :] + sides[: epoch % 3]:
            start_cpu = time.process_time()
            if side == "pyrovae":
                wall[side].append(trainer.train_pass()[1])
            else:
                m, g, opt, cl = plain[side]
                wall[side].append(
                    plain_epoch(m, g, opt, data.train, args.batch_size, args.seed, epoch, cl)
                )
            cpu[side].append(time.process_time() - start_cpu)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    row = {
        "pair": pair,
        "parameters": sum(p.numel() for m in (model, guide) for p in m.parameters()),
        "steps_per_epoch": -(-data.train.shape[0] // args.batch_size),
        "seconds_per_epoch": wall,
        "cpu_seconds_per_epoch": cpu,
        "median_seconds": med,
        "median_cpu_seconds": med_cpu,
        "ratio_pyrovae_over_torch": med["pyrovae"] / med["torch"],
        "cpu_ratio_pyrovae_over_torch": med_cpu["pyrovae"] / med_cpu["torch"],
        "ratio_channels_last_over_torch": med["torch_channels_last"] / med["torch"],
    }
    if decoder == "pixelcnn":
        row["sampling"] = sampling_speed(model, args)
    return row


@torch.no_grad()
def sampling_speed(model, args) -> dict:
    """Images per second of ``model.sample`` (z ~ p(z), then pixel by pixel), median of runs."""
    model.eval()
    times = []
    for _ in range(args.sample_runs):
        start = time.perf_counter()
        model.sample(args.sample_batch)
        times.append(time.perf_counter() - start)
    return {
        "batch": args.sample_batch,
        "seconds": times,
        "images_per_second": args.sample_batch / statistics.median(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--pixelcnn-layers", type=int, default=3)
    parser.add_argument("--pixelcnn-channels", type=int, default=16)
    parser.add_argument("--sample-batch", type=int, default=64)
    parser.add_argument("--sample-runs", type=int, default=3)
    parser.add_argument("--pair", action="append", choices=list(PAIRS))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/network_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    full = load_dataset("mnist-binarized", data_dir=args.data_dir)
    data = dataclasses.replace(full, train=full.train[: args.train_size])
    report = {
        "benchmark": "network_speed",
        "networks": "conv encoder (32, 64 channels, kernel 4, then 256 relu); conv decoder "
        "mirrored; PixelCNN: that decoder to 8 conditioning planes and a gated PixelCNN of "
        f"{args.pixelcnn_layers} layers x {args.pixelcnn_channels} channels, kernel 5",
        "loss": "Bernoulli + analytic KL (L^B), diagonal guide, fused Adam",
        "dataset": f"mnist-binarized, first {args.train_size} training images",
        "epochs_each": args.epochs,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "results": [measure(data, pair, args) for pair in (args.pair or list(PAIRS))],
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
