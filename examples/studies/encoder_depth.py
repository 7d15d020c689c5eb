"""Deeper networks: the lower bound on MNIST with 1 to 4 hidden layers of 500 tanh units, N_z = 10.

Replicates the MLSALT4 report's sec. 4.3 / figure 4 ("increasing the depth of the encoder"):
the report found two hidden layers slightly better than AEVB's one, and four layers unable to
learn ("vanishing gradients"). Two variants, every run through ``pyrovae.train.train``:

* ``both`` — the ``hidden`` config list ``[500] * depth``, which pyrovae applies to the encoder
  *and* (mirrored) the decoder, depth 1–4;
* ``encoder`` — only the encoder deepened (depth 2–4; depth 1 is the shared baseline), the
  decoder kept at one layer of 500: pyrovae has no encoder-only depth option, so the script
  registers guides ``diagonal-encoder<depth>`` in ``pyrovae.registry.GUIDES`` (the documented
  extension point; the run folders then need that registration to be reloaded).

Recipe: AEVB's (tanh, Adagrad lr 0.01, M = 100, L = 1, L^B, torch's default initialisation),
``mnist-dynamic`` (grey levels binarised afresh per batch: in expectation AEVB's Bernoulli
cross-entropy on grey MNIST), N_z = 10. Reported: train (running mean over each epoch) and test
L^B per epoch as curves, and a table of final numbers, parameter counts and seconds per epoch.

Budget (full): the first 10 000 training images, the first 2 000 test images, 15 epochs (1.5 ×
10^5 samples seen; the report trained for far longer, its x axis reaching ~10^7–10^8 samples);
352 s wall measured on one thread of a shared 2-core machine (load average ≈ 3). ``--quick``:
500 / 200 images, 2 epochs (≈ 10 s).

    python examples/studies/encoder_depth.py [--quick] [--threads 1] [--data-dir DIR]

The JSON goes to ``runs/studies/encoder_depth.json``, the PNGs beside it and the run folders to
``runs/studies/encoder_depth/`` (all git-ignored). The committed results in
``docs/results/studies/`` are rewritten only when named::

    python examples/studies/encoder_depth.py --threads 1 --figures docs/results/studies \\
        --out docs/results/studies/encoder_depth.json
"""

from __future__ import annotations

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

from pyrovae import registry
from pyrovae.guides import DiagonalGaussian

NAME = "encoder_depth"
WIDTH = 500
LATENT = 10
DEPTHS = (1, 2, 3, 4)
FULL = dict(n_train=10000, n_test=2000, epochs=15)
QUICK = dict(n_train=500, n_test=200, epochs=2)


def deep_encoder(depth: int, width: int = WIDTH):
    """A guide factory: the diagonal Gaussian guide with ``depth`` hidden layers of ``width``,
    whatever the run's ``hidden`` (which then only shapes the decoder)."""

    def make(data_dim: int, latent_dim: int, hidden, activation: str, init: str):
        return DiagonalGaussian(data_dim, latent_dim, [width] * depth, activation, init=init)

    return make


def register_guides() -> None:
    for depth in DEPTHS[1:]:
        registry.GUIDES.register(f"diagonal-encoder{depth}", deep_encoder(depth))


def plot(rows: list[dict], path) -> None:
    fig = new_figure((11, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    titles = {"both": "encoder and decoder deepened", "encoder": "encoder deepened only"}
    for ax, (variant, title) in zip(axes, titles.items()):
        for r in rows:
            if r["variant"] != variant and not (r["depth"] == 1 and variant == "encoder"):
                continue
            label = f"{r['depth']} hidden layer(s)"
            plot_train_test(ax, r["curve"], f"C{r['depth'] - 1}", label)
        train_test_legend(ax)
        ax.set_xlabel("epoch")
        ax.set_title(f"MNIST, $N_z$ = {LATENT}: {title}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("lower bound L^B per data point (nats)")
    elbo_ylim(axes[0], rows)
    save_figure(fig, path)


def main(argv=None) -> dict:
    args = parse_args(NAME, __doc__.split("\n\n")[0], argv)
    s = QUICK if args.quick else FULL
    register_guides()
    mnist = load("mnist-dynamic", args, s["n_train"], s["n_test"])
    plan = [("both", d, [WIDTH] * d, "diagonal") for d in DEPTHS]
    plan += [("encoder", d, [WIDTH], f"diagonal-encoder{d}") for d in DEPTHS[1:]]
    rows = []
    for variant, depth, hidden, guide in plan:
        config = mnist_config(
            latent_dim=LATENT,
            hidden=hidden,
            guide=guide,
            epochs=s["epochs"],
            threads=args.threads,
        )
        result, record = train_run(config, args, f"{variant}-depth{depth}", mnist)
        seconds = [p["seconds"] for p in record["curve"]]
        row = {
            "variant": variant,
            "depth": depth,
            "encoder_hidden": [WIDTH] * depth,
            "decoder_hidden": hidden,
            "parameters": result.summary["parameters"],
            **elbo_summary(record),
            "seconds_per_epoch": sum(seconds) / len(seconds),
            "wall_seconds": record["wall_seconds"],
            "curve": record["curve"],
        }
        rows.append(row)
        print(
            f"{variant:7s} depth {depth}: train {row['final_train_elbo']:8.2f}  test "
            f"{row['final_test_elbo']:8.2f}  {row['seconds_per_epoch']:.2f} s/epoch",
            flush=True,
        )
    figure = args.figures / f"{NAME}.png"
    plot(rows, figure)
    recipe = f"width {WIDTH}, tanh, Adagrad lr 0.01, M=100, L=1, L^B, latent {LATENT}"
    budget = {"dataset": "mnist-dynamic", **data_budget(mnist, s["epochs"], recipe=recipe)}
    return finish_runs(args, "MLSALT4 report sec. 4.3, figure 4", budget, figure, rows)


if __name__ == "__main__":
    main()
