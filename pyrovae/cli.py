"""The ``pyrovae`` command line: train, evaluate, sample, manifold, datasets.

Every part is chosen by its name in :mod:`pyrovae.registry`; ``--help`` on
each command lists the real choices. Errors are one line and a non-zero exit.
Heavy imports (torch, pyro, matplotlib) happen inside the commands, so
``--help`` is fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pyrovae import __version__, registry


def _errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean bad input or state, reported as one line."""
    from pyrovae.config import ConfigError
    from pyrovae.data import DataError
    from pyrovae.device import DeviceError
    from pyrovae.run import RunError
    from pyrovae.train import TrainingError

    return (ConfigError, DataError, DeviceError, RunError, TrainingError, registry.UnknownNameError)


class Interrupted(click.ClickException):
    """Training stopped by a signal: exit code 130, as a shell reports Ctrl-C."""

    exit_code = 130


def _run_safely(fn, *args, **kwargs):
    from pyrovae.train import TrainingInterrupted

    try:
        return fn(*args, **kwargs)
    except TrainingInterrupted as e:
        raise Interrupted(str(e)) from None
    except _errors() as e:
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        raise click.ClickException("aborted; the last checkpoint is intact") from None


def _int_list(ctx, param, value):
    if value is None:
        return None
    try:
        widths = [int(v) for v in str(value).replace(" ", "").split(",") if v]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers like 400,400, got {value!r}"
        ) from None
    if not widths or any(w < 1 for w in widths):
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return widths


def _choice(reg: registry.Registry, *extra: str) -> click.Choice:
    return click.Choice([*extra, *reg.names()])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pyrovae")
def main():
    """Variational auto-encoders in Pyro with swappable likelihoods, guides and objectives.

    A training run writes a folder (config.json, metrics.jsonl, checkpoint.pt,
    summary.json, plots/) that evaluate, sample and manifold read back.
    Numbers are per data point, in nats; ELBO and log-likelihood are negative.
    """


# Options of `train`, each mapping to a RunConfig field (None = not given).
#: options shared by the commands that load a run (evaluate, sample, manifold, diagnose)
DEVICE_OPTION = click.option(
    "--device", default="cpu", show_default=True, help="cpu or cuda: where to load the run."
)
SEED_OPTION = click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the random draws."
)

TRAIN_OPTIONS = [
    click.option(
        "--dataset",
        type=_choice(registry.DATASETS),
        help="Dataset (default: digits, embedded, works offline).",
    ),
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False),
        help="Folder of dataset files [default: $PYROVAE_DATA or ~/.cache/pyrovae].",
    ),
    click.option(
        "--likelihood",
        type=_choice(registry.LIKELIHOODS, "auto"),
        help="p(x|z); auto = bernoulli for binary data, gaussian-fixed otherwise.",
    ),
    click.option("--sigma", type=float, help="σ of gaussian-fixed [default: 0.1]."),
    click.option(
        "--relaxed-bernoulli",
        is_flag=True,
        default=None,
        help="Let bernoulli score grey data (not a density; as Pyro's example).",
    ),
    click.option(
        "--mean-activation",
        type=click.Choice(["identity", "sigmoid"]),
        help="Output map of Gaussian means [default: identity].",
    ),
    click.option(
        "--floor",
        type=float,
        help="σ floor ξ of bounded-gaussian (Mattei & Frellsen) [default: 0.01].",
    ),
    click.option(
        "--info-max",
        type=float,
        help="Information budget I_max of baggins, nats per dimension [default: 3].",
    ),
    click.option(
        "--floor-mode",
        type=click.Choice(["max", "softplus"]),
        help="How baggins applies its variance floor [default: max].",
    ),
    click.option(
        "--guide",
        type=_choice(registry.GUIDES),
        help="q(z|x): diagonal (learned σ(x)), constant (means only; Fyffe) or deterministic "
        "(a point code: a plain auto-encoder, with --beta 0) [default: diagonal].",
    ),
    click.option(
        "--scale-transform",
        type=click.Choice(["softplus", "exp"]),
        help="Diagonal guide: σ = softplus(r), or σ = exp(r/2) with r = log σ² as in AEVB "
        "eq. 13 (and pythae) [default: softplus].",
    ),
    click.option(
        "--posterior-scale",
        type=float,
        help="Posterior σ of the constant guide (initial value if learned) [default: 1].",
    ),
    click.option(
        "--learn-scale",
        type=click.Choice(["none", "scalar", "vector"]),
        help="Constant guide: keep σ fixed, or learn one scalar / one per dimension.",
    ),
    click.option(
        "--prior",
        type=_choice(registry.PRIORS),
        help="The marginal m(z): standard N(0, I), mixture (learned Gaussians) or vamp "
        "(VampPrior) [default: standard].",
    ),
    click.option(
        "--prior-components",
        type=int,
        help="Components K of the mixture / pseudo-inputs of the vamp prior [default: 10].",
    ),
    click.option(
        "--objective",
        type=_choice(registry.OBJECTIVES),
        help="trace = L^A (MC KL), meanfield = L^B (analytic KL), iwae = IWAE bound, "
        "bilbo = Fyffe's batch bound (constant guide) [default: meanfield].",
    ),
    click.option("--particles", "-L", type=int, help="Samples per data point L [default: 1]."),
    click.option("--latent", "latent_dim", type=int, help="Latent size [default: 10]."),
    click.option(
        "--hidden",
        callback=_int_list,
        help="Hidden widths, encoder side, comma-separated [default: 400].",
    ),
    click.option(
        "--activation",
        type=_choice(registry.ACTIVATIONS),
        help="Hidden nonlinearity [default: tanh].",
    ),
    click.option(
        "--init",
        type=click.Choice(["default", "aevb"]),
        help="Weight init: torch default or AEVB's N(0, 0.01²).",
    ),
    click.option(
        "--optimizer",
        type=_choice(registry.OPTIMIZERS),
        help="Optimiser [default: adam; AEVB used adagrad].",
    ),
    click.option("--lr", type=float, help="Learning rate [default: 1e-3]."),
    click.option(
        "--lr-milestones",
        callback=_int_list,
        help="Epochs at which the learning rate is multiplied by --lr-gamma, comma-separated "
        "[default: none].",
    ),
    click.option(
        "--lr-gamma", type=float, help="Learning-rate factor at each milestone [default: 0.1]."
    ),
    click.option("--weight-decay", type=float, help="L2 weight decay [default: 0]."),
    click.option(
        "--ema-decay",
        type=float,
        help="Evaluate an exponential moving average of the parameters with this decay "
        "d, spanning about 1/(1-d) steps, e.g. 0.999 (Polyak averaging) [default: 0, off].",
    ),
    click.option("--batch-size", "-M", type=int, help="Minibatch size M [default: 100]."),
    click.option("--epochs", type=int, help="Epochs [default: 10]."),
    click.option("--seed", type=int, help="Seed that fixes the run [default: 0]."),
    click.option("--device", type=str, help="auto, cpu or cuda [default: auto]."),
    click.option(
        "--iw-samples",
        type=int,
        help="Importance samples for the final test log-likelihood (0 = skip) [default: 100].",
    ),
    click.option(
        "--nan-policy",
        type=click.Choice(["stop", "rollback"]),
        help="On a non-finite loss or gradient: stop, or roll back to the last good epoch "
        "with half the learning rate [default: stop].",
    ),
    click.option("--max-rollbacks", type=int, help="Most rollbacks before stopping [default: 3]."),
    click.option(
        "--threads",
        type=int,
        help="torch CPU threads [default: torch's]; 1 is often fastest for small networks on a "
        "busy machine.",
    ),
    click.option(
        "--beta",
        type=float,
        help="Train D + βR (Alemi et al.): β < 1 favours rate, β > 1 compression; the test "
        "ELBO stays β = 1 [default: 1].",
    ),
    click.option(
        "--beta-schedule",
        type=_choice(registry.BETA_SCHEDULES),
        help="β per step: constant, linear warm-up from 0, or cyclical (Fu et al.) "
        "[default: constant].",
    ),
    click.option("--beta-warmup", type=float, help="Epochs of the linear β warm-up [default: 5]."),
    click.option("--beta-cycles", type=int, help="Cycles of the cyclical β schedule [default: 4]."),
    click.option(
        "--decoder",
        type=_choice(registry.DECODERS),
        help="mlp (point estimate) or bayesian (full variational Bayes over its weights, "
        "Kingma & Welling app. F) [default: mlp].",
    ),
    click.option(
        "--weight-prior",
        type=_choice(registry.WEIGHT_PRIORS),
        help="Prior on a bayesian decoder's weights: normal N(0, s²) or scale-mixture "
        "(Blundell et al.) [default: normal].",
    ),
    click.option(
        "--weight-prior-scale", type=float, help="s of the normal weight prior [default: 0.1]."
    ),
    click.option("--mixture-pi", type=float, help="π of the scale-mixture prior [default: 0.5]."),
    click.option("--mixture-sigma1", type=float, help="Wide σ₁ of the scale mixture [default: 1]."),
    click.option(
        "--mixture-sigma2", type=float, help="Narrow σ₂ of the scale mixture [default: e^-6]."
    ),
    click.option(
        "--weight-init-scale", type=float, help="Initial σ of q(θ) per weight [default: 0.03]."
    ),
    click.option(
        "--weight-samples",
        type=int,
        help="Draws θ ~ q(θ) averaged by evaluation (bayesian decoder) [default: 10].",
    ),
    click.option(
        "--init-from",
        type=click.Path(exists=True, file_okay=False),
        help="Seed q(θ)'s means (and the encoder) from a trained point-estimate run.",
    ),
]


def _add_options(options):
    def wrap(fn):
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return wrap


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="TOML file of settings; command-line options override it.",
)
@_add_options(TRAIN_OPTIONS)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Run folder to write [default: runs/DATASET].",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace a run already in --out.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def train(config_file, out, resume, overwrite, progress, **options):
    """Train a VAE and write a run folder.

    \b
    Examples:
      pyrovae train --epochs 5 --latent 2
      pyrovae train --dataset mnist-binarized --objective iwae -L 5 --out runs/iwae
      pyrovae train --config run.toml --lr 3e-4
      torchrun --standalone --nproc_per_node 2 -m pyrovae train --dataset mnist-binarized
    """
    from pyrovae import distributed
    from pyrovae.config import RunConfig, load_toml
    from pyrovae.train import train as train_run

    def go():
        values = load_toml(config_file) if config_file else {}
        values.update({k: v for k, v in options.items() if v is not None})
        config = RunConfig.from_dict(values, source=config_file or "options")
        folder = Path(out or Path("runs") / config.dataset)
        if resume and not folder.exists():
            raise click.ClickException(f"--resume: run folder {folder} does not exist")
        try:
            result = train_run(
                config, folder, resume=resume, overwrite=overwrite, progress=progress
            )
        finally:
            distributed.shutdown()
        if result.run is not None:  # under torchrun, rank 0 writes and reports
            click.echo(f"run written to {folder}")
            _print_summary(result.summary)

    _run_safely(go)


def _options_except(options, *names: str) -> list:
    """The click option decorators of ``options`` whose parameter name is not in ``names``."""

    def param_names(option) -> set[str]:
        probe = option(lambda: None)
        return {p.name for p in getattr(probe, "__click_params__", [])}

    return [o for o in options if not param_names(o) & set(names)]


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="TOML file of settings; command-line options override it.",
)
@click.option(
    "--beta",
    "betas",
    default="0.1:1.1:0.1",
    show_default=True,
    help="β values: a comma list (0.1,0.5,1) and/or ranges start:stop:step (stop included).",
)
@click.option(
    "--prior",
    "priors",
    type=_choice(registry.PRIORS),
    multiple=True,
    help="Marginal m(z), repeatable: each is its own series [default: standard].",
)
@_add_options(_options_except(TRAIN_OPTIONS, "prior", "beta"))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Sweep folder: one run per (prior, β) and summary/ [default: runs/sweep-DATASET].",
)
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
def sweep(config_file, betas, priors, out, progress, **options):
    """Train one run per marginal and β of D + βR; tabulate and plot the RD plane.

    Alemi et al. (2018), "Fixing a Broken ELBO": rate R and distortion D of each
    run on the test split (with β = 1), the RD plane, and reconstructions and
    samples by β, in OUT/summary/. Rerunning the same command skips finished runs
    and resumes interrupted ones.

    \b
    Examples:
      pyrovae sweep --beta 0.1:1.1:0.1 --epochs 10 --out runs/rd
      pyrovae sweep --beta 0.1,0.5,1 --prior standard --prior vamp --objective trace
    """
    from pyrovae.config import RunConfig, load_toml
    from pyrovae.sweep import parse_betas, table_markdown
    from pyrovae.sweep import sweep as run_sweep

    def go():
        values = load_toml(config_file) if config_file else {}
        values.setdefault("dataset", "mnist-binarized")
        values.update({k: v for k, v in options.items() if v is not None})
        beta_values = parse_betas(betas)
        config = RunConfig.from_dict(values, source=config_file or "options")
        folder = Path(out or Path("runs") / f"sweep-{config.dataset}")
        result = run_sweep(
            config,
            beta_values,
            priors or ("standard",),
            folder,
            progress=progress,
            log=click.echo,
        )
        click.echo(f"summary written to {result.summary_dir}")
        click.echo(table_markdown(result.rows), nl=False)

    _run_safely(go)


def _print_summary(summary: dict) -> None:
    keys = ["test_elbo", "test_rate", "test_distortion", "test_weight_kl"]
    keys += ["test_iw_log_likelihood", "test_mse", "test_reconstruction_sd"]
    for k in keys:
        if k in summary:
            click.echo(f"  {k:24s} {summary[k]:12.4f}")


def _load(run_dir, device):
    from pyrovae.run import load_run

    return load_run(run_dir, device=device)


def _dataset_for(config, info, dataset, data_dir):
    from pyrovae.config import ConfigError
    from pyrovae.data import load_dataset

    data = load_dataset(dataset or config.dataset, data_dir=data_dir or config.data_dir)
    if data.data_dim != info["data_dim"]:
        raise ConfigError(
            f"the run was trained on data of {info['data_dim']} dimensions but {data.name!r} "
            f"has {data.data_dim}; evaluate on a dataset of the same image size"
        )
    return data


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option(
    "--samples",
    "-K",
    type=int,
    default=1000,
    show_default=True,
    help="Importance samples per point for log p(x) (0 = skip).",
)
@click.option(
    "--split", type=click.Choice(["test", "valid", "train"]), default="test", show_default=True
)
@click.option("--dataset", type=_choice(registry.DATASETS), help="Evaluate on another dataset.")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option(
    "--chunk-size",
    type=int,
    default=100,
    show_default=True,
    help="Importance samples drawn per vectorised pass (bounds memory).",
)
@click.option("--batch-size", type=int, default=500, show_default=True)
@click.option("--limit", type=int, default=None, help="Evaluate only the first N points.")
@SEED_OPTION
@DEVICE_OPTION
def evaluate(
    run_dir, samples, split, dataset, data_dir, chunk_size, batch_size, limit, seed, device
):
    """Evaluate a run: ELBO, rate, distortion, IW log-likelihood and MSE per data point.

    Writes RUN_DIR/evaluation-SPLIT.json and prints the numbers.
    """

    def go():
        import pyro

        from pyrovae.infer.evaluation import elbo_terms, iw_log_likelihood, reconstruction_mse
        from pyrovae.run import RunFolder, write_json

        if samples < 0:
            raise click.BadParameter("--samples must be >= 0")
        config, model, guide, info = _load(run_dir, device)
        data = _dataset_for(config, info, dataset, data_dir)
        x = data.split(split)[:limit].to(next(guide.parameters()).device)
        model.likelihood.check_data(x)
        pyro.set_rng_seed(seed)
        num_train = info.get("num_train") or data.train.shape[0]  # full VB: weight KL / N
        terms = elbo_terms(model, guide, x, batch_size=batch_size, num_data=num_train)
        out = {f"{k}": v.mean().item() for k, v in terms.items()}
        if samples:
            ll = iw_log_likelihood(
                model, guide, x, samples, chunk_size=chunk_size, batch_size=batch_size
            )
            out["iw_log_likelihood"] = ll.mean().item()
            out["iw_log_likelihood_se"] = (ll.std() / len(ll) ** 0.5).item()
        out["mse"] = reconstruction_mse(model, guide, x, batch_size=batch_size).mean().item()
        out.update(
            split=split,
            dataset=data.name,
            num_points=len(x),
            iw_samples=samples,
            seed=seed,
            epoch=info["epoch"],
        )
        write_json(RunFolder(run_dir).path / f"evaluation-{split}.json", out)
        click.echo(json.dumps(out, indent=2))

    _run_safely(go)


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option("--num", "-n", type=click.IntRange(1, 10000), default=64, show_default=True)
@SEED_OPTION
@click.option(
    "--out", type=click.Path(dir_okay=False), help="PNG [default: RUN/plots/samples-SEED.png]."
)
@click.option("--save-tensor", type=click.Path(dir_okay=False), help="Also save the means (.pt).")
@DEVICE_OPTION
def sample(run_dir, num, seed, out, save_tensor, device):
    """Draw z ~ p(z) and plot the decoder's means E[x|z]."""

    def go():
        import pyro
        import torch

        from pyrovae import plots
        from pyrovae.infer import full_vb
        from pyrovae.run import RunFolder, atomic_write

        config, model, guide, info = _load(run_dir, device)
        model = full_vb.plug_in(model, guide)  # a Bayesian decoder samples at q(θ)'s mean
        pyro.set_rng_seed(seed)
        x = model.sample(num).cpu()
        path = Path(out) if out else RunFolder(run_dir).plots / f"samples-{seed}.png"
        plots.plot_image_grid(
            x.clamp(0, 1), tuple(info["image_shape"]), path, title=f"{num} samples (seed {seed})"
        )
        if save_tensor:
            atomic_write(Path(save_tensor), lambda f: torch.save(x, f))
        click.echo(f"wrote {path}")

    _run_safely(go)


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option(
    "--grid",
    type=click.IntRange(2, 100),
    default=20,
    show_default=True,
    help="Points per latent axis.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False), help="PNG [default: RUN/plots/manifold.png]."
)
@DEVICE_OPTION
def manifold(run_dir, grid, out, device):
    """Plot the learned 2-D manifold: decoder means on a Φ⁻¹ grid (AEVB figure 4)."""

    def go():
        from pyrovae import plots
        from pyrovae.config import ConfigError
        from pyrovae.infer import full_vb
        from pyrovae.run import RunFolder

        config, model, guide, info = _load(run_dir, device)
        model = full_vb.plug_in(model, guide)  # a Bayesian decoder decodes at q(θ)'s mean
        if model.latent_dim != 2:
            raise ConfigError(
                f"the manifold plot needs a 2-D latent space; this run has {model.latent_dim} "
                "(train with --latent 2)"
            )
        path = Path(out) if out else RunFolder(run_dir).plots / "manifold.png"
        plots.plot_manifold(
            lambda z: model.decode(z).clamp(0, 1),
            tuple(info["image_shape"]),
            path,
            grid_size=grid,
            title="learned manifold",
        )
        click.echo(f"wrote {path}")

    _run_safely(go)


@main.command()
@click.argument("run_dir", type=click.Path())
@click.option(
    "--split", type=click.Choice(["test", "valid", "train"]), default="test", show_default=True
)
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True, help="Points.")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option(
    "--psis-samples",
    type=click.IntRange(20),
    default=500,
    show_default=True,
    help="Draws z ~ q(z|x) per point for the guide's PSIS k̂.",
)
@click.option("--chains", type=click.IntRange(1), default=2, show_default=True)
@click.option(
    "--draws", type=click.IntRange(1), default=100, show_default=True, help="Draws per chain."
)
@click.option(
    "--iw-samples",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Importance samples of z per point and weight draw for the log-likelihoods.",
)
@click.option(
    "--sites", default=None, help="Weight sites to summarise, comma-separated [default: all]."
)
@click.option(
    "--entries",
    type=click.IntRange(0),
    default=4,
    show_default=True,
    help="First entries of each weight site to keep (0 = all; a 784×500 matrix is a lot).",
)
@SEED_OPTION
@DEVICE_OPTION
@click.option("--out", type=click.Path(file_okay=False), help="Folder [default: RUN/diagnostics].")
def diagnose(
    run_dir,
    split,
    limit,
    data_dir,
    psis_samples,
    chains,
    draws,
    iw_samples,
    sites,
    entries,
    seed,
    device,
    out,
):
    """Posterior diagnostics of a run with ArviZ.

    \b
    Every run: PSIS k̂ of the guide q(z|x) per point (Yao et al. 2018); k̂ > 0.7
    means q misses posterior mass for that point (khat.png, diagnostics.json).
    Bayesian decoder (full VB): draws of the weights from q(θ) as chains,
    az.summary (summary.csv), LOO and WAIC from per-point log-likelihoods, trace and
    posterior plots, and the InferenceData (inference_data.nc).
    """

    def go():
        import pandas as pd

        from pyrovae.diagnostics import diagnose_run

        site_list = [s.strip() for s in sites.split(",") if s.strip()] if sites else None
        try:
            result = diagnose_run(
                run_dir,
                out=out,
                split=split,
                limit=limit,
                data_dir=data_dir,
                psis_samples=psis_samples,
                num_chains=chains,
                num_draws=draws,
                iw_samples=iw_samples,
                sites=site_list,
                entries=entries or None,
                seed=seed,
                device=device,
            )
        except ValueError as e:  # e.g. an unknown site name
            raise click.ClickException(str(e).splitlines()[0]) from None
        if result.summary is not None:
            with pd.option_context("display.width", 120, "display.max_columns", 20):
                click.echo(result.summary.to_string())
        report = result.to_dict()
        for key in ("loo", "waic", "guide_khat", "max_r_hat", "min_ess_bulk", "notes"):
            if report.get(key) is not None:
                click.echo(f"{key}: {json.dumps(report[key])}")
        click.echo(f"wrote {', '.join(Path(p).name for p in result.paths.values())}")

    _run_safely(go)


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Folder to inspect [default: $PYROVAE_DATA or ~/.cache/pyrovae].",
)
def datasets(data_dir):
    """List the datasets, where their files are, and whether their checksums verify."""

    def go():
        from pyrovae.data import dataset_status, resolve_data_dir

        click.echo(f"data folder: {resolve_data_dir(data_dir)}")
        bad = False
        for row in dataset_status(data_dir):
            if not row["present"]:
                state = "missing"
            elif row["sha256_ok"]:
                state = "ok"
            else:
                state, bad = "CHECKSUM MISMATCH", True
            click.echo(f"  {row['dataset']:16s} {row['file']:36s} {state}")
        if bad:
            raise click.ClickException("some files fail their checksums: delete and re-download")

    _run_safely(go)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
