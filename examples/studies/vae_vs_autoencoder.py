"""VAE vs a plain auto-encoder of the same architecture: reconstruction error against latent size.

The MLSALT4 replication of Kingma & Welling (2013), section 5 (its figures 7 and 8): an
auto-encoder trained on MSE + weight decay and a VAE trained on its ELBO, with the same
one-hidden-layer tanh encoder and decoder and the same ℓ2 penalty, are compared by the mean
squared reconstruction error of held-out digits, the VAE reconstructing from its posterior
mean. The report finds the VAE better at every bottleneck size, by more as the size grows,
although the auto-encoder is trained on the very criterion used to compare them.

Both models are trained by the same trainer (:func:`pyrovae.train.train`, run folders under
``--runs-dir``), one config key set apart:

* **VAE** — Bernoulli likelihood, ``diagonal`` guide, objective L^B (``meanfield``), β = 1;
* **AE** — likelihood ``mse`` with a sigmoid mean (``−log p = ‖x − x̂‖² + const``), the
  ``deterministic`` guide (q(z|x) = δ(z − μ_φ(x)), :mod:`pyrovae.guides.deterministic`) and
  β = 0, so the loss is exactly the summed squared error at the code (the rate is masked;
  ``tests/test_deterministic_guide.py`` checks it against a hand-written MSE);
* both — ``weight_decay`` λ (default 1, which with the trainer's N-scaled loss is AEVB's
  N(0, I) prior on the weights), Adam lr 1e-3, batch 100, the same seed and data order.

The score is :func:`pyrovae.infer.evaluation.reconstruction_mse`: the mean squared error per
pixel of ``E[x | z = E_q[z | x]]`` (the VAE's Bernoulli means at the posterior mean; the AE's
output at its code), on the test images and on the training images.

Setting (full mode): static binarised MNIST, the first 10 000 training images and 5 000 test
images (every second one: the test split is sorted by digit class);
784-500-N_z-500-784, tanh; N_z ∈ {2, 5, 10, 20}; Adam lr 1e-3 (AEVB: Adagrad), 20 epochs.

Budget: ≈ 6 minutes on one thread (8 runs of ≈ 35–45 s; 2·10⁵ training samples each); the
report does not state its number of epochs ("the same portion of the MNIST data set").
``--quick``: 500 training images, hidden 50, N_z ∈ {2, 5}, 1 epoch (≈ 5 s).

    python examples/studies/vae_vs_autoencoder.py [--quick] [--threads 1] [--data-dir DIR]

The JSON goes to ``runs/studies/vae_vs_autoencoder.json``, the PNGs beside it and the run folders to
``runs/studies/vae_vs_autoencoder/`` (all git-ignored). The committed results in
``docs/results/studies/`` are rewritten only when named::

    python examples/studies/vae_vs_autoencoder.py --figures docs/results/studies \\
        --out docs/results/studies/vae_vs_autoencoder.json
"""

from __future__ import annotations

import textwrap

import numpy as np
import torch
from _common import (
    finish,
    header,
    load_spread,
    new_figure,
    override_options,
    parse_args,
    save_figure,
    settings,
    spread,
    study_config,
    train_run,
)

from pyrovae.infer import reconstruction_mse

NAME = "vae_vs_autoencoder"
MODELS = {
    "VAE": {"likelihood": "bernoulli", "guide": "diagonal", "objective": "meanfield"},
    "AE": {
        "likelihood": "mse",
        "mean_activation": "sigmoid",
        "guide": "deterministic",
        "objective": "meanfield",
        "beta": 0.0,
    },
}
EXAMPLES = 10  # test digits shown in the reconstruction figure


QUICK = dict(latents=[2, 5], train=500, test=200, epochs=1, hidden=50)
FULL = dict(latents=[2, 5, 10, 20], train=10000, test=5000, epochs=20, hidden=500)


def _options(p) -> None:
    override_options(p)
    p.add_argument("--weight-decay", type=float, default=1.0, help="λ, the same for both")


@torch.no_grad()
def reconstructions(model, guide, x: torch.Tensor) -> torch.Tensor:
    """``E[x | z = E_q[z | x]]``, what :func:`reconstruction_mse` scores."""
    return model.decode(guide.posterior(x).mean)


def plot_mse(rows: list[dict], path, title: str) -> None:
    fig = new_figure((6.5, 4.2))
    ax = fig.subplots()
    latents = sorted({r["latent_dim"] for r in rows})
    for model, colour in (("VAE", "C0"), ("AE", "C1")):
        sel = sorted((r for r in rows if r["model"] == model), key=lambda r: r["latent_dim"])
        z = [r["latent_dim"] for r in sel]
        ax.plot(z, [r["test_mse"] for r in sel], "-o", color=colour, label=f"{model}, test")
        train = [r["train_mse"] for r in sel]
        ax.plot(z, train, "--o", color=colour, ms=3, alpha=0.6, label=f"{model}, train")
    ax.set_xscale("log", base=2)
    ax.set_xticks(latents, [str(z) for z in latents])
    ax.set_xlabel("latent size N_z (bottleneck width)")
    ax.set_ylabel("MSE per pixel of the reconstruction")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(textwrap.fill(title, 100), fontsize=6)
    save_figure(fig, path)


def plot_examples(x: torch.Tensor, recon: dict, shape, path, title: str) -> None:
    latents = sorted({z for z, _ in recon})
    fig = new_figure((0.6 * EXAMPLES, 1.9 * len(latents)))
    subfigs = np.atleast_1d(fig.subfigures(len(latents), 1))
    for sub, z in zip(subfigs, latents):
        rows = [("data", x), ("AE", recon[z, "AE"]), ("VAE", recon[z, "VAE"])]
        axes = sub.subplots(3, EXAMPLES)
        for i, (label, images) in enumerate(rows):
            for j in range(EXAMPLES):
                ax = axes[i, j]
                ax.imshow(images[j].reshape(shape).numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(label, fontsize=7)
        sub.suptitle(f"N_z = {z}", fontsize=8)
    fig.suptitle(textwrap.fill(title, 90), fontsize=6)
    save_figure(fig, path)


def main(argv=None) -> dict:
    args = parse_args(NAME, __doc__.split("\n\n")[0], argv, _options)
    s = settings(args, QUICK, FULL)
    data = load_spread("mnist-binarized", args, s["train"], s["test"])
    shown = spread(data.test, EXAMPLES)
    rows, recon = [], {}
    for latent in s["latents"]:
        for label, variant in MODELS.items():
            config = study_config(
                dataset="mnist-binarized",
                latent_dim=latent,
                hidden=[s["hidden"]],
                optimizer="adam",
                lr=1e-3,
                weight_decay=args.weight_decay,
                epochs=s["epochs"],
                threads=args.threads,
                **variant,
            )
            result, record = train_run(config, args, f"nz{latent}-{label.lower()}", data)
            for point, metrics in zip(record["curve"], result.metrics):
                point["test_distortion"] = metrics["test_distortion"]
                point["train_loss"] = -metrics.get("train_elbo", metrics.get("train_beta_elbo"))
            if label == "AE":  # a point posterior has no ELBO: the trainer's "test ELBO" is
                # log p(x | μ) + log p(μ), not a bound; keep the distortion only
                record["final_test_elbo"] = None
                for point in record["curve"]:
                    point["test_elbo"] = None
            model, guide = result.model.eval(), result.guide.eval()
            train_mse = reconstruction_mse(model, guide, data.train, batch_size=1000)
            test_mse = reconstruction_mse(model, guide, data.test, batch_size=1000)
            recon[latent, label] = reconstructions(model, guide, shown)
            row = {
                "model": label,
                "latent_dim": latent,
                "test_mse": test_mse.mean().item(),
                "test_mse_sem": (test_mse.std() / len(test_mse) ** 0.5).item(),
                "train_mse": train_mse.mean().item(),
                "trainer_test_mse": result.summary["test_mse"],
                "test_distortion": result.summary["test_distortion"],
                "test_elbo": result.summary["test_elbo"] if label == "VAE" else None,
                **record,
            }
            rows.append(row)
            print(
                f"N_z={latent:3d} {label:3s} test MSE {row['test_mse']:.5f}  train MSE "
                f"{row['train_mse']:.5f}  ({record['wall_seconds']:.0f} s)",
                flush=True,
            )
    by = {(r["latent_dim"], r["model"]): r for r in rows}
    table = [
        {
            "latent_dim": z,
            "test_mse_vae": by[z, "VAE"]["test_mse"],
            "test_mse_ae": by[z, "AE"]["test_mse"],
            "train_mse_vae": by[z, "VAE"]["train_mse"],
            "train_mse_ae": by[z, "AE"]["train_mse"],
            "ae_minus_vae_test": by[z, "AE"]["test_mse"] - by[z, "VAE"]["test_mse"],
            "vae_better_on_test": by[z, "VAE"]["test_mse"] < by[z, "AE"]["test_mse"],
        }
        for z in s["latents"]
    ]
    setting = (
        f"binarised MNIST {data.train.shape[0]} train / {data.test.shape[0]} test, "
        f"784-{s['hidden']}-N_z-{s['hidden']}-784 tanh, weight decay {args.weight_decay:g}, "
        f"Adam 1e-3, M=100, {s['epochs']} epochs, seed {args.seed}; VAE: Bernoulli + "
        "diagonal guide (L^B); AE: MSE + deterministic guide (beta = 0)"
    )
    budget = {
        "dataset": "mnist-binarized",
        "num_train": data.train.shape[0],
        "num_test": data.test.shape[0],
        "epochs": s["epochs"],
        "samples_seen": s["epochs"] * data.train.shape[0],
        "hidden": [s["hidden"]],
        "weight_decay": args.weight_decay,
        "paper": "the report does not state its training budget",
        "recipe": "tanh, Adam lr 1e-3, M=100, L=1, the same weight decay for both models",
    }
    figures = [args.figures / f"{NAME}.png", args.figures / f"{NAME}_reconstructions.png"]
    plot_mse(rows, figures[0], setting)
    plot_examples(shown, recon, data.image_shape, figures[1], setting)
    report = {
        **header(args, "MLSALT4 report sec. 5 (its figures 7 and 8): VAE vs auto-encoder", budget),
        "setting": setting,
        "figures": [f.name for f in figures],
        "mse_definition": "mean over pixels and images of (x - E[x | z = E_q[z|x]])^2, images "
        "in [0, 1]; for the AE E_q[z|x] is its code",
        "table": table,
        "results": rows,
    }
    return finish(args, report)


if __name__ == "__main__":
    main()
