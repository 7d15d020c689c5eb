"""SGVB L^A (Monte Carlo KL) vs L^B (analytic KL) at L = 1: bounds and gradient variance.

The MLSALT4 replication of Kingma & Welling (2013), section 4.4 (its figure 5): with one
sample per point, the generic estimator L^A (``trace``: log p(x, z) − log q(z|x) at one z)
optimises the bound "substantially" worse than L^B (``meanfield``: one-sample reconstruction
term minus the closed-form KL), for every latent size N_z tried, because it is noisier.

This study trains, with the same seed, architecture, data order and budget, one VAE per
(N_z, objective) through :func:`pyrovae.train.train` (run folders under ``--runs-dir``) and
reports the final test ELBO (analytic KL, 1 sample) and the same bound on the first
10 000 training images. It then measures what the claim is about directly: at a
fixed parameter setting (the initialisation, and the end of each of the two training runs,
each loaded back from its run folder with :func:`pyrovae.run.load_run`) and a fixed minibatch
of 100 training images, it draws the stochastic gradient of the per-point loss
``R = --draws`` times with each estimator (:func:`pyrovae.infer.make_objective`, the
trainer's own fast path) and reports the total variance (trace of the covariance) of the
gradient of the encoder's and of the decoder's parameters, and the ratio L^A / L^B. Both
estimators draw the same ε (common random numbers): the decoder's gradient does not involve
the KL term, so it is *identical* under the two estimators, and the whole difference is in
the encoder.

Setting (full mode): static binarised MNIST, all 50 000 training images, test on the 10 000
test images; 784-500-N_z-500-784, tanh, Bernoulli likelihood, diagonal Gaussian guide;
N_z ∈ {3, 10, 20}; Adam lr 1e-3, batch 100, 6 epochs (3·10⁵ training samples seen);
gradient variance with R = 200 draws. Adam, not AEVB's Adagrad: at this budget it trains the
784-500-20 model faster (test ELBO −133.7 vs −143.8 after 3 epochs of 10 000 images with
Adagrad lr 0.01), and both estimators get the same optimiser.

Budget: AEVB's figure 2 runs to 10⁸ training samples and the report's text does not state its
budget; this one fits ≈ 7.5–8 minutes on one thread of a busy 2-core machine (441 s and 476 s
measured: 6 runs of ≈ 45–85 s plus ≈ 90 s of gradient draws), so the bounds are
early-training values, not converged ones.
``--quick``: 500 training images, hidden 50, N_z ∈ {3, 10}, 1 epoch, 20 draws (≈ 10 s).
``--replot``: redraw ``estimators.png`` from the JSON at ``--out`` (:func:`plot_from_json`).

    python examples/studies/estimators.py [--quick] [--threads 1] [--data-dir DIR]

The JSON goes to ``runs/studies/estimators.json``, the PNGs beside it and the run folders to
``runs/studies/estimators/`` (all git-ignored). The committed results in
``docs/results/studies/`` are rewritten only when named::

    python examples/studies/estimators.py --figures docs/results/studies \\
        --out docs/results/studies/estimators.json
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyro
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
    study_config,
    train_run,
)
from matplotlib.lines import Line2D

from pyrovae.infer import elbo_terms, make_objective
from pyrovae.run import load_run
from pyrovae.train import train

NAME = "estimators"
OBJECTIVES = {"trace": "L^A (Monte Carlo KL)", "meanfield": "L^B (analytic KL)"}
STATES = ("init", "meanfield-trained", "trace-trained")


QUICK = dict(latents=[3, 10], train=500, test=200, train_eval=500, epochs=1, hidden=50, draws=20)
FULL = dict(
    latents=[3, 10, 20], train=50000, test=10000, train_eval=10000, epochs=6, hidden=500, draws=200
)


def _options(p) -> None:
    override_options(p)
    p.add_argument("--draws", type=int, default=None, help="R, gradient draws per estimator")
    p.add_argument(
        "--replot",
        action="store_true",
        help=f"only redraw {NAME}.png (in --figures) from the JSON at --out; train nothing",
    )


def _flat_grads(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)]
    ).double()


def gradient_moments(model, guide, x: torch.Tensor, objective: str, draws: int, seed: int):
    """Mean and total variance of the gradient of the per-point loss, over ``draws`` draws of ε.

    The loss is ``objective``'s estimate of −ELBO averaged over the fixed minibatch ``x``
    (the trainer's loss divided by N); the parameters are held fixed. Returns a dict per part
    (``encoder`` = the guide's parameters, ``decoder`` = the model's) and the draws themselves'
    fingerprint to check the common random numbers.
    """
    loss_fn = make_objective(objective, num_particles=1)(model, guide)
    parts = {"encoder": list(guide.parameters()), "decoder": list(model.parameters())}
    params = parts["encoder"] + parts["decoder"]
    sizes = [sum(p.numel() for p in ps) for ps in parts.values()]
    pyro.set_rng_seed(seed)
    total = sq = None
    decoder_draws = []
    for _ in range(draws):
        g = _flat_grads(loss_fn(x) / x.shape[0], params)
        total = g.clone() if total is None else total + g
        sq = g * g if sq is None else sq + g * g
        decoder_draws.append(g[sizes[0] :][:64].clone())
    mean = total / draws
    var = (sq / draws - mean * mean).clamp_min(0) * draws / (draws - 1)  # unbiased, per coordinate
    out = {}
    for name, sl in (("encoder", slice(0, sizes[0])), ("decoder", slice(sizes[0], None))):
        tv = var[sl].sum().item()
        msq = mean[sl].pow(2).sum().item()
        out[name] = {
            "total_variance": tv,
            "mean_gradient_sq_norm": msq,
            "variance_over_sq_norm": tv / msq if msq > 0 else None,
            "parameters": var[sl].numel(),
        }
    return out, torch.stack(decoder_draws)


def train_runs(args, s: dict, data) -> tuple[list[dict], dict]:
    """Train every (N_z, objective); return the rows and the (model, guide) at each state."""
    rows, states = [], {}
    train_eval = data.train[: s["train_eval"]]
    for latent in s["latents"]:
        config = study_config(
            dataset="mnist-binarized",
            likelihood="bernoulli",
            latent_dim=latent,
            hidden=[s["hidden"]],
            optimizer="adam",
            lr=1e-3,
            seed=args.seed,
            threads=args.threads,
        )
        # epochs = 0: the initialisation both runs start from (no run folder: nothing to save)
        init = train({**config, "epochs": 0}, None, dataset=data, plots=False)
        states[latent, "init"] = (init.model, init.guide)
        for objective in OBJECTIVES:
            result, record = train_run(
                {**config, "objective": objective, "epochs": s["epochs"]},
                args,
                f"nz{latent}-{objective}",
                data,
            )
            # the trained parameters, read back from the run folder
            _, model, guide, _ = load_run(record["run_dir"])
            states[latent, f"{objective}-trained"] = (model, guide)
            torch.manual_seed(args.seed)
            bound = elbo_terms(model, guide, train_eval, batch_size=1000)
            summary = result.summary
            row = {
                "latent_dim": latent,
                "objective": objective,
                "estimator": OBJECTIVES[objective],
                "test_elbo": summary["test_elbo"],
                "test_rate": summary["test_rate"],
                "test_distortion": summary["test_distortion"],
                "train_elbo": bound["elbo"].mean().item(),
                "train_rate": bound["rate"].mean().item(),
                **record,
            }
            rows.append(row)
            print(
                f"N_z={latent:3d} {objective:9s} test ELBO {row['test_elbo']:9.2f}  train "
                f"ELBO {row['train_elbo']:9.2f}  ({record['wall_seconds']:.0f} s)",
                flush=True,
            )
    return rows, states


def measure_variance(args, s: dict, data, states) -> list[dict]:
    x = data.train[:100]
    rows = []
    for latent in s["latents"]:
        for state in STATES:
            model, guide = states[latent, state]
            per, fingerprints = {}, {}
            for objective in OBJECTIVES:
                start = time.perf_counter()
                per[objective], fingerprints[objective] = gradient_moments(
                    model, guide, x, objective, s["draws"], args.seed
                )
                per[objective]["seconds"] = time.perf_counter() - start
            a, b = per["trace"], per["meanfield"]
            row = {
                "latent_dim": latent,
                "parameters_from": state,
                "trace": a,
                "meanfield": b,
                "encoder_variance_ratio_trace_over_meanfield": a["encoder"]["total_variance"]
                / b["encoder"]["total_variance"],
                "decoder_variance_ratio_trace_over_meanfield": a["decoder"]["total_variance"]
                / b["decoder"]["total_variance"],
                "decoder_gradients_max_abs_difference": (
                    fingerprints["trace"] - fingerprints["meanfield"]
                )
                .abs()
                .max()
                .item(),
            }
            rows.append(row)
            print(
                f"N_z={latent:3d} at {state:18s} encoder gradient variance L^A "
                f"{a['encoder']['total_variance']:.4g}, L^B {b['encoder']['total_variance']:.4g} "
                f"(ratio {row['encoder_variance_ratio_trace_over_meanfield']:.3g}); decoder "
                f"ratio {row['decoder_variance_ratio_trace_over_meanfield']:.3g}",
                flush=True,
            )
    return rows


#: line and marker of each estimator in the curves figure: they must differ at a glance
STYLES = {
    "meanfield": {"ls": "-", "marker": "o", "ms": 4, "lw": 1.6},
    "trace": {"ls": "--", "marker": "s", "ms": 8, "lw": 1.4, "mfc": "none", "zorder": 3},
}


def curves_figure(rows: list[dict], title: str):
    """Test ELBO against training samples seen, per N_z (colour) and estimator (line and
    marker: L^B solid with filled circles, L^A dashed with open squares), and beside it
    their difference L^B − L^A per N_z, which the first panel's scale cannot show."""
    fig = new_figure((11, 4.6))
    ax, diff = fig.subplots(1, 2)
    latents = sorted({r["latent_dim"] for r in rows})
    colours = {z: f"C{i}" for i, z in enumerate(latents)}
    by = {(r["latent_dim"], r["objective"]): r for r in rows}
    for r in rows:
        xs = [c["samples_seen"] for c in r["curve"]]
        ys = [c["test_elbo"] for c in r["curve"]]
        ax.plot(xs, ys, color=colours[r["latent_dim"]], **STYLES[r["objective"]])
    for z in latents:
        if (z, "meanfield") not in by or (z, "trace") not in by:
            continue
        b = {c["samples_seen"]: c["test_elbo"] for c in by[z, "meanfield"]["curve"]}
        a = {c["samples_seen"]: c["test_elbo"] for c in by[z, "trace"]["curve"]}
        xs = sorted(set(a) & set(b))
        diff.plot(xs, [b[x] - a[x] for x in xs], color=colours[z], marker="o", ms=4)
    diff.axhline(0.0, color="0.3", lw=0.8)
    for a in (ax, diff):
        a.set_xscale("log")
        a.set_xlabel("training samples seen")
        a.grid(alpha=0.3, which="both")
    ax.set_ylabel("test ELBO per image (nats, analytic KL)")
    ax.set_title("(a) test ELBO (higher is better)", fontsize=9)
    diff.set_ylabel("L^B − L^A, test ELBO (nats)")
    diff.set_title("(b) L^B minus L^A at the same N_z (above 0: L^B better)", fontsize=9)
    handles = [Line2D([], [], color=colours[z], lw=2) for z in latents]
    labels = [f"N_z = {z}" for z in latents]
    for objective in ("meanfield", "trace"):
        handles.append(Line2D([], [], color="0.3", **STYLES[objective]))
        labels.append(OBJECTIVES[objective])
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle(textwrap.fill(title, 130), fontsize=8)
    return fig


def plot_curves(rows: list[dict], path, title: str) -> Path:
    """:func:`curves_figure`, saved as a PNG at ``path``."""
    return save_figure(curves_figure(rows, title), path)


def plot_from_json(path, out) -> Path:
    """Redraw the curves figure (``estimators.png``) from a report this study wrote."""
    report = json.loads(Path(path).read_text())
    return plot_curves(report["runs"], out, report["setting"])


def plot_variance(rows: list[dict], path, title: str) -> None:
    fig = new_figure((10, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    latents = sorted({r["latent_dim"] for r in rows})
    width = 0.8 / len(STATES)
    for j, state in enumerate(STATES):
        sel = [
            next(r for r in rows if r["latent_dim"] == z and r["parameters_from"] == state)
            for z in latents
        ]
        xs = np.arange(len(latents)) + (j - 1) * width
        for ax, est in zip(axes, ("meanfield", "trace")):
            vals = [r[est]["encoder"]["total_variance"] for r in sel]
            ax.bar(xs, vals, width, label=f"parameters: {state}", color=f"C{j}")
            if est == "trace":
                for x, v, r in zip(xs, vals, sel):
                    ratio = r["encoder_variance_ratio_trace_over_meanfield"]
                    ax.annotate(f"×{ratio:.3g}", (x, v), ha="center", va="bottom", fontsize=7)
    for ax, est in zip(axes, ("meanfield", "trace")):
        ax.set_xticks(np.arange(len(latents)), [f"N_z={z}" for z in latents])
        ax.set_yscale("log")
        note = "  (×: ratio to L^B at the same parameters)" if est == "trace" else ""
        ax.set_title(OBJECTIVES[est] + note, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("trace of Cov[encoder gradient] (per-point loss)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle(textwrap.fill(title, 150), fontsize=7)
    save_figure(fig, path)


def main(argv=None) -> dict:
    args = parse_args(NAME, __doc__.split("\n\n")[0], argv, _options)
    if args.replot:
        if not args.out.is_file():
            sys.exit(f"{args.out} not found: give --out the JSON of a finished run of the study")
        plot_from_json(args.out, args.figures / f"{NAME}.png")
        return json.loads(args.out.read_text())
    s = settings(args, QUICK, FULL, ("latents", "epochs", "draws"))
    data = load_spread("mnist-binarized", args, s["train"], s["test"])
    rows, states = train_runs(args, s, data)
    variance = measure_variance(args, s, data, states)
    setting = (
        f"binarised MNIST {data.train.shape[0]} train / {data.test.shape[0]} test, "
        f"784-{s['hidden']}-N_z-{s['hidden']}-784 tanh, Bernoulli, diagonal guide, L=1, Adam "
        f"1e-3, M=100, {s['epochs']} epochs, seed {args.seed}; gradient variance over "
        f"R={s['draws']} draws on one fixed minibatch of 100 training images"
    )
    by = {(r["latent_dim"], r["objective"]): r for r in rows}
    table = [
        {
            "latent_dim": z,
            "test_elbo_trace": by[z, "trace"]["test_elbo"],
            "test_elbo_meanfield": by[z, "meanfield"]["test_elbo"],
            "train_elbo_trace": by[z, "trace"]["train_elbo"],
            "train_elbo_meanfield": by[z, "meanfield"]["train_elbo"],
            "test_elbo_meanfield_minus_trace": by[z, "meanfield"]["test_elbo"]
            - by[z, "trace"]["test_elbo"],
            **{
                f"encoder_variance_ratio_trace_over_meanfield_at_{v['parameters_from']}": v[
                    "encoder_variance_ratio_trace_over_meanfield"
                ]
                for v in variance
                if v["latent_dim"] == z
            },
        }
        for z in s["latents"]
    ]
    budget = {
        "dataset": "mnist-binarized",
        "num_train": data.train.shape[0],
        "num_test": data.test.shape[0],
        "num_train_scored": s["train_eval"],
        "epochs": s["epochs"],
        "samples_seen": s["epochs"] * data.train.shape[0],
        "hidden": [s["hidden"]],
        "gradient_draws": s["draws"],
        "paper": "AEVB's figure 2 runs to 1e8 training samples; the report's text does not "
        "state its budget",
        "recipe": "tanh, Adam lr 1e-3 (AEVB: Adagrad), M=100, L=1",
    }
    figures = [args.figures / f"{NAME}.png", args.figures / f"{NAME}_gradient_variance.png"]
    plot_curves(rows, figures[0], setting)
    plot_variance(variance, figures[1], setting)
    report = {
        **header(args, "MLSALT4 report sec. 4.4 (its figure 5): L^A vs L^B at L = 1", budget),
        "setting": setting,
        "figures": [f.name for f in figures],
        "gradient_variance_definition": "trace of the covariance, over R draws of epsilon at "
        "fixed parameters and a fixed minibatch, of the gradient of the per-point loss (the "
        "estimator of -ELBO averaged over the minibatch); encoder = guide parameters, decoder "
        "= model parameters; both estimators use the same epsilon draws",
        "table": table,
        "runs": rows,
        "gradient_variance": variance,
    }
    return finish(args, report)


if __name__ == "__main__":
    main()
