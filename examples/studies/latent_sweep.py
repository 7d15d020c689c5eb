"""AEVB figure 2: the lower bound against training samples seen, for several latent sizes N_z.

Replicates Kingma & Welling (2013), sec. 5 and figure 2 (AEVB curves only, no wake-sleep):
train and test lower bound (L^B, per data point) as a function of the number of training
samples seen, log x axis, for MNIST with N_z ∈ {3, 5, 10, 20, 200} and Frey Face with
N_z ∈ {2, 5, 10, 20}. Recipe as in the paper: one hidden layer of 500 (MNIST) / 200 (Frey)
tanh units in encoder and decoder, Adagrad (lr 0.01, from the paper's {0.01, 0.02, 0.1}),
M = 100, L = 1. Every run goes through ``pyrovae.train.train``; the curve is its
``metrics.jsonl`` (one point per epoch; samples seen = epoch × training-set size).

Data: the paper used grey-level MNIST under a Bernoulli decoder (cross-entropy with grey
targets). pyrovae offers ``mnist-dynamic``: the grey levels are Bernoulli probabilities,
binarised afresh for every batch, whose expected log-likelihood is exactly that cross-entropy;
its test split is binarised once (seed 0). Frey Face: the paper's Gaussian decoder with
learned variance and sigmoid means (``gaussian-learned``, unbounded — see Mattei & Frellsen;
``nan_policy="rollback"`` halves the learning rate should a step blow up); its Frey numbers are
densities on [0, 1]^560 and positive.

Budget (full mode, chosen to fit ≈ 6–8 min on one thread of a shared 2-core CPU; the paper's
x axis runs to 10^8 samples, two to three orders of magnitude more):

* MNIST: the first 10 000 training images (of 50 000), the first 2 000 test images,
  20 epochs = 2 × 10^5 samples seen per N_z;
* Frey Face: all 1 565 training frames, the 200 test frames, 400 epochs ≈ 6.3 × 10^5 samples.

So the figure covers only the first stretch of the paper's x axis (10^4–10^6); whether more
latent variables overfit (the paper: they do not, thanks to the KL term) can only be checked
on that stretch. Measured: 525 s wall on one thread
with the 2-core machine oversubscribed (load average 4).

``--replot`` redraws the figure from the JSON at ``--out`` into ``--figures`` without training
(the committed figure: ``--replot --out docs/results/studies/latent_sweep.json --figures
docs/results/studies``). ``--quick``: 500 / 200 MNIST images, 2 epochs; 300 / 100 Frey frames,
3 epochs (≈ 10 s).

    python examples/studies/latent_sweep.py [--quick] [--threads 1] [--data-dir DIR]

The JSON goes to ``runs/studies/latent_sweep.json``, the PNGs beside it and the run folders to
``runs/studies/latent_sweep/`` (all git-ignored). The committed results in
``docs/results/studies/`` are rewritten only when named::

    python examples/studies/latent_sweep.py --threads 1 --figures docs/results/studies \\
        --out docs/results/studies/latent_sweep.json
"""

from __future__ import annotations

import json

from _common import (
    best_test_elbo,
    data_budget,
    finish,
    frey_config,
    header,
    load,
    mnist_config,
    new_figure,
    parse_args,
    plot_train_test,
    save_figure,
    train_run,
    train_test_legend,
)

NAME = "latent_sweep"
MNIST_LATENTS = (3, 5, 10, 20, 200)
FREY_LATENTS = (2, 5, 10, 20)
FULL = dict(mnist_train=10000, mnist_test=2000, mnist_epochs=20, frey_epochs=400)
QUICK = dict(mnist_train=500, mnist_test=200, mnist_epochs=2, frey_train=300, frey_test=100)
QUICK.update(frey_epochs=3)


def settings(quick: bool) -> dict:
    s = dict(QUICK if quick else FULL)
    s.setdefault("frey_train", None)
    s.setdefault("frey_test", None)
    return s


def plot(results: dict, path) -> None:
    fig = new_figure((11, 4.2))
    axes = fig.subplots(1, 2)
    for ax, (key, title) in zip(axes, (("mnist", "MNIST (mnist-dynamic)"), ("frey", "Frey Face"))):
        runs = results[key]
        colours = [f"C{i}" for i in range(len(runs))]
        for colour, r in zip(colours, runs):
            label = f"$N_z$ = {r['latent_dim']}"
            plot_train_test(ax, r["curve"], colour, label, x="samples_seen", train_first=True)
        train_test_legend(ax)
        ax.set_xscale("log")
        ax.set_xlabel("training samples seen")
        ax.set_ylabel("lower bound L^B per data point (nats)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        # the first epochs are far below: show the test curves from 10^4 samples on
        late = [p for r in runs for p in r["curve"] if p["samples_seen"] >= 1e4]
        if late:
            lo = min(p["test_elbo"] for p in late)
            hi = max(max(p["test_elbo"], p["train_elbo"]) for p in late)
            pad = 0.05 * (hi - lo) + 1.0
            ax.set_ylim(lo - pad, hi + pad)
        ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.suptitle("AEVB figure 2 replication: lower bound vs training samples seen", fontsize=10)
    save_figure(fig, path)


def replot_option(parser) -> None:
    parser.add_argument(
        "--replot", action="store_true", help="only redraw the figure from the JSON at --out"
    )


def announce(key: str, nz: int, record: dict) -> None:
    """Print a run's final train and test ELBO and its wall time."""
    print(
        f"{key:5s} Nz={nz:3d}: train {record['final_train_elbo']:8.2f}  test "
        f"{record['final_test_elbo']:8.2f}  ({record['wall_seconds']:.0f} s)",
        flush=True,
    )


def main(argv=None) -> dict:
    args = parse_args(NAME, __doc__.split("\n\n")[0], argv, extra=replot_option)
    if args.replot:
        report = json.loads(args.out.read_text())
        plot(report["runs"], args.figures / f"{NAME}.png")
        return report
    s = settings(args.quick)
    mnist = load("mnist-dynamic", args, s["mnist_train"], s["mnist_test"])
    frey = load("frey", args, s["frey_train"], s["frey_test"])
    results = {"mnist": [], "frey": []}
    for nz in MNIST_LATENTS:
        config = mnist_config(latent_dim=nz, epochs=s["mnist_epochs"], threads=args.threads)
        _, record = train_run(config, args, f"mnist-nz{nz}", mnist)
        results["mnist"].append({"latent_dim": nz, **record})
        announce("mnist", nz, record)
    for nz in FREY_LATENTS:
        config = frey_config(latent_dim=nz, epochs=s["frey_epochs"], threads=args.threads)
        result, record = train_run(config, args, f"frey-nz{nz}", frey)
        record["rollbacks"] = result.summary.get("rollbacks", [])
        results["frey"].append({"latent_dim": nz, **record})
        announce("frey", nz, record)
    figure = args.figures / f"{NAME}.png"
    plot(results, figure)
    budget = {
        "mnist": {
            "dataset": "mnist-dynamic",
            **data_budget(mnist, s["mnist_epochs"], hidden=[500]),
        },
        "frey": {
            "dataset": "frey",
            "likelihood": "gaussian-learned (sigmoid means)",
            **data_budget(frey, s["frey_epochs"], hidden=[200]),
        },
        "paper": "x axis up to 1e8 training samples",
        "recipe": "tanh, Adagrad lr 0.01, M=100, L=1, objective L^B (meanfield)",
    }
    table = {
        key: [
            {
                "latent_dim": r["latent_dim"],
                "samples_seen": r["curve"][-1]["samples_seen"],
                "final_train_elbo": r["final_train_elbo"],
                "final_test_elbo": r["final_test_elbo"],
                "best_test_elbo": best_test_elbo(r["curve"]),
                "wall_seconds": r["wall_seconds"],
            }
            for r in runs
        ]
        for key, runs in results.items()
    }
    report = {
        **header(args, "Kingma & Welling (2013), figure 2 (AEVB curves)", budget),
        "figures": [figure.name],
        "table": table,
        "runs": results,
    }
    return finish(args, report)


if __name__ == "__main__":
    main()
