"""Constant vs learned posterior variance (Fyffe 2019), on binarised MNIST and on Frey Face.

Fyffe proves that the ELBO admits non-trivial optima with constant posterior variances, so
an encoder can emit means only (half the outputs) and, he claims, lose little or even win. This
script trains, with the same seed, architecture, optimiser and budget, on each dataset:

* ``diagonal`` — the AEVB guide: per-point means and standard deviations (objective L^B);
* ``constant, fixed s`` — means only, s fixed (``--fixed-scale``, default 0.1; L^B);
* ``constant, learned scalar`` — means only, one learned s (``learn_scale="scalar"``; L^B);
* ``constant, learned vector`` — means only, one learned s_j per latent dimension (L^B);
* ``constant + BILBO`` — means only, s fixed at 1, trained with BILBO (the ELBO under a
  zero-mean prior fitted to each batch, ``N(0, diag(m + s²))``).

Reported per run (``pyrovae.train.train``): the test ELBO and the importance-weighted test
log-likelihood under the model's prior N(0, I), and the guide's parameter count. BILBO does not
train the model's prior, so a BILBO-trained model scored under N(0, I) is scored under a prior it
never saw; it is also scored under its floating prior frozen at the training set's value,
N(0, diag(m_train + s²)) with m_train the training-set mean of μ(x)² — the same model up to the
exact linear reparameterisation z → z / √(m_train + s²), which makes that prior N(0, I) (as BAGGINS
freezes its σ² at the training set for held-out data). Only that column and the N(0, I) one are
comparable across rows; BILBO's training value itself is not a bound under any fixed prior.

Likelihoods: Bernoulli on MNIST; on Frey Face ``--frey-likelihood`` (default ``baggins``, Fyffe's
bounded likelihood, σ² frozen at the training set's aggregate for test numbers).

Setting (full mode): MNIST, the first 10 000 training images, test on the first 2 000 test
images, latent 20, hidden [200], 20 epochs; Frey Face, all 1565 training frames, 200 test
frames, latent 5, hidden [200], 150 epochs; batch 100, Adam lr 1e-3, IW with K = 100.

Budget: full ≈ 4–6 min on 2 busy cores (measured 217 s and 324 s wall, ≈ 200 s CPU; 11 min
when two other heavy jobs shared the cores; one torch thread), ``--quick`` ≈ 15 s.

    python examples/constant_vs_learned_variance.py [--quick] [--data-dir DIR] [--out DIR]

The JSON and PNG go to ``--out``, by default ``runs/fyffe/`` (git-ignored); the committed ones in
``docs/results/fyffe/`` are rewritten only when named::

    python examples/constant_vs_learned_variance.py --data-dir DIR --out docs/results/fyffe
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pyrovae.data import load_dataset
from pyrovae.infer import elbo_terms, iw_log_likelihood
from pyrovae.infer.bilbo import floating_prior
from pyrovae.models.priors import prior_replaced
from pyrovae.provenance import provenance
from pyrovae.train import train

NAME = "constant_vs_learned_variance"
VARIANTS = {
    "diagonal": {"guide": "diagonal", "objective": "meanfield"},
    "constant, fixed s": {"guide": "constant", "objective": "meanfield", "learn_scale": "none"},
    "constant, learned scalar": {
        "guide": "constant",
        "objective": "meanfield",
        "learn_scale": "scalar",
    },
    "constant, learned vector": {
        "guide": "constant",
        "objective": "meanfield",
        "learn_scale": "vector",
    },
    "constant + BILBO": {
        "guide": "constant",
        "objective": "bilbo",
        "learn_scale": "none",
        "posterior_scale": 1.0,
    },
}
OUT_HELP = "folder of the JSON and PNG (default runs/fyffe; the committed ones: docs/results/fyffe)"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny subsets, for tests (< 30 s)")
    p.add_argument("--data-dir", default=None, help="folder with the data (default $PYROVAE_DATA)")
    p.add_argument("--out", default="runs/fyffe", help=OUT_HELP)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fixed-scale", type=float, default=0.1, help="s of 'constant, fixed s'")
    p.add_argument("--frey-likelihood", default="baggins")
    p.add_argument("--mnist-train", type=int, default=None)
    p.add_argument("--mnist-test", type=int, default=None)
    p.add_argument("--mnist-epochs", type=int, default=None)
    p.add_argument("--frey-epochs", type=int, default=None)
    p.add_argument("--iw-samples", type=int, default=None)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    quick = dict(mnist_train=500, mnist_test=200, mnist_epochs=1, frey_epochs=2, iw_samples=10)
    full = dict(
        mnist_train=10000, mnist_test=2000, mnist_epochs=20, frey_epochs=150, iw_samples=100
    )
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


@torch.no_grad()
def floating_prior_numbers(result, dataset, iw_samples: int, seed: int) -> dict:
    """Test ELBO and IW log p(x) with the prior N(0, diag(m_train + s²)) of BILBO, frozen.

    m_train is the training-set mean of the posterior means squared
    (:func:`pyrovae.infer.bilbo.floating_prior`); scored with this study's own seed and
    ``iw_samples``.
    """
    model, guide = result.model, result.guide
    prior = floating_prior(guide, dataset.train)
    with prior_replaced(model, prior):
        torch.manual_seed(seed)
        elbo = elbo_terms(model, guide, dataset.test, batch_size=1000)["elbo"].mean().item()
        log_px = iw_log_likelihood(
            model, guide, dataset.test, iw_samples, chunk_size=100, batch_size=200
        )
    return {
        "test_elbo_floating_prior": elbo,
        "test_iw_log_likelihood_floating_prior": log_px.mean().item(),
        "floating_prior_scale": prior.scale.tolist(),
    }


def run_dataset(name: str, dataset, base: dict, args) -> list[dict]:
    rows = []
    for label, variant in VARIANTS.items():
        config = {**base, **variant}
        if label == "constant, fixed s":
            config["posterior_scale"] = args.fixed_scale
        start = time.perf_counter()
        result = train(config, None, dataset=dataset, plots=False)
        s = result.summary
        row = {
            "dataset": name,
            "variant": label,
            "guide": variant["guide"],
            "objective": variant["objective"],
            "learn_scale": variant.get("learn_scale"),
            "posterior_scale_init": config.get("posterior_scale"),
            "guide_parameters": s["parameters"]["guide"],
            "model_parameters": s["parameters"]["model"],
            "test_elbo": s["test_elbo"],
            "test_rate": s["test_rate"],
            "test_distortion": s["test_distortion"],
            "test_iw_log_likelihood": s["test_iw_log_likelihood"],
            "final_train_objective": result.metrics[-1]["train_elbo"],
            "seconds": time.perf_counter() - start,
        }
        if variant["guide"] == "constant":
            row["learned_posterior_scale"] = result.guide.scale().flatten().tolist()
        if variant["objective"] == "bilbo":
            row.update(floating_prior_numbers(result, dataset, args.iw_samples, args.seed))
        rows.append(row)
        print(
            f"{name:6s} {label:26s} test ELBO {row['test_elbo']:9.2f}  log p(x) "
            f"{row['test_iw_log_likelihood']:9.2f}  guide params {row['guide_parameters']:7d}"
            + (
                f"  [floating prior: ELBO {row['test_elbo_floating_prior']:.2f}, log p(x) "
                f"{row['test_iw_log_likelihood_floating_prior']:.2f}]"
                if "test_elbo_floating_prior" in row
                else ""
            )
            + f"  ({row['seconds']:.0f} s)",
            flush=True,
        )
    return rows


def plot(tables: dict[str, list[dict]], path: Path, title: str) -> None:
    fig = Figure(figsize=(13, 5), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(tables))
    for ax, (name, rows) in zip(np.atleast_1d(axes), tables.items()):
        ref = rows[0]
        x = np.arange(len(rows))
        elbo = [r["test_elbo"] - ref["test_elbo"] for r in rows]
        iw = [r["test_iw_log_likelihood"] - ref["test_iw_log_likelihood"] for r in rows]
        bars = ax.bar(x - 0.2, elbo, 0.4, label="test ELBO, prior N(0, I)", color="tab:blue")
        ax.bar_label(bars, fmt="%+.1f", fontsize=7)
        bars = ax.bar(
            x + 0.2, iw, 0.4, label="test log p(x) (IW), prior N(0, I)", color="tab:orange"
        )
        ax.bar_label(bars, fmt="%+.1f", fontsize=7)
        for i, r in enumerate(rows):
            if "test_elbo_floating_prior" in r:
                fe = r["test_elbo_floating_prior"] - ref["test_elbo"]
                fi = r["test_iw_log_likelihood_floating_prior"] - ref["test_iw_log_likelihood"]
                ax.scatter(
                    [i - 0.2, i + 0.2],
                    [fe, fi],
                    marker="D",
                    color="k",
                    zorder=3,
                    label="constant + BILBO, its floating prior frozen at the train set",
                )
                for xi, v in ((i - 0.2, fe), (i + 0.2, fi)):
                    ax.annotate(
                        f"{v:+.1f}", (xi, v), fontsize=7, xytext=(4, 4), textcoords="offset points"
                    )
        labels = [f"{r['variant']}\n{r['guide_parameters']:,} guide params" for r in rows]
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(x, labels, rotation=25, ha="right", fontsize=7)
        ax.set_ylabel("nats per point, minus the diagonal guide's (higher is better)")
        ax.set_yscale("symlog", linthresh=10)
        ax.set_ylim(top=max(3.0, 2.0 * max(elbo + iw)))
        ax.set_title(
            f"{name}: diagonal guide at {ref['test_elbo']:.1f} (ELBO), "
            f"{ref['test_iw_log_likelihood']:.1f} (log p(x))",
            fontsize=9,
        )
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    common = {
        "hidden": [args.hidden],
        "batch_size": 100,
        "lr": 1e-3,
        "seed": args.seed,
        "iw_samples": args.iw_samples,
        "device": "cpu",
    }
    mnist = load_dataset("mnist-binarized", data_dir=args.data_dir)
    # the static binarised test split is sorted by class: take evenly spaced test images
    spaced = torch.linspace(0, mnist.test.shape[0] - 1, args.mnist_test).long()
    mnist = dataclasses.replace(
        mnist, train=mnist.train[: args.mnist_train], test=mnist.test[spaced]
    )
    frey = load_dataset("frey", data_dir=args.data_dir)
    tables = {
        "mnist-binarized": run_dataset(
            "mnist",
            mnist,
            {
                **common,
                "dataset": "mnist-binarized",
                "likelihood": "bernoulli",
                "latent_dim": 20,
                "epochs": args.mnist_epochs,
            },
            args,
        ),
        "frey": run_dataset(
            "frey",
            frey,
            {
                **common,
                "dataset": "frey",
                "likelihood": args.frey_likelihood,
                "latent_dim": 5,
                "epochs": args.frey_epochs,
            },
            args,
        ),
    }
    setting = (
        f"MNIST-binarized {args.mnist_train} train / {args.mnist_test} test, latent 20, "
        f"{args.mnist_epochs} epochs; Frey {frey.train.shape[0]} / {frey.test.shape[0]}, "
        f"{args.frey_likelihood}, latent 5, {args.frey_epochs} epochs; hidden [{args.hidden}], "
        f"batch 100, Adam 1e-3, IW K={args.iw_samples}, seed {args.seed}"
    )
    findings = {}
    for name, rows in tables.items():
        ref = rows[0]
        findings[name] = {
            r["variant"]: {
                "test_elbo_minus_diagonal": r["test_elbo"] - ref["test_elbo"],
                "test_iw_minus_diagonal": r["test_iw_log_likelihood"]
                - ref["test_iw_log_likelihood"],
                "guide_parameter_ratio": r["guide_parameters"] / ref["guide_parameters"],
            }
            for r in rows[1:]
        }
    report = {
        "example": NAME,
        "quick": args.quick,
        "setting": setting,
        "seed": args.seed,
        "sign_convention": "ELBO and log p(x) per data point in nats, higher is better",
        "bilbo_note": "test_elbo / test_iw_log_likelihood use the model prior N(0, I), which "
        "BILBO never trains; *_floating_prior use N(0, diag(m_train + s²)), the BILBO prior "
        "frozen at the training set (an exact reparameterisation of z away from N(0, I))",
        "tables": tables,
        "differences_vs_diagonal": findings,
        "wall_seconds": time.perf_counter() - start,
        "torch_threads": args.threads,
        **provenance(argv, script=__file__),  # command, commit, machine
    }
    text = json.dumps(report, indent=1, allow_nan=False)
    assert all(math.isfinite(v) for v in _numbers(report))
    (out / f"{NAME}.json").write_text(text + "\n")
    plot(tables, out / f"{NAME}.png", setting)
    print(
        f"wrote {out / f'{NAME}.json'} and {out / f'{NAME}.png'} in {report['wall_seconds']:.0f} s"
    )
    return report


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, float):
        yield obj


if __name__ == "__main__":
    main()
