"""Learned 2-D manifolds of MNIST and Frey Face (decoder means over a grid of latent points).

Replicates Kingma & Welling (2013), figure 4, and the MLSALT4 report's sec. 4.1 / figure 2:
with N_z = 2, decode a 20 × 20 grid of latent points, linearly spaced in the unit square and
mapped through the inverse Gaussian CDF, and show the decoder's means. The report saw, on
MNIST, a 3 near the origin (as in the paper); on Frey Face, the face turning from one profile
to the other across the manifold, with happy and grim expressions in both halves (the paper:
expression split along the other axis).

Each dataset is one ``pyrovae.train.train`` run with ``plots=True``, so the manifold is the
library's own (``pyrovae.report.write_manifold`` → ``pyrovae.plots.plot_manifold``), copied
from ``<run>/plots/manifold.png`` to ``manifolds_<dataset>.png`` (greyscale, half size); a
third figure scatters the posterior means of the test points (MNIST coloured by digit).
Recipe: AEVB's (tanh, Adagrad lr 0.01, M = 100, L = 1, L^B); for MNIST 500 hidden units and
``mnist-dynamic`` (grey levels binarised afresh per batch), for Frey Face 200 hidden units and
the Gaussian decoder with learned variance and sigmoid means. The JSON holds the final ELBOs
and an importance-weighted test log-likelihood (K = 100) of each run.

Budget (full): MNIST all 50 000 training images, 2 000 test images, 15 epochs (7.5 × 10^5
samples seen); Frey Face 1 565 / 200 frames, 600 epochs (≈ 9.4 × 10^5 samples); the paper does
not state the budget of its figure 4. 301 s wall measured on one thread of a shared 2-core
machine. ``--quick``: 500 / 200 MNIST images, 2 epochs; 300 / 100 Frey frames, 5 epochs (≈ 10 s).

    python examples/studies/manifolds.py [--quick] [--threads 1] [--data-dir DIR]

The JSON goes to ``runs/studies/manifolds.json``, the PNGs beside it and the run folders to
``runs/studies/manifolds/`` (all git-ignored). The committed results in
``docs/results/studies/`` are rewritten only when named::

    python examples/studies/manifolds.py --threads 1 --figures docs/results/studies \\
        --out docs/results/studies/manifolds.json
"""

from __future__ import annotations

import torch
from _common import (
    finish,
    frey_config,
    header,
    load,
    mnist_config,
    new_figure,
    parse_args,
    save_figure,
    train_run,
)

NAME = "manifolds"
FULL = dict(mnist_train=None, mnist_test=2000, mnist_epochs=15)
FULL.update(frey_train=None, frey_test=None, frey_epochs=600)
QUICK = dict(mnist_train=500, mnist_test=200, mnist_epochs=2)
QUICK.update(frey_train=300, frey_test=100, frey_epochs=5)
IW_SAMPLES = 100


def shrink_copy(source, target, factor: int = 2) -> None:
    """Copy the library's manifold PNG (pixel-exact, ≈ 1250 px, a few hundred KB) as a
    greyscale image ``factor`` times smaller, for the docs; the run folder keeps the original."""
    from PIL import Image

    with Image.open(source) as image:
        size = (image.width // factor, image.height // factor)
        image.convert("L").resize(size, Image.Resampling.LANCZOS).save(target, optimize=True)


@torch.no_grad()
def plot_latents(results: dict, datasets: dict, path) -> None:
    """Posterior means of the test points in the 2-D latent space."""
    fig = new_figure((10, 4.4))
    axes = fig.subplots(1, len(results))
    for ax, (key, result) in zip(axes, results.items()):
        data = datasets[key]
        result.guide.eval()
        z = result.guide.posterior(data.test).mean.numpy()
        labels = data.test_labels
        if labels is not None:
            scatter = ax.scatter(z[:, 0], z[:, 1], c=labels.numpy(), cmap="tab10", s=4)
            fig.colorbar(scatter, ax=ax, ticks=range(10), label="digit")
        else:
            ax.scatter(z[:, 0], z[:, 1], s=6, color="C0")
        ax.set_xlabel("$z_1$ (posterior mean)")
        ax.set_ylabel("$z_2$")
        ax.set_title(f"{key}: test points in latent space", fontsize=10)
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def main(argv=None) -> dict:
    args = parse_args(NAME, __doc__.split("\n\n")[0], argv)
    s = QUICK if args.quick else FULL
    datasets = {
        "mnist": load("mnist-dynamic", args, s["mnist_train"], s["mnist_test"]),
        "frey": load("frey", args, s["frey_train"], s["frey_test"]),
    }
    configs = {
        "mnist": mnist_config(latent_dim=2, epochs=s["mnist_epochs"]),
        "frey": frey_config(latent_dim=2, epochs=s["frey_epochs"]),
    }
    results, rows, figures = {}, {}, []
    for key, config in configs.items():
        config.update(iw_samples=IW_SAMPLES, threads=args.threads)
        result, record = train_run(config, args, key, datasets[key], plots=True)
        results[key] = result
        target = args.figures / f"{NAME}_{key}.png"
        shrink_copy(result.run.plots / "manifold.png", target)
        figures.append(target.name)
        print(f"wrote {target}", flush=True)
        rows[key] = {
            "dataset": config["dataset"],
            "num_train": record["num_train"],
            "num_test": record["num_test"],
            "epochs": config["epochs"],
            "samples_seen": record["curve"][-1]["samples_seen"],
            "final_train_elbo": record["final_train_elbo"],
            "final_test_elbo": record["final_test_elbo"],
            "test_rate": result.summary["test_rate"],
            "test_distortion": result.summary["test_distortion"],
            "test_iw_log_likelihood": result.summary["test_iw_log_likelihood"],
            "iw_samples": IW_SAMPLES,
            "rollbacks": result.summary.get("rollbacks", []),
            "wall_seconds": record["wall_seconds"],
            "run_plots": str(result.run.plots),
            "curve": record["curve"],
        }
        print(
            f"{key}: train {record['final_train_elbo']:.2f}  test {record['final_test_elbo']:.2f}"
            f"  IW log p(x) {rows[key]['test_iw_log_likelihood']:.2f}"
            f"  ({record['wall_seconds']:.0f} s)",
            flush=True,
        )
    latents = args.figures / f"{NAME}_latents.png"
    plot_latents(results, datasets, latents)
    figures.append(latents.name)
    budget = {
        key: {k: rows[key][k] for k in ("dataset", "num_train", "num_test", "epochs")}
        for key in rows
    }
    budget["recipe"] = (
        "latent 2, tanh, Adagrad lr 0.01, M=100, L=1, L^B; MNIST hidden [500] Bernoulli; "
        "Frey hidden [200] gaussian-learned (sigmoid means); manifold grid 20 x 20"
    )
    report = {
        **header(
            args, "Kingma & Welling (2013) figure 4; MLSALT4 report sec. 4.1, figure 2", budget
        ),
        "figures": figures,
        "runs": rows,
    }
    return finish(args, report)


if __name__ == "__main__":
    main()
