"""Minibatch size M × samples per point L: the lower bound reached on Frey Face (two heatmaps).

Replicates the MLSALT4 report's sec. 4.2 / figure 3, which tests Kingma & Welling's (2013)
remark that L = 1 sample per data point suffices "as long as the minibatch size M was large
enough, e.g. M = 100": a grid M ∈ {20, 60, 100, 140} × L ∈ {1, 2, 4, 8} on Frey Face, each cell
one run of ``pyrovae.train.train`` (AEVB recipe: 200 tanh hidden units, Adagrad lr 0.01, L^B
with L vectorised particles, Gaussian decoder with learned variance and sigmoid means, N_z = 5 —
the report does not give its N_z), and the final lower bound on the training set and on the
test set as two annotated heatmaps (``pyrovae.plots.plot_heatmap``).

Both numbers are the model's L^B after training, evaluated in evaluation mode with 10 draws
of z per point (analytic KL) on all 1 565 training frames and on the 200 test frames, so train
and test are measured the same way (the JSON also keeps the last epoch's running train mean).

Budget: the **same number of epochs for every cell** (60 in full mode; the report ran 2 000), as
the report did — each cell then sees every frame equally often, i.e. the same data and the same
number of per-point gradient terms; what differs is the number of updates (⌈1565 / M⌉ per epoch:
79 at M = 20, 12 at M = 140) and the gradient variance. Equal wall time would instead favour
cheap cells (small L) and mixes in the machine's speed, which is not what the remark is about.
The caveat is the report's own: large-M cells take fewer steps and may simply not have
converged. Full mode: 532 s wall measured on one thread of a 2-core machine oversubscribed by
other jobs (load average ≈ 4); ``--quick``: 300 / 100 frames, 2 epochs, M ∈ {20, 100} × L ∈ {1,
4} (≈ 10 s).

    python examples/studies/batch_samples.py [--quick] [--threads 1] [--data-dir DIR]

The JSON goes to ``runs/studies/batch_samples.json``, the PNGs beside it and the run folders to
``runs/studies/batch_samples/`` (all git-ignored). The committed results in
``docs/results/studies/`` are rewritten only when named::

    python examples/studies/batch_samples.py --threads 1 --figures docs/results/studies \\
        --out docs/results/studies/batch_samples.json
"""

from __future__ import annotations

import numpy as np
from _common import evaluate_elbo, finish, frey_config, header, load, parse_args, train_run

from pyrovae.plots import plot_heatmap

NAME = "batch_samples"
FULL = dict(batch_sizes=(20, 60, 100, 140), particles=(1, 2, 4, 8), epochs=60)
FULL.update(n_train=None, n_test=None)
QUICK = dict(batch_sizes=(20, 100), particles=(1, 4), epochs=2, n_train=300, n_test=100)
LATENT = 5
EVAL_SAMPLES = 10


def main(argv=None) -> dict:
    args = parse_args(NAME, __doc__.split("\n\n")[0], argv)
    s = QUICK if args.quick else FULL
    frey = load("frey", args, s["n_train"], s["n_test"])
    shape = (len(s["batch_sizes"]), len(s["particles"]))
    train_bound, test_bound = np.full(shape, np.nan), np.full(shape, np.nan)
    cells = []
    for i, m in enumerate(s["batch_sizes"]):
        for j, num in enumerate(s["particles"]):
            config = frey_config(
                latent_dim=LATENT,
                batch_size=m,
                particles=num,
                epochs=s["epochs"],
                threads=args.threads,
            )
            result, record = train_run(config, args, f"M{m}-L{num}", frey)
            train_bound[i, j] = evaluate_elbo(result, frey.train, args.seed, EVAL_SAMPLES)
            test_bound[i, j] = evaluate_elbo(result, frey.test, args.seed, EVAL_SAMPLES)
            cells.append(
                {
                    "batch_size": m,
                    "particles": num,
                    "train_elbo": train_bound[i, j],
                    "test_elbo": test_bound[i, j],
                    "last_epoch_running_train_elbo": record["final_train_elbo"],
                    "updates": record["curve"][-1]["step"],
                    "rollbacks": result.summary.get("rollbacks", []),
                    "train_seconds": sum(p["seconds"] for p in record["curve"]),
                    "wall_seconds": record["wall_seconds"],
                    "curve": record["curve"],
                }
            )
            print(
                f"M={m:3d} L={num}: train {train_bound[i, j]:8.2f}  test {test_bound[i, j]:8.2f}"
                f"  ({record['wall_seconds']:.0f} s)",
                flush=True,
            )
    figures = []
    for key, matrix in (("train", train_bound), ("test", test_bound)):
        path = args.figures / f"{NAME}_{key}.png"
        plot_heatmap(
            matrix,
            s["batch_sizes"],
            s["particles"],
            path,
            title=f"Frey Face: {key} L^B (nats), {s['epochs']} epochs",
            xlabel="samples per data point L",
            ylabel="minibatch size M",
        )
        figures.append(path.name)
        print(f"wrote {path}", flush=True)
    best = {
        key: dict(zip(("batch_size", "particles"), _argmax(matrix, s)))
        for key, matrix in (("train", train_bound), ("test", test_bound))
    }
    budget = {
        "dataset": "frey",
        "num_train": frey.train.shape[0],
        "num_test": frey.test.shape[0],
        "epochs_per_cell": s["epochs"],
        "equalised": "epochs (every cell sees every frame equally often)",
        "report": "2000 epochs per cell",
        "recipe": "hidden [200] tanh, Adagrad lr 0.01, L^B, gaussian-learned (sigmoid means), "
        f"latent {LATENT}",
        "evaluation": f"L^B with {EVAL_SAMPLES} draws of z per point, analytic KL",
    }
    report = {
        **header(args, "MLSALT4 report sec. 4.2, figure 3 (Kingma & Welling 2013, sec. 5)", budget),
        "figures": figures,
        "batch_sizes": list(s["batch_sizes"]),
        "particles": list(s["particles"]),
        "train_elbo": train_bound.tolist(),
        "test_elbo": test_bound.tolist(),
        "best": best,
        "cells": cells,
    }
    return finish(args, report)


def _argmax(matrix: np.ndarray, s: dict) -> tuple[int, int]:
    i, j = np.unravel_index(int(np.nanargmax(matrix)), matrix.shape)
    return s["batch_sizes"][i], s["particles"][j]


if __name__ == "__main__":
    main()
