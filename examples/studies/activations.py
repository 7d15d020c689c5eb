"""Hidden-layer activation: the lower bound and the cost per epoch of tanh, sigmoid, ReLU, softplus.

Replicates the MLSALT4 report's sec. 4.5 / figure 6: AEVB used tanh only; the report found ReLU
learning fastest but no better than tanh in the end, and sigmoid slowest, lowest, and ≈ 20 %
more time per epoch. Here each activation (``pyrovae.registry.ACTIVATIONS``: ``tanh``,
``sigmoid``, ``relu``, ``softplus``) trains the same model through ``pyrovae.train.train``:
MNIST (``mnist-dynamic``, grey levels binarised afresh per batch), N_z = 10, one hidden layer of
500 units in encoder and decoder, Adagrad lr 0.01, M = 100, L = 1, L^B, torch's default
initialisation. Reported: train (running mean) and test L^B per epoch, and the training pass's
wall time per epoch (``seconds`` of each metrics row, without the test evaluation; median and
mean over epochs — on a shared machine the median is the steadier number).

Budget (full): the first 10 000 training images, the first 2 000 test images, 40 epochs (4 ×
10^5 samples seen; the report's x axis runs to ~10^7–10^8 samples), 336 s wall measured on one
thread of a shared 2-core machine (load average ≈ 3). ``--quick``: 500 / 200 images, 2 epochs (≈
5 s).

    python examples/studies/activations.py [--quick] [--threads 1] [--data-dir DIR]

The JSON goes to ``runs/studies/activations.json``, the PNGs beside it and the run folders to
``runs/studies/activations/`` (all git-ignored). The committed results in
``docs/results/studies/`` are rewritten only when named::

    python examples/studies/activations.py --threads 1 --figures docs/results/studies \\
        --out docs/results/studies/activations.json
"""

from __future__ import annotations

import statistics

from _common import (
    data_budget,
    elbo_summary,
    elbo_ylim,
    finish_runs,
    load,
    mnist_config,
    new_figure,
    parse_args,
    plot_train_test,
    save_figure,
    train_run,
    train_test_legend,
)

NAME = "activations"
ACTIVATIONS = ("tanh", "sigmoid", "relu", "softplus")
LATENT = 10
FULL = dict(n_train=10000, n_test=2000, epochs=40)
QUICK = dict(n_train=500, n_test=200, epochs=2)


def plot(rows: list[dict], path) -> None:
    fig = new_figure((11, 4.2))
    ax, bar = fig.subplots(1, 2, width_ratios=(2, 1))
    for i, r in enumerate(rows):
        plot_train_test(ax, r["curve"], f"C{i}", r["activation"])
    train_test_legend(ax)
    elbo_ylim(ax, rows)
    ax.set_xlabel("epoch")
    ax.set_ylabel("lower bound L^B per data point (nats)")
    ax.set_title(f"MNIST, $N_z$ = {LATENT}, 500 hidden units", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    x = range(len(rows))
    bars = bar.bar(x, [r["median_seconds_per_epoch"] for r in rows], color=[f"C{i}" for i in x])
    bar.bar_label(bars, fmt="%.2f", fontsize=8)
    bar.set_xticks(list(x), [r["activation"] for r in rows])
    bar.set_ylabel("seconds per training epoch (median)")
    bar.set_title("cost per epoch, one thread", fontsize=10)
    save_figure(fig, path)


def main(argv=None) -> dict:
    args = parse_args(NAME, __doc__.split("\n\n")[0], argv)
    s = QUICK if args.quick else FULL
    mnist = load("mnist-dynamic", args, s["n_train"], s["n_test"])
    rows = []
    for activation in ACTIVATIONS:
        config = mnist_config(
            latent_dim=LATENT,
            activation=activation,
            epochs=s["epochs"],
            threads=args.threads,
        )
        _, record = train_run(config, args, activation, mnist)
        seconds = [p["seconds"] for p in record["curve"]]
        row = {
            "activation": activation,
            **elbo_summary(record),
            "median_seconds_per_epoch": statistics.median(seconds),
            "mean_seconds_per_epoch": statistics.fmean(seconds),
            "wall_seconds": record["wall_seconds"],
            "curve": record["curve"],
        }
        rows.append(row)
        print(
            f"{activation:8s}: train {row['final_train_elbo']:8.2f}  test "
            f"{row['final_test_elbo']:8.2f}  {row['median_seconds_per_epoch']:.2f} s/epoch",
            flush=True,
        )
    tanh = rows[0]["median_seconds_per_epoch"]
    for r in rows:
        r["seconds_per_epoch_relative_to_tanh"] = r["median_seconds_per_epoch"] / tanh
    figure = args.figures / f"{NAME}.png"
    plot(rows, figure)
    recipe = f"hidden [500], Adagrad lr 0.01, M=100, L=1, L^B, latent {LATENT}"
    budget = {"dataset": "mnist-dynamic", **data_budget(mnist, s["epochs"], recipe=recipe)}
    return finish_runs(args, "MLSALT4 report sec. 4.5, figure 6", budget, figure, rows)


if __name__ == "__main__":
    main()
