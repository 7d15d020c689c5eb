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


def _terminate_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def _run_safely(fn, *args, **kwargs):
    """Run a command's body: known errors, filesystem errors and signals become one line.

    SIGTERM is handled as Ctrl-C (training installs its own handlers on top), so a
    terminated command cleans up as an interrupted one does.
    """
    import signal
    import threading

    from pyrovae.lifecycle import describe_os_error
    from pyrovae.train import TrainingInterrupted

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt) if main_thread else None
    try:
        return fn(*args, **kwargs)
    except TrainingInterrupted as e:
        raise Interrupted(str(e)) from None
    except _errors() as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(describe_os_error(e)) from None
    except KeyboardInterrupt:
        raise Interrupted("aborted; the last checkpoint is intact") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class IntList(click.ParamType):
    """Comma-separated integers, e.g. ``400,400`` (an empty string is the empty list)."""

    name = "integers"

    def __init__(self, low: float | None = None):
        self.low = low

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            items = [int(v) for v in str(value).replace(" ", "").split(",") if v]
        except ValueError:
            self.fail(f"expected comma-separated integers like 400,400, got {value!r}", param, ctx)
        if self.low is not None and any(v < self.low for v in items):
            what = "positive integers" if self.low == 1 else f"integers >= {self.low:g}"
            self.fail(f"expected {what}, got {value!r}", param, ctx)
        return items


class NameOrPath(click.Choice):
    """A registry name, or (any other value) a path: ``--dataset mnist`` or ``--dataset x.npy``."""

    name = "name-or-path"

    def convert(self, value, param, ctx):
        if value in self.choices:
            return value
        return str(value)

    def get_metavar(self, param, ctx=None) -> str:
        return "[" + "|".join(map(str, self.choices)) + "|PATH]"


def _click_type(declared) -> click.ParamType:
    option = declared.option
    if option.name == "device":  # the run option: the same choices as the loading commands'
        return Device()
    if declared.selects is not None and declared.selects.paths:
        return NameOrPath(list(option.allowed()))
    if declared.selects is not None or option.choices is not None:
        return click.Choice(list(option.allowed()))
    if option.type is list:
        return IntList(option.low)
    if option.type is Path:
        return click.Path(file_okay=False)
    return {int: click.INT, float: click.FLOAT, bool: click.BOOL, str: click.STRING}[option.type]


def _readers(readers: tuple[tuple[str, str], ...]) -> list[str]:
    """``[guide constant]``-style tags: the part names, grouped by kind when several kinds
    read one option (``encoder conv, decoder conv|pixelcnn``)."""
    kinds: dict[str, list[str]] = {}
    for kind, part in readers:
        kinds.setdefault(kind, []).append(part)
    if len(kinds) <= 1:
        return [part for _, part in readers]
    return [", ".join(f"{kind} {'|'.join(parts)}" for kind, parts in kinds.items())]


def config_option(name: str, declared, default=None) -> click.Option:
    """The click option of one declared config option, tagged with its help section.

    Its default is the declared one (shown in ``--help``); whether the user gave it is
    read from click's parameter source, so a default never overrides a TOML value.
    """
    option = declared.option
    flags = [option.flag, *("--" + a.replace("_", "-") for a in option.aliases)]
    if option.short:
        flags.append(option.short)
    if option.type is bool:
        flags = [f"{option.flag}/--no-{option.flag[2:]}"]
    default = option.default if default is None else default
    tags = _readers(declared.readers)
    tags.append(f"default: {option.default_text() if default == option.default else default}")
    param = click.Option(
        [*flags, name],
        type=_click_type(declared),
        default=list(default) if isinstance(default, list) else default,
        help=f"{option.help}  [{'; '.join(tags)}]",
    )
    param.section = declared.section.title
    return param


def config_options(
    exclude: tuple[str, ...] = (),
    defaults: dict | None = None,
    sections: tuple[str, ...] | None = None,
) -> list:
    """A click option for every option of a run (:func:`pyrovae.config.schema`), or of
    the named ``sections`` only."""
    from pyrovae.config import schema

    defaults = defaults or {}
    return [
        config_option(name, declared, defaults.get(name))
        for name, declared in schema().items()
        if name not in exclude and (sections is None or declared.section.name in sections)
    ]


class ConfigCommand(click.Command):
    """A command taking every run option, generated from the parts' declarations.

    The options are built when the command is used (so ``pyrovae --help`` imports
    no part) and rebuilt after a part is registered; ``--help`` shows them in the
    sections of :data:`pyrovae.registry.SECTIONS`, after the command's own options.
    """

    def __init__(
        self,
        *args,
        exclude: tuple[str, ...] = (),
        defaults: dict | None = None,
        sections: tuple[str, ...] | None = None,
        **kw,
    ):
        self._exclude, self._defaults, self._sections = exclude, defaults, sections
        self._generated: tuple[int, list] | None = None
        super().__init__(*args, **kw)

    @property
    def params(self) -> list[click.Parameter]:
        # one list object per generation: click appends to it and pops from it
        generation = registry.generation()
        if self._generated is None or self._generated[0] != generation:
            options = config_options(self._exclude, self._defaults, self._sections)
            self._generated = (generation, [*self._own, *options])
        return self._generated[1]

    @params.setter
    def params(self, value: list[click.Parameter]) -> None:
        self._own = list(value)
        self._generated = None

    def format_options(self, ctx, formatter) -> None:
        sections: dict[str, list] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Argument):  # shown in the usage line
                continue
            record = param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(getattr(param, "section", "Command"), []).append(record)
        for title, rows in sections.items():
            with formatter.section(f"{title} options"):
                formatter.write_dl(rows)


def given(ctx: click.Context, options: dict) -> dict:
    """The run options the user typed on the command line (not click's defaults)."""
    from click.core import ParameterSource

    return {
        k: v
        for k, v in options.items()
        if ctx.get_parameter_source(k) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    }


def _settings(ctx, config_file, options: dict, defaults: dict | None = None):
    """A RunConfig from the defaults, then the TOML file, then what the command line gave.

    ``defaults`` are the command's own (sweep's dataset); every value from them, the
    file or the command line is recorded as given.
    """
    from pyrovae.config import RunConfig, canonical, load_toml

    values = dict(defaults or {})
    if config_file:
        values.update(canonical(load_toml(config_file), config_file))
    values.update(given(ctx, options))
    return RunConfig.from_dict(values, source=config_file or "options")


def _choice(reg: registry.Registry, *extra: str) -> click.Choice:
    return click.Choice([*extra, *reg.names()])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pyrovae")
@click.pass_context
def main(ctx):
    """Variational auto-encoders in Pyro with swappable likelihoods, guides and objectives.

    A training run writes a folder (config.json, metrics.jsonl, checkpoint.pt,
    summary.json, plots/) that evaluate, sample and manifold read back.
    Numbers are per data point, in nats. ELBO and log-likelihood are negative for
    binary and other discrete data; for continuous data they are log densities and
    may be positive (Frey Face: several hundred nats).
    """
    # before torch is imported: OpenMP's idle threads sleep, and without --threads (or
    # OMP_NUM_THREADS) the thread count is chosen from the work (pyrovae.resources)
    from pyrovae.resources import command_line_threads

    ctx.call_on_close(command_line_threads())


#: options shared by the commands that load a run (evaluate, sample, manifold, diagnose)
class Device(click.ParamType):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (whether this machine has it is checked
    when the run is loaded: :func:`pyrovae.device.resolve_device`)."""

    name = "device"

    def get_metavar(self, param, ctx=None) -> str:
        return "[auto|cpu|cuda|cuda:N]"

    def convert(self, value, param, ctx):
        text = str(value)
        index = text.partition(":")[2]
        if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and index.isdigit()):
            return text
        self.fail(f"{text!r} is not auto, cpu, cuda or cuda:N", param, ctx)


def _set_threads(ctx, param, value) -> None:
    from pyrovae import resources

    if value is None:  # the idle cores, unless OMP_NUM_THREADS is set
        resources.apply_automatic_threads()
        return
    import torch

    torch.set_num_threads(value)


def DEVICE_OPTION(command):  # noqa: N802 (a decorator, named as the other options)
    """``--device`` (where the run is loaded) and ``--threads`` (torch's CPU threads)."""
    command = click.option(
        "--threads",
        type=click.IntRange(1),
        default=None,
        expose_value=False,
        callback=_set_threads,
        help="torch CPU threads [default: the cores not already busy (load average), "
        "unless OMP_NUM_THREADS is set].",
    )(command)
    return click.option(
        "--device",
        type=Device(),
        default="cpu",
        show_default=True,
        help="Where to load the run and compute.",
    )(command)


def QUIET_OPTION(command):  # noqa: N802 (a decorator, named as the other options)
    """``--quiet`` (no progress on standard error), and ``--no-progress``, its old spelling."""
    command = click.option(
        "--progress/--no-progress",
        "progress",
        default=None,
        hidden=True,
        help="Old spelling: --no-progress is --quiet.",
    )(command)
    return click.option(
        "--quiet",
        "-q",
        is_flag=True,
        help="Print results only: no progress bar (on a terminal), no line per epoch or "
        "phase (off one), no data summary.",
    )(command)


def _reporter(quiet: bool, progress: bool | None = None):
    """Progress on standard error: a bar on a terminal, lines off it; nothing if quiet."""
    from pyrovae.progress import Reporter

    return Reporter("quiet" if quiet or progress is False else "auto", file=sys.stderr)


SEED_OPTION = click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the random draws."
)
CONFIG_FILE_OPTION = click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="TOML file of settings (keys as the options below, e.g. latent_dim = 20); "
    "command-line options override it.",
)


@main.command(cls=ConfigCommand)
@CONFIG_FILE_OPTION
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Run folder to write [default: runs/DATASET].",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its checkpoint; options you omit keep the run's values.",
)
@click.option("--overwrite", is_flag=True, help="Replace a run already in --out.")
@QUIET_OPTION
@click.pass_context
def train(ctx, config_file, out, resume, overwrite, quiet, progress, **options):
    """Train a VAE and write a run folder.

    \b
    Examples:
      pyrovae train --epochs 5 --latent-dim 2
      pyrovae train --dataset mnist-binarized --objective iwae -L 5 --out runs/iwae
      pyrovae train --config run.toml --lr 3e-4
      pyrovae train --out runs/iwae --epochs 20 --resume
      torchrun --standalone --nproc_per_node 2 -m pyrovae train --dataset mnist-binarized
    """
    from pyrovae import distributed
    from pyrovae.train import train as train_run

    def go():
        config = _settings(ctx, config_file, options)
        folder = Path(out or Path("runs") / _data_name(config.dataset))
        if resume and not folder.exists():
            raise click.ClickException(f"--resume: run folder {folder} does not exist")
        reporter = _reporter(quiet, progress)
        try:
            result = train_run(
                config,
                folder,
                resume=resume,
                overwrite=overwrite,
                progress=reporter,
                log=reporter.echo,
            )
        finally:
            distributed.shutdown()
        if result.run is not None:  # under torchrun, rank 0 writes and reports
            click.echo(f"run written to {folder}")
            _print_summary(result.summary)

    _run_safely(go)


SWEEP_DEFAULTS = {"dataset": "mnist-binarized"}


@main.command(cls=ConfigCommand, exclude=("prior", "beta"), defaults=SWEEP_DEFAULTS)
@CONFIG_FILE_OPTION
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
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Sweep folder: one run per (prior, β) and summary/ [default: runs/sweep-DATASET].",
)
@QUIET_OPTION
@click.pass_context
def sweep(ctx, config_file, betas, priors, out, quiet, progress, **options):
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
    from pyrovae.sweep import parse_betas, table_markdown
    from pyrovae.sweep import sweep as run_sweep

    def go():
        config = _settings(ctx, config_file, options, defaults=SWEEP_DEFAULTS)
        beta_values = parse_betas(betas)
        folder = Path(out or Path("runs") / f"sweep-{_data_name(config.dataset)}")
        result = run_sweep(
            config,
            beta_values,
            priors or ("standard",),
            folder,
            progress=_reporter(quiet, progress),
            log=click.echo,
        )
        click.echo(f"summary written to {result.summary_dir}")
        click.echo(table_markdown(result.rows), nl=False)

    _run_safely(go)


#: the numbers of the end-of-run table, in its order (each led by the split's name)
SUMMARY_KEYS = ("elbo", "rate", "distortion", "weight_kl", "iw_log_likelihood")
SUMMARY_KEYS += ("iw_log_likelihood_se", "mse", "reconstruction_sd")


def _print_summary(summary: dict, prefix: str = "test_") -> None:
    """The aligned table of a run's numbers (``train`` at its end, ``evaluate``)."""
    keys = [prefix + key for key in SUMMARY_KEYS if summary.get(prefix + key) is not None]
    width = max([24, *map(len, keys)])
    for k in keys:
        click.echo(f"  {k:{width}s} {summary[k]:12.4f}")


def _load(run_dir, device):
    from pyrovae.run import load_run

    return load_run(run_dir, device=device)


def _dataset_for(config, info, dataset, data_dir):
    from pyrovae.config import ConfigError
    from pyrovae.data import load_configured

    changes = {"dataset": dataset} if dataset else {}
    if data_dir:
        changes["data_dir"] = data_dir
    data = load_configured(config.replace(**changes) if changes else config)
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
@click.option(
    "--dataset",
    type=NameOrPath(list(registry.DATASETS.names())),
    help="Evaluate on another dataset: a built-in name, or a file or folder of your own.",
)
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option(
    "--chunk-size",
    type=int,
    default=None,
    help="Importance samples drawn per vectorised pass [default: chosen with --batch-size "
    "from K, the points and their size, within a memory budget].",
)
@click.option(
    "--batch-size",
    type=int,
    default=None,
    help="Points per pass [default: automatic for the IW estimate, 500 for the ELBO and MSE].",
)
@click.option("--limit", type=int, default=None, help="Evaluate only the first N points.")
@SEED_OPTION
@DEVICE_OPTION
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the numbers as JSON (what evaluation-SPLIT.json holds) instead of a table.",
)
@QUIET_OPTION
def evaluate(
    run_dir,
    samples,
    split,
    dataset,
    data_dir,
    chunk_size,
    batch_size,
    limit,
    seed,
    device,
    as_json,
    quiet,
    progress,
):
    """Evaluate a run: ELBO, rate, distortion, IW log-likelihood and MSE per data point.

    Writes RUN_DIR/evaluation-SPLIT.json and prints the numbers as a table (--json: as
    JSON). Progress goes to standard error: a bar on a terminal, a line per phase off it.
    """

    def go():
        import pyro

        from pyrovae.infer import full_vb
        from pyrovae.infer.evaluation import elbo_terms, iw_log_likelihood, reconstruction_mse
        from pyrovae.progress import duration
        from pyrovae.resources import check_pass_fits
        from pyrovae.run import RunFolder, write_json

        if samples < 0:
            raise click.BadParameter("--samples must be >= 0")
        for name, value in (("--chunk-size", chunk_size), ("--batch-size", batch_size)):
            if value is not None and value < 1:
                raise click.BadParameter(f"{name} must be a positive integer, got {value}")
        config, model, guide, info = _load(run_dir, device)
        data = _dataset_for(config, info, dataset, data_dir)
        x = data.split(split)[:limit].to(next(guide.parameters()).device)
        model.likelihood.check_data(x)
        widths = [data.data_dim, *config.hidden, model.likelihood.out_features]
        if chunk_size is not None and batch_size is not None:  # automatic sizes fit by design
            rows = min(chunk_size, max(samples, 1)) * min(batch_size, len(x))
            fix = "lower --chunk-size or --batch-size"
            check_pass_fits(rows, widths, "an evaluation pass", fix)
        points_per_pass = batch_size or 500  # the ELBO's and the MSE's passes
        reporter = _reporter(quiet, progress)
        pyro.set_rng_seed(seed)
        num_train = info.get("num_train") or data.train.shape[0]  # full VB: weight KL / N
        points = f"{len(x)} points"
        with reporter.task("ELBO, rate and distortion") as task:
            terms = elbo_terms(model, guide, x, batch_size=points_per_pass, num_data=num_train)
            task.done(f"{points}, {duration(task.elapsed)}")
        out = {f"{k}": v.mean().item() for k, v in terms.items()}
        if samples:
            draws = guide.num_weight_samples if full_vb.is_full_vb(guide) else 1
            each = f"{samples} samples" + (f" x {draws} weight draws" if draws > 1 else "")
            total = len(x) * samples * draws
            with reporter.task("IW log-likelihood", total, heartbeat=True) as task:
                ll = iw_log_likelihood(
                    model,
                    guide,
                    x,
                    samples,
                    chunk_size=chunk_size,
                    batch_size=batch_size,
                    progress=task.advance,
                )
                task.done(f"{points} x {each}, {duration(task.elapsed)}")
            out["iw_log_likelihood"] = ll.mean().item()
            out["iw_log_likelihood_se"] = (ll.std() / len(ll) ** 0.5).item()
        with reporter.task("reconstruction MSE") as task:
            mse = reconstruction_mse(model, guide, x, batch_size=points_per_pass)
            task.done(f"{points}, {duration(task.elapsed)}")
        out["mse"] = mse.mean().item()
        out.update(
            split=split,
            dataset=data.name,
            num_points=len(x),
            iw_samples=samples,
            seed=seed,
            epoch=info["epoch"],
        )
        path = write_json(RunFolder(run_dir).path / f"evaluation-{split}.json", out)
        if as_json:
            click.echo(json.dumps(out, indent=2))
            return
        k = f", K = {samples}" if samples else ""
        click.echo(f"{split} split of {data.name}: {len(x)} points{k}; written to {path}")
        _print_summary({f"{split}_{key}": value for key, value in out.items()}, f"{split}_")

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
        from pyrovae.report import grey_scale
        from pyrovae.run import RunFolder, atomic_write

        config, model, guide, info = _load(run_dir, device)
        model = full_vb.plug_in(model, guide)  # a Bayesian decoder samples at q(θ)'s mean
        pyro.set_rng_seed(seed)
        x = model.sample(num).cpu()
        path = Path(out) if out else RunFolder(run_dir).plots / f"samples-{seed}.png"
        low, high = grey_scale(info.get("value_range"))
        plots.plot_image_grid(
            x.clamp(low, high), _shape(info), path, title=f"{num} samples (seed {seed})"
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
        from pyrovae.report import grey_scale
        from pyrovae.run import RunFolder

        config, model, guide, info = _load(run_dir, device)
        model = full_vb.plug_in(model, guide)  # a Bayesian decoder decodes at q(θ)'s mean
        if model.latent_dim != 2:
            raise ConfigError(
                f"the manifold plot needs a 2-D latent space; this run has {model.latent_dim} "
                "(train with --latent 2)"
            )
        shape = _shape(info)
        if not plots.is_image_shape(shape):
            raise ConfigError(
                f"the manifold plot draws images and this run's data are table rows of "
                f"{shape[0]} numbers; use pyrovae sample to see them"
            )
        low, high = grey_scale(info.get("value_range"))
        path = Path(out) if out else RunFolder(run_dir).plots / "manifold.png"
        plots.plot_manifold(
            lambda z: model.decode(z).clamp(low, high),
            shape,
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
@QUIET_OPTION
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
    quiet,
    progress,
):
    """Posterior diagnostics of a run with ArviZ.

    \b
    Every run: PSIS k̂ of the guide q(z|x) per point (Yao et al. 2018); k̂ > 0.7
    means q misses posterior mass for that point (khat.png, diagnostics.json).
    Bayesian decoder (full VB): draws of the weights from q(θ) as chains, with
    replicated images drawn at each (Pyro's Predictive); az.summary (summary.csv),
    LOO and WAIC from per-image log-likelihoods, trace and posterior plots, the
    posterior predictive check (ppc.png, az.plot_ppc), and the InferenceData
    (inference_data.nc: posterior, log_likelihood, posterior_predictive,
    observed_data, sample_stats).
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
                progress=_reporter(quiet, progress),
            )
        except ValueError as e:  # e.g. an unknown site name
            raise click.ClickException(str(e).splitlines()[0]) from None
        if result.summary is not None:
            with pd.option_context("display.width", 120, "display.max_columns", 20):
                click.echo(result.summary.to_string())
        report = result.to_dict()
        keys = ("loo", "waic", "posterior_predictive", "guide_khat", "max_r_hat", "min_ess_bulk")
        for key in (*keys, "notes"):
            if report.get(key) is not None:
                click.echo(f"{key}: {json.dumps(report[key])}")
        click.echo(f"wrote {', '.join(Path(p).name for p in result.paths.values())}")

    _run_safely(go)


def _data_name(dataset: str) -> str:
    """A built-in dataset's name, or a user's file or folder's stem (``runs/<it>``)."""
    return dataset if dataset in registry.DATASETS else Path(dataset).stem


def _shape(info: dict) -> tuple[int, ...]:
    """The data shape a run folder records: (C, H, W), (D,); (H, W) for a 0.1.0 run."""
    return tuple(info.get("data_shape") or info["image_shape"])


@main.command(cls=ConfigCommand, sections=("data",), exclude=("dataset",))
@click.argument("path", required=False, type=click.Path())
@click.pass_context
def datasets(ctx, path, **options):
    """List the built-in datasets and their files' checksums; or, given PATH (a .npy,
    .npz, .pt or CSV file, or a folder of images), load it with the data options below
    and print its summary, without training.

    \b
    Examples:
      pyrovae datasets
      pyrovae datasets faces/ --resize 32,32
      pyrovae datasets measurements.csv --scaling standardize
    """

    def go():
        from pyrovae.data import dataset_status, describe, load_dataset, resolve_data_dir

        data_dir = options.pop("data_dir", None)
        if path is not None:
            data = load_dataset(path, data_dir, download=False, **given(ctx, options))
            click.echo(describe(data))
            return
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
