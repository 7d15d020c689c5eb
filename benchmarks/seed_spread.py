"""Seed-to-seed spread of the headline comparisons, at a budget a 2-core CPU runs in about
an hour and a half (one torch thread per job).

Each comparison is rerun with seeds 0, 1, 2 (``--seeds``) by the script that produced it,
each job writing its own JSON under ``--work`` (default ``runs/seed_spread``). A job whose
JSON exists is skipped, so an interrupted run resumes where it stopped. The summary
(``--out``) gives, for every quantity, its value per seed, the mean, the sample standard
deviation over seeds (``sd``) and the standard error of the mean (``se = sd / √n``); for
every comparison the per-seed paired differences (the same seed, data order and test points
on both sides) with their mean, sd and se, and a verdict:

* ``"A > B"`` (or ``"B > A"``) when every seed agrees in sign and |mean| > 2 se;
* ``"tie"`` otherwise: the difference is within the seed-to-seed spread.

The comparisons (higher is better for every quantity: log-likelihoods and ELBOs in nats):

* **priors and objectives** on the pythae network (784-400-40 ReLU, static binarised MNIST,
  all 50 000 training images, constant lr 1e-3 with a Polyak average, 20 epochs), the
  ``benchmarks/nll_binarized_mnist.py`` configurations ``vae-pythae-ema-const``,
  ``vamp-pythae-ema`` and ``iwae10-pythae-ema``; test log-likelihood on 2000 test images spread
  over the class-ordered file, K = 1000, and pythae's protocol (the mean of five 200-sample
  estimates) beside it;
* **L^A vs L^B** (``examples/studies/estimators.py``, its budget: 6 epochs, N_z = 3, 10, 20;
  20 gradient draws instead of 200, since only the bounds are compared here);
* **activations** (``examples/studies/activations.py``, its budget: 40 epochs on 10 000
  images): final test ELBO and seconds per epoch;
* **constant vs diagonal guide** (``examples/constant_vs_learned_variance.py``, its budget):
  test ELBO and IW log-likelihood on MNIST and Frey Face.

    python benchmarks/seed_spread.py --threads 1 --out docs/results/seed_spread.json
    python benchmarks/seed_spread.py --only estimators --seeds 0 1   # a part, fewer seeds
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import write_report  # noqa: E402

NLL_CONFIGS = ("vae-pythae-ema-const", "vamp-pythae-ema", "iwae10-pythae-ema")
NLL_BUDGET = [
    "--epochs", "20", "--select-every", "10", "--test-size", "2000",
    "--iw-samples", "1000", "--rounds-200", "5",
]  # fmt: skip
ACTIVATIONS = ("tanh", "sigmoid", "relu", "softplus")


def jobs(part: str, seed: int, work: Path, threads: int) -> list[tuple[str, list[str], Path]]:
    """(name, argv, JSON it writes) of every job of ``part`` at ``seed``."""
    py = [sys.executable]
    common = ["--threads", str(threads), "--seed", str(seed)]
    if part == "nll":
        return [
            (
                f"nll {config} seed {seed}",
                [
                    *py,
                    "benchmarks/nll_binarized_mnist.py",
                    "--config",
                    config,
                    *NLL_BUDGET,
                    "--runs-dir",
                    str(work / "nll"),
                    *common,
                    "--out",
                    str(work / f"nll-{config}-seed{seed}.json"),
                ],
                work / f"nll-{config}-seed{seed}.json",
            )  # fmt: skip
            for config in NLL_CONFIGS
        ]
    if part in ("estimators", "activations"):
        extra = ["--draws", "20"] if part == "estimators" else []
        out = work / f"{part}-seed{seed}.json"
        argv = [*py, f"examples/studies/{part}.py", *extra, *common,
                "--runs-dir", str(work / "studies"), "--out", str(out)]  # fmt: skip
        return [(f"{part} seed {seed}", argv, out)]
    if part == "guides":
        folder = work / f"guides-seed{seed}"
        argv = [*py, "examples/constant_vs_learned_variance.py", *common, "--out", str(folder)]
        return [(f"guides seed {seed}", argv, folder / "constant_vs_learned_variance.json")]
    raise ValueError(f"unknown part {part!r}")


PARTS = ("nll", "estimators", "activations", "guides")


def stats(values: list[float]) -> dict:
    """Values per seed, their mean, sample sd and the standard error of the mean."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return {"per_seed": values, "mean": mean, "sd": sd, "se": sd / math.sqrt(n), "n": n}


def compare(name_a: str, a: list[float], name_b: str, b: list[float]) -> dict:
    """Paired per-seed differences a − b and the verdict (see the module docstring)."""
    diff = stats([x - y for x, y in zip(a, b, strict=True)])
    agree = all(d > 0 for d in diff["per_seed"]) or all(d < 0 for d in diff["per_seed"])
    clear = diff["n"] > 1 and agree and abs(diff["mean"]) > 2 * diff["se"]
    winner = f"{name_a} > {name_b}" if diff["mean"] > 0 else f"{name_b} > {name_a}"
    verdict = winner if clear else "tie"
    return {"a": name_a, "b": name_b, "difference": diff, "verdict": verdict}


def _load(path: Path):
    return json.loads(path.read_text())


def summarise_nll(work: Path, seeds: list[int]) -> dict:
    per = {c: [_load(work / f"nll-{c}-seed{s}.json")[0] for s in seeds] for c in NLL_CONFIGS}
    quantities = {}
    for config, rows in per.items():
        quantities[config] = {
            "test_log_likelihood_K1000": stats([-r["test_nll"] for r in rows]),
            "test_log_likelihood_200x5": stats([-r["test_nll_200_rounds"] for r in rows]),
            "test_elbo": stats([r["test_elbo"] for r in rows]),
            "test_nll_standard_error_over_points": [r["test_nll_standard_error"] for r in rows],
        }
    ll = {c: quantities[c]["test_log_likelihood_K1000"]["per_seed"] for c in NLL_CONFIGS}
    vae, vamp, iwae = NLL_CONFIGS
    protocol = [
        quantities[c]["test_log_likelihood_K1000"]["per_seed"][i]
        - quantities[c]["test_log_likelihood_200x5"]["per_seed"][i]
        for c in NLL_CONFIGS
        for i in range(len(seeds))
    ]
    return {
        "setting": "static binarised MNIST, 784-400-40 ReLU, batch 100, Adam 1e-3 constant, "
        "Polyak average (decay 0.9995), 20 epochs on all 50 000 training images, the better "
        "validation ELBO of epochs 10 and 20; 2000 test images spread over the test file",
        "quantities": quantities,
        "comparisons": [
            compare(vamp, ll[vamp], vae, ll[vae]),
            compare(iwae, ll[iwae], vae, ll[vae]),
            compare(vamp, ll[vamp], iwae, ll[iwae]),
        ],
        "protocol_gap_K1000_minus_200x5": stats(protocol),
    }


def summarise_estimators(work: Path, seeds: list[int]) -> dict:
    tables = [_load(work / f"estimators-seed{s}.json")["table"] for s in seeds]
    out = {"setting": "examples/studies/estimators.py's budget (6 epochs), 20 gradient draws"}
    for i, row in enumerate(tables[0]):
        nz = row["latent_dim"]
        la = [t[i]["test_elbo_trace"] for t in tables]
        lb = [t[i]["test_elbo_meanfield"] for t in tables]
        out[f"nz{nz}"] = {
            "test_elbo_LA": stats(la),
            "test_elbo_LB": stats(lb),
            "comparison": compare("L^B", lb, "L^A", la),
        }
    return out


def summarise_activations(work: Path, seeds: list[int]) -> dict:
    tables = [{r["activation"]: r for r in _load(work / f"activations-seed{s}.json")["table"]}
              for s in seeds]  # fmt: skip
    final = {a: [t[a]["final_test_elbo"] for t in tables] for a in ACTIVATIONS}
    speed = {a: [t[a]["median_seconds_per_epoch"] for t in tables] for a in ACTIVATIONS}
    order = sorted(ACTIVATIONS, key=lambda a: -stats(final[a])["mean"])
    return {
        "setting": "examples/studies/activations.py's budget (40 epochs, 10 000 images)",
        "final_test_elbo": {a: stats(final[a]) for a in ACTIVATIONS},
        "median_seconds_per_epoch": {a: stats(speed[a]) for a in ACTIVATIONS},
        "order_by_mean": order,
        "comparisons": [
            compare(a, final[a], b, final[b]) for a, b in zip(order, order[1:], strict=False)
        ],
    }


def summarise_guides(work: Path, seeds: list[int]) -> dict:
    reports = [_load(work / f"guides-seed{s}" / "constant_vs_learned_variance.json") for s in seeds]
    out = {"setting": "examples/constant_vs_learned_variance.py's budget"}
    for dataset, rows in reports[0]["tables"].items():
        variants = [r["variant"] for r in rows]

        def values(key: str, variant: str, dataset=dataset) -> list[float]:
            rows = [next(r for r in rep["tables"][dataset] if r["variant"] == variant)
                    for rep in reports]  # fmt: skip
            return [r[key] for r in rows]

        per = {
            key: {v: values(key, v) for v in variants}
            for key in ("test_elbo", "test_iw_log_likelihood")
        }
        out[dataset] = {
            key: {v: stats(values) for v, values in per[key].items()} for key in per
        } | {
            "comparisons": [
                compare(v, per[key][v], "diagonal", per[key]["diagonal"]) | {"quantity": key}
                for key in per
                for v in variants
                if v not in ("diagonal", "constant + BILBO")
            ]
        }
    return out


SUMMARIES = {
    "nll": summarise_nll,
    "estimators": summarise_estimators,
    "activations": summarise_activations,
    "guides": summarise_guides,
}


def _ms(q: dict, digits: int = 2) -> str:
    """``mean ± sd`` of a :func:`stats` entry."""
    return f"{q['mean']:.{digits}f} ± {q['sd']:.{digits}f}".replace("-", "−")


def _diff(c: dict, digits: int = 2) -> str:
    d = c["difference"]
    each = ", ".join(f"{v:+.{digits}f}" for v in d["per_seed"])
    return f"{d['mean']:+.{digits}f} ± {d['sd']:.{digits}f} ({each})".replace("-", "−")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines, then a blank line."""
    lines = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    return lines + [f"| {' | '.join(row)} |" for row in rows] + [""]


def _comparisons(label: str, comparisons: list[dict], quote: str = "") -> list[str]:
    """The table of paired differences (``quote`` wraps the names, e.g. in backticks)."""
    with_quantity = any("quantity" in c for c in comparisons)
    header = [label, *(["quantity"] if with_quantity else []), "difference per seed", "verdict"]
    rows = []
    for c in comparisons:
        names = f"{quote}{c['a']}{quote} − {quote}{c['b']}{quote}"
        quantity = [c["quantity"]] if with_quantity else []
        rows.append([names, *quantity, _diff(c), c["verdict"]])
    return _table(header, rows)


def markdown(summary: dict) -> str:
    """The tables of ``docs/results.md``'s seed-spread section, from a summary."""
    out: list[str] = []
    if "nll" in summary:
        nll = summary["nll"]
        header = ["model", "test log p(x), K = 1000", "mean of 5 × K = 200", "test ELBO"]
        keys = ("test_log_likelihood_K1000", "test_log_likelihood_200x5", "test_elbo")
        rows = [[f"`{name}`", *(_ms(q[k]) for k in keys)] for name, q in nll["quantities"].items()]
        out += _table(header, rows)
        out += _comparisons("comparison (test log p(x), K = 1000)", nll["comparisons"], "`")
    if "estimators" in summary:
        est = {k: q for k, q in summary["estimators"].items() if k.startswith("nz")}
        header = ["N_z", "test ELBO, L^A", "test ELBO, L^B", "L^B − L^A per seed", "verdict"]
        rows = [[k[2:], _ms(q["test_elbo_LA"]), _ms(q["test_elbo_LB"]), _diff(q["comparison"]),
                 q["comparison"]["verdict"]] for k, q in est.items()]  # fmt: skip
        out += _table(header, rows)
    if "activations" in summary:
        act = summary["activations"]
        header = ["activation", "final test ELBO", "s / epoch (median of each run)"]
        rows = [[a, _ms(act["final_test_elbo"][a]), _ms(act["median_seconds_per_epoch"][a])]
                for a in act["order_by_mean"]]  # fmt: skip
        out += _table(header, rows)
        out += _comparisons("comparison (final test ELBO)", act["comparisons"])
    for dataset, g in summary.get("guides", {}).items():
        if not isinstance(g, dict):  # the "setting" line
            continue
        rows = [[v, _ms(g["test_elbo"][v]), _ms(g["test_iw_log_likelihood"][v])]
                for v in g["test_elbo"]]  # fmt: skip
        out += _table([f"{dataset}: guide", "test ELBO", "test IW log p(x)"], rows)
        out += _comparisons(f"{dataset}: comparison", g["comparisons"])
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", choices=PARTS, action="append", help="run these parts only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--work", type=Path, default=Path("runs/seed_spread"))
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/seed_spread/seed_spread.json"),
        help="summary JSON (the committed one: docs/results/seed_spread.json)",
    )
    parser.add_argument(
        "--summarise-only", action="store_true", help="run no job; summarise what exists"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="also print the summary's tables as markdown"
    )
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/seed_spread.py", *(argv or sys.argv[1:])])
    parts = args.only or list(PARTS)
    args.work.mkdir(parents=True, exist_ok=True)
    log = {}
    for seed in args.seeds:  # seed-major: every comparison gets seed 0 first
        for part in parts:
            for name, job, out in jobs(part, seed, args.work, args.threads):
                if out.exists() or args.summarise_only:
                    continue
                print(f"[{time.strftime('%H:%M:%S')}] {name}: {shlex.join(job)}", flush=True)
                start = time.perf_counter()
                done = subprocess.run(job, cwd=ROOT, check=False)
                log[name] = {"seconds": time.perf_counter() - start, "returncode": done.returncode}
                if done.returncode:
                    print(f"{name} failed (exit {done.returncode}); the others go on", flush=True)
    summary, missing = {}, []
    for part in parts:
        wanted = [out for s in args.seeds for _, _, out in jobs(part, s, args.work, args.threads)]
        if all(p.exists() for p in wanted):
            summary[part] = SUMMARIES[part](args.work, args.seeds)
            summary[part]["jobs"] = [
                shlex.join(j[1:]).replace(str(args.work), "runs/seed_spread")
                for s in args.seeds
                for _, j, _ in jobs(part, s, args.work, args.threads)
            ]
        else:
            missing += [str(p) for p in wanted if not p.exists()]
    report = {"command": command, "seeds": args.seeds, "summary": summary, "missing": missing}
    write_report(report, args.out, argv=argv)
    print(f"wrote {args.out}" + (f"; {len(missing)} job outputs missing" if missing else ""))
    if args.markdown:
        print(markdown(summary))


if __name__ == "__main__":
    main()
