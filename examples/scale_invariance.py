"""Scale invariance of BAGGINS: the same run on Frey Face multiplied by c ∈ {0.01, 1, 100}.

Claim (DESIGN.md, "BAGGINS, concretely"): rescaling the data by c changes every per-point loss
by exactly D·log c (D = 560 pixels) and leaves every gradient unchanged, so whole training runs
are the same up to that scale. Three families are run on c·x, each from the same seed:

* ``baggins`` — ``Baggins.fit_data_scale(c·x, guide)`` makes the normalisation part of the
  model: the encoder reads ``x / s`` and the decoder mean is emitted as ``s · a(h)``, with
  ``s = max |x|`` over the training set (so s → c·s);
* ``baggins-unnormalised`` — the same likelihood without that normalisation (s = 1): the
  likelihood alone is scale invariant, the networks are not;
* ``gaussian-fixed`` — N(μ, σ² I) with σ = 0.1 whatever the data's scale.

What has to be scale-equivariant for the invariance to hold: (1) the likelihood's variance,
σ² → c²σ² (BAGGINS: both the residual mean square and the variance floor S/(e^{2 I_max} − 1)
scale with c², the floor being relative to the batch's own signal variance S); (2) the
encoder's input, x / s with s → c·s; (3) the decoder's mean, μ = s · a(h); (4) the statistic s
itself (max |x| is equivariant); the prior, the guide's scale, the KL and the optimiser never
see x. Then log p(c·x | z) = log p(x | z) − D log c for every z and parameter value, every
gradient (hence every Adam step) is the same, and the trained networks are identical; held-out
numbers (σ² frozen at the training set's aggregate, which scales by c²) shift by the same
constant.

Why this example drives ``objective(model, guide)`` and a torch optimiser itself instead of
``pyrovae.train.train``: a :class:`pyrovae.data.Dataset` holds values in [0, 1] only, so scaled
data cannot go through the trainer; and the claim is step-by-step (every loss, every step), which
needs the per-step losses on identical batches and random numbers. Model, guide, objective and
evaluation are the library's (``build_model``, ``make_objective``, ``elbo_terms``).

Arithmetic is float64 by default (``--dtype float32`` to see single precision: x·c/s then
differs from x/s by rounding, and training amplifies that over steps).

Budget: full ≈ 1 min on 2 busy cores (measured 58 s wall; one torch thread), ``--quick`` ≈ 10 s.

    python examples/scale_invariance.py [--quick] [--data-dir DIR] [--out DIR] [--seed S]

The JSON and PNGs go to ``--out``, by default ``runs/fyffe/`` (git-ignored); the committed ones in
``docs/results/fyffe/`` are rewritten only when named::

    python examples/scale_invariance.py --data-dir DIR --out docs/results/fyffe
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pyrovae.build import build_model
from pyrovae.config import RunConfig
from pyrovae.data import load_dataset
from pyrovae.infer import elbo_terms, make_objective
from pyrovae.plots import tile_images
from pyrovae.provenance import provenance

NAME = "scale_invariance"
SCALES = (0.01, 1.0, 100.0)
FAMILIES = ("baggins", "baggins-unnormalised", "gaussian-fixed")
OUT_HELP = (
    "folder of the JSON and PNGs (default runs/fyffe; the committed ones: docs/results/fyffe)"
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few steps, for tests (< 15 s)")
    p.add_argument("--data-dir", default=None, help="folder with frey/ (default $PYROVAE_DATA)")
    p.add_argument("--out", default="runs/fyffe", help=OUT_HELP)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=None, help="training frames (default: all 1565)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 20)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latent", type=int, default=5)
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    quick = {"frames": 200, "epochs": 2}
    full = {"frames": 1565, "epochs": 20}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def build(family: str, args, x_train: torch.Tensor, dtype: torch.dtype):
    """Model, guide and loss module for one family, seeded so every c starts identical."""
    likelihood = "gaussian-fixed" if family == "gaussian-fixed" else "baggins"
    config = RunConfig(
        dataset="frey",
        likelihood=likelihood,
        sigma=0.1,
        guide="constant",
        learn_scale="scalar",
        posterior_scale=0.5,
        latent_dim=args.latent,
        hidden=[200],
        seed=args.seed,
    )
    pyro.set_rng_seed(args.seed)
    model, guide = build_model(config, x_train.shape[1])
    model.to(dtype)
    guide.to(dtype)
    if family == "baggins":  # the normalisation that is part of the BAGGINS model
        model.likelihood.fit_data_scale(x_train, guide)
    return model, guide, make_objective("meanfield")(model, guide)


def run(family: str, c: float, args, x_train, x_test, dtype) -> dict:
    """Train one family on c·x; every per-step loss per data point, then the test numbers."""
    xs, xt = c * x_train.to(dtype), c * x_test.to(dtype)
    n = xs.shape[0]
    model, guide, loss_fn = build(family, args, xs, dtype)
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=args.lr)
    pyro.set_rng_seed(args.seed + 1)  # the same z noise for every c
    step_losses, epoch_elbos = [], []
    for epoch in range(args.epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed + epoch))
        total = 0.0
        for idx in order.split(args.batch_size):
            loss = loss_fn(xs[idx], num_data=n)  # ≈ N × (−ELBO per point)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step_losses.append(loss.item() / n)
            total += loss.item() * len(idx) / n
        epoch_elbos.append(-total / n)
    model.eval()
    guide.eval()
    with torch.no_grad():
        pyro.set_rng_seed(args.seed + 2)
        if hasattr(model.likelihood, "freeze"):  # held-out numbers: σ² of the training set
            model.likelihood.freeze(model, guide, xs)
        terms = elbo_terms(model, guide, xt, num_samples=10)
        recon = model.decode(guide.posterior(xt).mean)
    params = {
        k: v.detach().clone()
        for mod, tag in ((model, "model"), (guide, "guide"))
        for k, v in ((f"{tag}.{k}", v) for k, v in mod.named_parameters())
    }
    return {
        "step_losses": step_losses,
        "epoch_train_elbo": epoch_elbos,
        "test_elbo": terms["elbo"].mean().item(),
        "test_distortion": terms["distortion"].mean().item(),
        "test_rate": terms["rate"].mean().item(),
        "recon": recon / c,  # back on the [0, 1] scale
        "relative_test_mse": ((recon - xt) / c).pow(2).mean().item(),
        "params": params,
        "data_scale": float(getattr(model.likelihood, "data_scale", torch.ones(())).item()),
    }


def compare(family: str, runs: dict[float, dict], d: int, eps: float) -> dict:
    """How far each c's run is from the c = 1 run shifted by D·log c.

    ``invariant`` allows rounding only: every per-step deviation below ``1000·eps`` relative
    to the losses compared, every parameter difference below ``1000·eps`` relative to the
    parameter (``eps`` of the arithmetic's dtype).
    """
    ref = runs[1.0]
    tol = 1000 * eps
    worst_relative, worst_param = 0.0, 0.0
    out = {}
    for c, r in runs.items():
        shift = d * math.log(c)
        loss, loss_ref = np.array(r["step_losses"]), np.array(ref["step_losses"])
        dev = np.abs(loss - loss_ref - shift)
        relative = dev / np.maximum(np.maximum(np.abs(loss), np.abs(loss_ref)), 1.0)
        param_diff, param_relative = 0.0, 0.0
        for k, p in r["params"].items():
            diff = (p - ref["params"][k]).abs()
            param_diff = max(param_diff, diff.max().item())
            param_relative = max(
                param_relative, (diff / ref["params"][k].abs().clamp_min(1)).max().item()
            )
        worst_relative = max(worst_relative, float(relative.max()))
        worst_param = max(worst_param, param_relative)
        out[f"c={c:g}"] = {
            "c": c,
            "d_log_c": shift,
            "loss_shift_first_step": r["step_losses"][0] - ref["step_losses"][0],
            "loss_shift_last_step": r["step_losses"][-1] - ref["step_losses"][-1],
            "max_abs_deviation_from_d_log_c": float(dev.max()),
            "max_relative_deviation": float(relative.max()),
            "final_train_elbo": r["epoch_train_elbo"][-1],
            "final_train_elbo_plus_d_log_c": r["epoch_train_elbo"][-1] + shift,
            "test_elbo": r["test_elbo"],
            "test_elbo_plus_d_log_c": r["test_elbo"] + shift,
            "test_rate": r["test_rate"],
            "relative_test_mse": r["relative_test_mse"],
            "max_abs_parameter_difference_vs_c1": param_diff,
            "max_abs_reconstruction_difference_vs_c1": (r["recon"] - ref["recon"])
            .abs()
            .max()
            .item(),
            "data_scale": r["data_scale"],
        }
    devs = [v["max_abs_deviation_from_d_log_c"] for v in out.values()]
    params = [v["max_abs_parameter_difference_vs_c1"] for v in out.values()]
    return {
        "family": family,
        "per_scale": out,
        "max_abs_deviation_from_d_log_c": max(devs),
        "max_abs_parameter_difference": max(params),
        "max_relative_deviation": worst_relative,
        "max_relative_parameter_difference": worst_param,
        "rounding_tolerance": tol,
        "invariant": worst_relative < tol and worst_param < tol,
    }


COLOURS = {0.01: "tab:blue", 1.0: "black", 100.0: "tab:orange"}


def plot_curves(runs: dict, summary: dict, d: int, path: Path, title: str) -> None:
    fig = Figure(figsize=(13, 7), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(FAMILIES))
    for j, family in enumerate(FAMILIES):
        top, bottom = axes[0, j], axes[1, j]
        for c, r in runs[family].items():
            shift = d * math.log(c)
            elbo = np.array(r["epoch_train_elbo"]) + shift
            epochs = np.arange(1, len(elbo) + 1)
            style = {"color": COLOURS[c], "lw": 3 - abs(math.log10(c)), "marker": "o", "ms": 3}
            top.plot(epochs, elbo, label=f"c = {c:g}", **style)
            if c != 1.0:
                dev = np.abs(
                    np.array(r["step_losses"]) - np.array(runs[family][1.0]["step_losses"]) - shift
                )
                bottom.plot(np.maximum(dev, 1e-16), color=COLOURS[c], lw=1, label=f"c = {c:g}")
        top.set(title=f"{family}:\ntrain ELBO + D·log c", xlabel="epoch", ylabel="nats per frame")
        if family != "baggins":
            top.set_yscale("symlog", linthresh=1000)
        top.legend(fontsize=8)
        worst = summary[family]["max_abs_deviation_from_d_log_c"]
        bottom.set(
            title=f"|loss_c − loss_1 − D·log c| per step\n(max {worst:.1e} nats per frame)",
            xlabel="step",
            ylabel="nats per frame",
            yscale="log",
        )
        bottom.set_ylim(1e-16, None)
        bottom.legend(fontsize=8)
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path)


def plot_reconstructions(runs: dict, x_test: torch.Tensor, path: Path, k: int = 8) -> None:
    idx = torch.linspace(0, x_test.shape[0] - 1, k).long()
    rows = [("data", x_test[idx])]
    for family in FAMILIES:
        for c, r in runs[family].items():
            rows.append((f"{family}, c={c:g}", r["recon"][idx].float().clamp(0, 1)))
    fig = Figure(figsize=(6.5, 0.75 * len(rows) + 0.4), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 1)
    for ax, (label, images) in zip(axes, rows):
        ax.imshow(tile_images(images, (28, 20), nrow=1), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        ax.set_title(label, fontsize=7, loc="left", pad=1)
    fig.suptitle("test frames and reconstructions ÷ c (identical rows = same model)", fontsize=8)
    fig.savefig(path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("frey", data_dir=args.data_dir)
    x_train, x_test = data.train[: args.frames], data.test
    d = x_train.shape[1]
    start = time.perf_counter()
    runs = {f: {c: run(f, c, args, x_train, x_test, dtype) for c in SCALES} for f in FAMILIES}
    eps = torch.finfo(dtype).eps
    summary = {f: compare(f, runs[f], d, eps) for f in FAMILIES}
    for f in FAMILIES:
        s = summary[f]
        print(
            f"{f:22s} max |Δloss − D log c| {s['max_abs_deviation_from_d_log_c']:.2e} nats, "
            f"max |Δparameter| {s['max_abs_parameter_difference']:.2e}, "
            f"invariant: {s['invariant']}"
        )
    steps = len(runs[FAMILIES[0]][1.0]["step_losses"])
    setting = (
        f"Frey Face, {args.frames} training frames × c, batch {args.batch_size}, {args.epochs} "
        f"epochs ({steps} steps), constant guide (learned scalar s), latent {args.latent}, "
        f"hidden [200], meanfield, Adam lr {args.lr:g}, {args.dtype}, seed {args.seed}"
    )
    report = {
        "example": NAME,
        "quick": args.quick,
        "setting": setting,
        "seed": args.seed,
        "scales": list(SCALES),
        "data_dim": d,
        "steps": steps,
        "dtype": args.dtype,
        "what_must_be_scale_equivariant": [
            "the likelihood variance: σ² → c²σ² (BAGGINS: residual mean square and the floor "
            "S/(exp(2 I_max) − 1) both scale by c²)",
            "the encoder input: the guide reads x / s (guide.input_scale = s)",
            "the decoder mean: μ = s · a(h) (Baggins.data_scale = s)",
            "the data-scale statistic: s = max |x| over the training set, so s → c·s "
            "(Baggins.fit_data_scale sets both buffers)",
            "nothing else may read x: prior, guide scale, KL and optimiser do not",
        ],
        "consequence": "per-point loss shifts by exactly D·log c at every step, gradients and "
        "Adam steps are identical, trained parameters identical, reconstructions scale by c, "
        "held-out ELBO shifts by −D·log c (σ² frozen at the training set's aggregate)",
        "families": summary,
        "wall_seconds": time.perf_counter() - start,
        "torch_threads": args.threads,
        **provenance(argv, script=__file__),  # command, commit, machine
    }
    (out / f"{NAME}.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    plot_curves(runs, summary, d, out / f"{NAME}.png", setting)
    plot_reconstructions(runs, x_test, out / f"{NAME}_reconstructions.png")
    print(f"wrote {out / f'{NAME}.json'} and two PNGs in {report['wall_seconds']:.0f} s")
    return report


if __name__ == "__main__":
    main()
