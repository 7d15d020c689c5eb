"""β sweeps: the rate–distortion plane of Alemi et al. (2018), one run per (marginal, β).

``sweep(config, betas, priors, out)`` trains one run folder per marginal m(z)
and β of the objective ``D + βR`` (:mod:`pyrovae.infer.beta`) under ``out``::

    OUT/<prior>/beta-<β>/      an ordinary run folder (config, checkpoint, summary, ...)
    OUT/summary/table.json     one row per run: prior, β, R, D, ELBO, IW log-likelihood,
                               and the command, commit and machine that made it
    OUT/summary/table.md       the same as a Markdown table
    OUT/summary/rate_distortion.png        D against R, one series per marginal
    OUT/summary/reconstructions-<prior>.png   test data, then one row per β
    OUT/summary/samples-<prior>.png           one row of prior samples per β

Every number is the test split's, per data point in nats, with β = 1 (the
ordinary ELBO, its rate and distortion) whatever β the run trained with. The
command ``pyrovae sweep`` defaults to ``mnist-binarized``, as in the paper.

**Resumable.** A run whose status is complete and that agrees with the
request on every option the request was given (``RunConfig.given``; the device
and data folder aside) is skipped; any other run is trained with
``resume=True``: a partial run continues from its checkpoint, a missing one
starts afresh, and a run trained with different settings is refused
(:class:`~pyrovae.run.RunError`). So an interrupted sweep, rerun with the same
command, finishes where it stopped.

Reference: A. Alemi et al., *Fixing a Broken ELBO*, ICML 2018, section 4.2
(binarised MNIST, β from 0.1 to 1.1).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pyrovae.config import ConfigError, RunConfig
from pyrovae.progress import Reporter

TABLE_COLUMNS = ("prior", "beta", "rate", "distortion", "elbo", "iw_log_likelihood")
NUM_IMAGES = 10
# config keys that may differ between a finished run and the request without retraining
_IGNORED_KEYS = ("device", "data_dir", "threads", "tensorboard", "nan_check_every")


def parse_betas(text: str) -> list[float]:
    """β values from ``"0.1,0.5,1"`` or ranges ``"0.1:1.1:0.1"`` (stop included), or both.

    Values are rounded to 10 decimals (so ``0.1:0.3:0.1`` gives 0.1, 0.2, 0.3),
    duplicates dropped, order kept.

    :raises ConfigError: on anything else, or a negative β.
    """
    values: list[float] = []
    for item in str(text).replace(" ", "").split(","):
        if not item:
            continue
        try:
            parts = [float(p) for p in item.split(":")]
        except ValueError:
            raise ConfigError(
                f"cannot read β {item!r}; give numbers like 0.1,0.5,1 or a range start:stop:step"
            ) from None
        if len(parts) == 1:
            values.append(parts[0])
        elif len(parts) == 3 and parts[2] > 0 and parts[1] >= parts[0]:
            start, stop, step = parts
            count = math.floor((stop - start) / step + 1e-9) + 1
            values.extend(start + i * step for i in range(count))
        else:
            raise ConfigError(
                f"cannot read the β range {item!r}; write start:stop:step with step > 0 "
                "and stop >= start"
            )
    betas = list(dict.fromkeys(round(v, 10) for v in values))
    if not betas:
        raise ConfigError(f"no β values in {text!r}")
    bad = [b for b in betas if not (b >= 0 and math.isfinite(b))]
    if bad:
        raise ConfigError(f"β must be a finite number >= 0, got {bad[0]!r}")
    return betas


def run_folder(out: str | Path, prior: str, beta: float) -> Path:
    """Where the run of marginal ``prior`` at ``beta`` lives under ``out``."""
    return Path(out) / prior / f"beta-{beta:g}"


@dataclass
class SweepResult:
    """What :func:`sweep` did and found (its example shows one).

    :ivar rows: one table row per run (see :data:`TABLE_COLUMNS`, plus ``run``).
    :ivar status: ``{run folder: "trained" | "resumed" | "finished"}`` for this call.
    :ivar summary_dir: the folder of the table and figures.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)
    summary_dir: Path | None = None


def _state(folder: Path, config: RunConfig) -> str:
    """``"finished"`` (status complete, its summary there, agreeing on the given options),
    ``"partial"`` or ``"new"``: a summary without a complete status is not finished."""
    from pyrovae.lifecycle import differences
    from pyrovae.run import RunFolder, saved_config

    run = RunFolder(folder)
    if not run.exists():
        return "new"
    if run.read_status().get("state") != "complete" or not run.summary_path.exists():
        return "partial"
    keys = config.given - set(_IGNORED_KEYS)
    return "partial" if differences(saved_config(run), config, keys) else "finished"


def _row(folder: Path, prior: str, beta: float) -> dict[str, Any]:
    from pyrovae.run import RunFolder

    summary = RunFolder(folder).read_summary()
    return {
        "prior": prior,
        "beta": beta,
        "rate": summary.get("test_rate"),
        "distortion": summary.get("test_distortion"),
        "elbo": summary.get("test_elbo"),
        "iw_log_likelihood": summary.get("test_iw_log_likelihood"),
        "epochs": summary.get("epoch"),
        "run": str(folder),
    }


def sweep(
    config: RunConfig | dict,
    betas: Sequence[float],
    priors: Iterable[str] = ("standard",),
    out: str | Path = "runs/sweep",
    *,
    dataset=None,
    progress: bool | Reporter = False,
    figures: bool = True,
    log: Callable[[str], None] | None = None,
) -> SweepResult:
    """Train (or resume, or skip) one run per marginal and β, then write ``out/summary/``.

    :param config: every other setting of the runs (its ``prior`` and ``beta`` are replaced).
    :param betas: the β values, each >= 0.
    :param priors: marginal names (:data:`pyrovae.registry.PRIORS`), one series each.
    :param dataset: a loaded dataset, or an array, tensor or torch dataset (default: load
        ``config.dataset`` once).
    :param progress: True, False or a :class:`~pyrovae.progress.Reporter`: how each
        run's epochs report, their labels led by the run's place in the sweep.
    :param figures: write the PNGs (the table is always written).
    :param log: called with one line per run (e.g. ``click.echo``).

    Example:

    >>> import os
    >>> import tempfile
    >>> from pyrovae.sweep import sweep
    >>> folder = tempfile.TemporaryDirectory()
    >>> config = {"dataset": "digits", "likelihood": "gaussian-fixed", "latent_dim": 2,
    ...           "hidden": [16], "epochs": 1, "iw_samples": 10}
    >>> result = sweep(config, betas=[0.5, 1.0], out=folder.name, figures=False)
    >>> [(row["prior"], row["beta"]) for row in result.rows]
    [('standard', 0.5), ('standard', 1.0)]
    >>> sorted(result.status.values()), sorted(os.listdir(result.summary_dir))
    (['trained', 'trained'], ['table.json', 'table.md'])
    >>> again = sweep(config, betas=[0.5, 1.0], out=folder.name, figures=False)
    >>> sorted(again.status.values())  # an interrupted or repeated sweep skips finished runs
    ['finished', 'finished']
    >>> folder.cleanup()
    """
    from pyrovae.train import load_data, train

    reporter = progress if isinstance(progress, Reporter) else Reporter(progress)

    if not isinstance(config, RunConfig):
        config = RunConfig.from_dict(config, source="sweep")
    priors = list(dict.fromkeys(priors)) or ["standard"]
    betas = [float(b) for b in betas]
    if not betas:
        raise ConfigError("a sweep needs at least one β")
    configs = {(p, b): config.replace(prior=p, beta=b) for p in priors for b in betas}
    first = next(iter(configs.values()))
    dataset = load_data(first, dataset)
    result = SweepResult()
    for i, ((prior, beta), cfg) in enumerate(configs.items(), 1):
        cfg = cfg.for_data(dataset.binary)
        folder = run_folder(out, prior, beta)
        state = _state(folder, cfg)
        if state == "finished":
            status = "finished"
        else:
            shown = reporter.with_prefix(f"[{i}/{len(configs)}] {prior} β={beta:g}  ")
            train(cfg, folder, resume=True, dataset=dataset, progress=shown)
            status = "resumed" if state == "partial" else "trained"
        result.status[str(folder)] = status
        if log is not None:
            log(f"[{i}/{len(configs)}] prior {prior}, β = {beta:g}: {status} ({folder})")
        result.rows.append(_row(folder, prior, beta))
    result.summary_dir = Path(out) / "summary"
    for leftover in result.summary_dir.glob(".*.tmp"):  # from a sweep killed while writing
        leftover.unlink(missing_ok=True)
    write_table(result.rows, result.summary_dir)
    if figures:
        write_figures(result.rows, result.summary_dir, dataset)
    return result


# --------------------------------------------------------------------------- outputs


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The sweep's table in Markdown: prior, β, R, D, ELBO, IW log-likelihood (nats)."""
    head = ["prior", "β", "R", "D", "ELBO", "IW log p(x)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["prior"]), f"{r['beta']:g}"]
        cells += [_fmt(r.get(k)) for k in TABLE_COLUMNS[2:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(rows: Sequence[dict[str, Any]], folder: Path) -> tuple[Path, Path]:
    """Write ``table.json`` and ``table.md`` into ``folder``.

    Each row of ``table.json`` also records how it was made: the command line of this
    process, the commit and the machine (:func:`pyrovae.provenance.provenance`).
    """
    from pyrovae.provenance import provenance
    from pyrovae.run import atomic_write, write_json

    folder = Path(folder)
    record = provenance()
    json_path = write_json(folder / "table.json", [{**r, **record} for r in rows])
    text = table_markdown(rows).encode()
    md_path = atomic_write(folder / "table.md", lambda f: f.write(text))
    return json_path, md_path


@torch.no_grad()
def write_figures(
    rows: Sequence[dict[str, Any]], folder: Path, dataset=None, prefix: str = ""
) -> list[Path]:
    """The RD plane and, per marginal, reconstructions and prior samples by β (PNGs).

    Without a ``dataset`` only the RD plane is drawn (from the rows alone: it re-renders a
    committed ``table.json``). ``prefix`` is put before each file name::

        write_figures(json.loads(Path("table.json").read_text()), out, prefix="mnist_sweep_")
    """
    from pyrovae import plots

    folder = Path(folder)
    points = [
        {
            "rate": r["rate"],
            "distortion": r["distortion"],
            "series": r["prior"],
            "label": f"β={r['beta']:g}",
        }
        for r in rows
    ]
    paths = [
        plots.plot_rate_distortion(
            points,
            folder / f"{prefix}rate_distortion.png",
            title="rate–distortion plane of the β sweep (test split)",
        )
    ]
    if dataset is None:
        return paths
    for prior in dict.fromkeys(r["prior"] for r in rows):
        series = [r for r in rows if r["prior"] == prior]
        paths.extend(_image_rows(series, folder, dataset, prior, prefix))
    return paths


def _image_rows(rows, folder: Path, dataset, prior: str, prefix: str = "") -> list[Path]:
    """Per marginal: test images and their reconstructions by β, and prior samples by β
    (the same noise for every β), one labelled row each."""
    import pyro

    from pyrovae import plots
    from pyrovae.report import display_range
    from pyrovae.run import load_run

    shape = dataset.shape
    vmin, vmax = display_range(dataset)
    idx = torch.linspace(0, dataset.test.shape[0] - 1, NUM_IMAGES).long()
    x = dataset.test[idx]
    recons, samples = [x], []
    for r in rows:
        _, model, guide, _ = load_run(r["run"])
        recons.append(model.decode(guide.posterior(x).mean).clamp(vmin, vmax))
        pyro.set_rng_seed(0)  # the same noise for every β
        samples.append(model.sample(NUM_IMAGES).clamp(vmin, vmax))
    betas = [f"β = {r['beta']:g}" for r in rows]
    return [
        plots.plot_image_grid(
            torch.cat(recons),
            shape,
            folder / f"{prefix}reconstructions-{prior}.png",
            title=f"prior {prior}: test images, then their reconstructions by β",
            vmin=vmin,
            vmax=vmax,
            row_labels=["test data", *betas],
        ),
        plots.plot_image_grid(
            torch.cat(samples),
            shape,
            folder / f"{prefix}samples-{prior}.png",
            title=f"prior {prior}: samples of p(x|z), z ~ m(z), by β",
            vmin=vmin,
            vmax=vmax,
            row_labels=betas,
        ),
    ]


def load_table(out: str | Path) -> list[dict[str, Any]]:
    """The rows of ``out/summary/table.json``."""
    return json.loads((Path(out) / "summary" / "table.json").read_text())
