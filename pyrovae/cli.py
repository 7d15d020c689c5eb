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


def _run_safely(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except _errors() as e:
        raise click.ClickException(str(e)) from None


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
        raise click.BadParameter(f"widths must be positive integers, got {value!r}")
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
    click.option("--guide", type=_choice(registry.GUIDES), help="q(z|x) [default: diagonal]."),
    click.option("--prior", type=_choice(registry.PRIORS), help="p(z) [default: standard]."),
    click.option(
        "--objective",
        type=_choice(registry.OBJECTIVES),
        help="trace = L^A (MC KL), meanfield = L^B (analytic KL), iwae = IWAE bound "
        "[default: meanfield].",
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
    click.option("--weight-decay", type=float, help="L2 weight decay [default: 0]."),
    click.option("--batch-size", "-M", type=int, help="Minibatch size M [default: 100]."),
    click.option("--epochs", type=int, help="Epochs [default: 10]."),
    click.option("--seed", type=int, help="Seed that fixes the run [default: 0]."),
    click.option("--device", type=str, help="auto, cpu or cuda [default: auto]."),
    click.option(
        "--iw-samples",
        type=int,
        help="Importance samples for the final test log-likelihood (0 = skip) [default: 100].",
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
    """
    from pyrovae.config import RunConfig, load_toml
    from pyrovae.train import train as train_run

    def go():
        values = load_toml(config_file) if config_file else {}
        values.update({k: v for k, v in options.items() if v is not None})
        config = RunConfig.from_dict(values, source=config_file or "options")
        folder = Path(out or Path("runs") / config.dataset)
        if resume and not folder.exists():
            raise click.ClickException(f"--resume: run folder {folder} does not exist")
        result = train_run(config, folder, resume=resume, overwrite=overwrite, progress=progress)
        click.echo(f"run written to {folder}")
        _print_summary(result.summary)

    _run_safely(go)


def _print_summary(summary: dict) -> None:
    keys = ["test_elbo", "test_rate", "test_distortion", "test_iw_log_likelihood", "test_mse"]
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
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
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
        x = data.split(split)[:limit].to(next(model.parameters()).device)
        model.likelihood.check_data(x)
        pyro.set_rng_seed(seed)
        terms = elbo_terms(model, guide, x, batch_size=batch_size)
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
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False), help="PNG [default: RUN/plots/samples-SEED.png]."
)
@click.option("--save-tensor", type=click.Path(dir_okay=False), help="Also save the means (.pt).")
@click.option("--device", default="cpu", show_default=True)
def sample(run_dir, num, seed, out, save_tensor, device):
    """Draw z ~ p(z) and plot the decoder's means E[x|z]."""

    def go():
        import pyro
        import torch

        from pyrovae import plots
        from pyrovae.run import RunFolder, atomic_write

        config, model, guide, info = _load(run_dir, device)
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
@click.option("--device", default="cpu", show_default=True)
def manifold(run_dir, grid, out, device):
    """Plot the learned 2-D manifold: decoder means on a Φ⁻¹ grid (AEVB figure 4)."""

    def go():
        from pyrovae import plots
        from pyrovae.config import ConfigError
        from pyrovae.run import RunFolder

        config, model, guide, info = _load(run_dir, device)
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
