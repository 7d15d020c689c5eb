"""The rate–distortion plane of Alemi et al.'s discrete toy model (exact, ~30 s on a CPU).

Sweeps β of ``D + βR`` for two model families on the same data (H known exactly):

* a restricted decoder (a discretised Gaussian per latent value, ``K_z = 2``),
  whose frontier is a curve above the line ``D + R = H`` that β traces;
* the paper's table decoder, which can reach the line: β < 1 lands near
  ``R = H`` (autoencoder), β > 1 at ``R = 0`` (autodecoder), and at β = 1 every
  point of the line has the same ELBO, ``−H`` — here the ELBO fit from a
  near-uniform start is the autodecoder, while a fixed target rate
  (``D + |R − 0.5|``) keeps 0.5 nats in the latent at the same ELBO.

Writes ``OUT/toy_rate_distortion.png`` and ``OUT/toy_rate_distortion.json``, ``OUT`` being
``--out``, by default ``runs/toy-rd`` (git-ignored); ``--quick`` fits 3 β values for 100 steps
(≈ 2 s, for tests)::

    python examples/rate_distortion_sweep.py
    python examples/rate_distortion_sweep.py --beta 0.1:2:0.1 --steps 4000

The committed results in ``docs/results/rate_distortion/`` are rewritten only when named::

    python examples/rate_distortion_sweep.py --out docs/results/rate_distortion

For binarised MNIST, the same plane comes from ``pyrovae sweep`` (see ``pyrovae sweep --help``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pyrovae import plots
from pyrovae.models.toy import ToyModel, fit_toy, toy_data, toy_sweep
from pyrovae.run import write_json
from pyrovae.sweep import parse_betas

OUT_HELP = "output folder (default runs/toy-rd; the committed one: docs/results/rate_distortion)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/toy-rd"), help=OUT_HELP)
    parser.add_argument("--quick", action="store_true", help="β ∈ {0.5, 1, 2}, 100 steps")
    parser.add_argument(
        "--beta", default=None, help="β values (list or start:stop:step; default 0.2:2:0.2)"
    )
    parser.add_argument("--values", type=int, default=30, help="K, the number of values of x")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps per fit (default 2000)")
    args = parser.parse_args(argv)
    mode = {"beta": "0.5,1,2", "steps": 100} if args.quick else {"beta": "0.2:2:0.2", "steps": 2000}
    for key, value in mode.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    torch.set_num_threads(1)

    data = toy_data(num_values=args.values)
    betas = parse_betas(args.beta)
    fit = {"steps": args.steps, "lr": 0.1}
    series = {
        "gaussian decoder, K_z = 2": toy_sweep(
            betas, data=data, num_latent=2, decoder="gaussian", **fit
        ),
        "table decoder": toy_sweep(betas, data=data, decoder="table", **fit),
    }
    torch.manual_seed(0)
    target = fit_toy(ToyModel(data.p_x), target_rate=0.5, **fit).terms()
    series["table decoder, target rate 0.5"] = [{"beta": None, **target}]

    points = [
        {
            "rate": row["rate"],
            "distortion": row["distortion"],
            "series": name,
            # the table decoder's points pile up in two corners: label the curve only
            "label": f"{row['beta']:g}" if name.startswith("gaussian") else None,
        }
        for name, rows in series.items()
        for row in rows
    ]
    png = plots.plot_rate_distortion(
        points,
        args.out / "toy_rate_distortion.png",
        title=f"toy model (K = {args.values}): labels are β",
        entropy=data.entropy,
    )
    report = {
        "entropy": data.entropy,
        "true_information": data.true_information,
        "noise": data.noise,
        "series": series,
    }
    path = write_json(args.out / "toy_rate_distortion.json", report)
    print(f"H = {data.entropy:.4f} nats; wrote {png} and {path}")
    for name, rows in series.items():
        print(name)
        for row in rows:
            beta = "  –  " if row["beta"] is None else f"{row['beta']:5.2f}"
            print(
                f"  β {beta}  R {row['rate']:.4f}  D {row['distortion']:.4f}  "
                f"I {row['information']:.4f}  ELBO {row['elbo']:.4f}"
            )


if __name__ == "__main__":
    main()
