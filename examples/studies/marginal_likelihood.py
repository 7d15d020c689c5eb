"""AEVB figure 3: the marginal likelihood log p(x) of a small model against training progress.

Kingma & Welling (2013), sec. 5 and figure 3: for a latent space small enough to estimate
log p(x) reliably (3 latent variables, 100 hidden units in encoder and decoder), the estimated
marginal likelihood of the training and of the test data is plotted against the number of
training samples evaluated, for N_train = 1000 and N_train = 50 000, and AEVB is compared with
wake-sleep and Monte Carlo EM (MCEM, with an HMC sampler). The paper's points: AEVB converges
faster than both; with 1000 training points the model overfits (train above test), with
50 000 it does not; MCEM cannot run on-line on the full dataset.

This study trains the AEVB curves only — **no wake-sleep and no MCEM** (optional in the
brief, skipped for time) — through :func:`pyrovae.train.train`, one run folder per N_train,
continued (``resume=True``, which repeats the uninterrupted run exactly) from one evaluation
point to the next, log-spaced in samples seen. At each point it estimates log p(x) per image
with :func:`pyrovae.infer.iw_log_likelihood` (K importance samples from the guide; the paper
used an HMC-based estimator, its appendix D) on training images and on test images; at the
last point it repeats the estimate with a larger K on more images.

Recipe (AEVB's, sec. 5): static binarised MNIST (the paper's MNIST was grey levels under a
Bernoulli decoder; a log-likelihood needs binary data, and a fixed binarisation keeps the
training set a fixed set of points, which is what lets N_train = 1000 overfit); 784-100-3 and
3-100-784, tanh; Bernoulli decoder, diagonal Gaussian encoder, L^B, L = 1, M = 100; Adagrad
lr 0.02 (from the paper's {0.01, 0.02, 0.1}: the best of three after 3 epochs on 20 000
images); weight decay 1, i.e. the paper's N(0, I) prior on the parameters (the trainer's
loss is N × the per-point loss, so its gradient is that of log p(X | θ) + log p(θ)); torch's
default initialisation (N(0, 0.01²) trained slower in the same check).

Evaluation: 500 of the 1000 test images (every tenth, then every second, of the test split,
which is sorted by digit class) and the first 500 training images (K = 200) at
every point; at the end K = 1000 on all 1000 test images and the first 1000 training images.

Budget (full mode, ≈ 6 min on one thread; 348 s measured): 10⁶ training samples per N_train
(1000 epochs of 1000 images; 20 epochs of 50 000) against the paper's ~10⁸; evaluation points
at 10³…10⁶ (N_train = 1000) and 5·10⁴…10⁶ (N_train = 50 000) samples. ``--quick``: N_train
100 and 1000, 3 and 2 epochs, K = 20 / 50 on 50 / 100 images (≈ 10 s).

    python examples/studies/marginal_likelihood.py [--quick] [--threads 1] [--data-dir DIR]

The JSON goes to ``runs/studies/marginal_likelihood.json``, the PNGs beside it and the run
folders to ``runs/studies/marginal_likelihood/`` (all git-ignored). The committed results in
``docs/results/studies/`` are rewritten only when named::

    python examples/studies/marginal_likelihood.py --figures docs/results/studies \\
        --out docs/results/studies/marginal_likelihood.json
"""

from __future__ import annotations

import dataclasses
import time

import torch
from _common import (
    finish,
    header,
    load,
    new_figure,
    parse_args,
    save_figure,
    spread,
    spread_index,
    study_config,
)

from pyrovae.infer import iw_log_likelihood
from pyrovae.train import train

NAME = "marginal_likelihood"
FULL = dict(
    schedule={1000: [1, 3, 10, 30, 100, 300, 1000], 50000: [1, 2, 4, 10, 20]},
    test=1000,
    points=500,
    k=200,
    final_points=1000,
    final_k=1000,
)
QUICK = dict(
    schedule={100: [1, 3], 1000: [1, 2]}, test=100, points=50, k=20, final_points=100, final_k=50
)
CHUNK = 100  # importance samples per vectorised pass


def log_px(model, guide, x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """IW estimate of log p(x) per image (nats), K = ``k``; seeded, so repeatable."""
    torch.manual_seed(seed)
    chunk = min(k, CHUNK)
    return iw_log_likelihood(model, guide, x, k, chunk_size=chunk, batch_size=20000 // chunk)


def run_size(args, s: dict, full, test: torch.Tensor, n_train: int) -> dict:
    """Train on the first ``n_train`` images, evaluating log p(x) at every scheduled epoch."""
    data = dataclasses.replace(full, train=full.train[:n_train], test=test)
    config = study_config(
        dataset="mnist-binarized",
        likelihood="bernoulli",
        latent_dim=3,
        hidden=[100],
        optimizer="adagrad",
        lr=0.02,
        weight_decay=1.0,
        seed=args.seed,
        threads=args.threads,
    )
    folder = args.runs_dir / args.name / f"ntrain{n_train}"
    train_points = data.train[: s["points"]]
    # evenly spaced over the (already evenly spaced) test images: the split is sorted by class
    test_index = spread_index(test.shape[0], s["points"])
    test_points = test[test_index]
    points, wall = [], 0.0
    for i, epochs in enumerate(s["schedule"][n_train]):
        start = time.perf_counter()
        result = train(
            {**config, "epochs": epochs},
            folder,
            dataset=data,
            plots=False,
            overwrite=i == 0,
            resume=i > 0,
        )
        trained = time.perf_counter() - start
        model, guide = result.model.eval(), result.guide.eval()
        start = time.perf_counter()
        point = {
            "epoch": epochs,
            "samples_seen": epochs * n_train,
            "train_log_px": log_px(model, guide, train_points, s["k"], args.seed).mean().item(),
            "test_log_px": log_px(model, guide, test_points, s["k"], args.seed).mean().item(),
            "test_elbo": result.metrics[-1]["test_elbo"],
            "train_objective": result.metrics[-1]["train_elbo"],
            "train_seconds": trained,
            "eval_seconds": time.perf_counter() - start,
        }
        wall += trained + point["eval_seconds"]
        points.append(point)
        print(
            f"N_train={n_train:6d} {point['samples_seen']:9d} samples: log p(x) train "
            f"{point['train_log_px']:8.2f}  test {point['test_log_px']:8.2f}  (test ELBO "
            f"{point['test_elbo']:8.2f}; {trained:.0f} s + {point['eval_seconds']:.0f} s)",
            flush=True,
        )
    start = time.perf_counter()
    final_train = log_px(model, guide, data.train[: s["final_points"]], s["final_k"], args.seed)
    final_test = log_px(model, guide, test[: s["final_points"]], s["final_k"], args.seed)
    final = {
        "samples_seen": points[-1]["samples_seen"],
        "k": s["final_k"],
        "train_points": final_train.shape[0],
        "test_points": final_test.shape[0],
        "train_log_px": final_train.mean().item(),
        "train_log_px_sem": (final_train.std() / final_train.shape[0] ** 0.5).item(),
        "test_log_px": final_test.mean().item(),
        "test_log_px_sem": (final_test.std() / final_test.shape[0] ** 0.5).item(),
        # the same images as the last progress point, for the bias of K = k against final K
        "train_log_px_on_progress_points": final_train[: s["points"]].mean().item(),
        "test_log_px_on_progress_points": final_test[test_index].mean().item(),
        "seconds": time.perf_counter() - start,
    }
    wall += final["seconds"]
    print(
        f"N_train={n_train:6d} final (K={s['final_k']}): log p(x) train "
        f"{final['train_log_px']:.2f}  test {final['test_log_px']:.2f}",
        flush=True,
    )
    return {
        "num_train": n_train,
        "run_dir": str(folder),
        "curve": points,
        "final": final,
        "per_epoch": [
            {"epoch": m["epoch"], "train_objective": m["train_elbo"], "test_elbo": m["test_elbo"]}
            for m in result.metrics
        ],
        "wall_seconds": wall,
    }


def plot(runs: list[dict], s: dict, path) -> None:
    fig = new_figure((11, 4.3))
    axes = fig.subplots(1, len(runs))
    for ax, r in zip(axes, runs):
        xs = [p["samples_seen"] for p in r["curve"]]
        for split, style, colour in (("train", "--o", "C3"), ("test", "-o", "C0")):
            ys = [p[f"{split}_log_px"] for p in r["curve"]]
            label = f"AEVB {split}, log p(x) (IW, K={s['k']})"
            ax.plot(xs, ys, style, color=colour, ms=4, label=label)
        n = r["num_train"]
        ax.plot(
            [m["epoch"] * n for m in r["per_epoch"]],
            [m["test_elbo"] for m in r["per_epoch"]],
            "-",
            color="0.6",
            lw=0.8,
            label="test ELBO (every epoch)",
        )
        f = r["final"]
        ax.plot(
            [f["samples_seen"]] * 2,
            [f["train_log_px"], f["test_log_px"]],
            "k*",
            ms=8,
            label=f"final, K={f['k']} (train, test)",
        )
        ax.set_xscale("log")
        ax.set_xlabel("training samples evaluated")
        ax.set_title(f"N_train = {n}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        lows = [p["test_log_px"] for p in r["curve"][1:]] + [p["train_log_px"] for p in r["curve"]]
        ax.set_ylim(min(lows) - 10, max(p["train_log_px"] for p in r["curve"]) + 5)
    axes[0].set_ylabel("marginal log-likelihood per image (nats)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        "AEVB figure 3 replication (AEVB only): binarised MNIST, 784-100-3 tanh, Adagrad 0.02",
        fontsize=9,
    )
    save_figure(fig, path)


def main(argv=None) -> dict:
    args = parse_args(NAME, __doc__.split("\n\n")[0], argv)
    s = QUICK if args.quick else FULL
    full = load("mnist-binarized", args)
    test = spread(full.test, s["test"])
    runs = [run_size(args, s, full, test, n) for n in s["schedule"]]
    figure = args.figures / f"{NAME}.png"
    plot(runs, s, figure)
    budget = {
        "dataset": "mnist-binarized",
        "num_train": list(s["schedule"]),
        "epochs": {str(n): e[-1] for n, e in s["schedule"].items()},
        "samples_seen": {str(n): e[-1] * n for n, e in s["schedule"].items()},
        "num_test": test.shape[0],
        "iw": f"K={s['k']} on {s['points']} train and test images at every point; "
        f"K={s['final_k']} on {s['final_points']} at the end",
        "paper": "~1e8 training samples evaluated; log p(x) by an HMC-based estimator; "
        "wake-sleep and MCEM curves (not run here)",
        "recipe": "784-100-3 tanh, Bernoulli, L^B, L=1, M=100, Adagrad lr 0.02, weight decay 1",
    }
    table = [
        {
            "num_train": r["num_train"],
            "samples_seen": r["final"]["samples_seen"],
            "train_log_px": r["final"]["train_log_px"],
            "test_log_px": r["final"]["test_log_px"],
            "train_minus_test": r["final"]["train_log_px"] - r["final"]["test_log_px"],
            "best_test_log_px_progress": max(p["test_log_px"] for p in r["curve"]),
            "best_at_samples_seen": max(r["curve"], key=lambda p: p["test_log_px"])["samples_seen"],
            "final_test_elbo": r["curve"][-1]["test_elbo"],
        }
        for r in runs
    ]
    report = {
        **header(args, "Kingma & Welling (2013), figure 3 (AEVB curves only, no MCEM)", budget),
        "figures": [figure.name],
        "mcem": "not run (optional in the brief; skipped for time)",
        "table": table,
        "runs": runs,
    }
    return finish(args, report)


if __name__ == "__main__":
    main()
