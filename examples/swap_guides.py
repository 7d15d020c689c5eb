"""Swap the guide q(z|x), keep everything else: one config key, every guide in the registry.

python examples/swap_guides.py [--quick] [--dataset NAME] [--data-dir DIR] [--out DIR] [--seed S]

The JSON and PNGs go to ``--out``, by default ``runs/fyffe/`` (git-ignored); the committed ones in
``docs/results/fyffe/`` are rewritten only when named::

    python examples/swap_guides.py --out docs/results/fyffe
"""

import argparse
import json
from pathlib import Path

import torch

from pyrovae import registry
from pyrovae.config import is_point_posterior
from pyrovae.plots import plot_curves
from pyrovae.provenance import provenance
from pyrovae.train import train

p = argparse.ArgumentParser(description="train one model with each registered guide")
p.add_argument("--quick", action="store_true", help="2 epochs instead of 30")
p.add_argument("--dataset", default="digits", help="digits (embedded), mnist-binarized, frey")
p.add_argument("--data-dir", default=None, help="the data folder (default $PYROVAE_DATA)")
p.add_argument(
    "--out",
    default="runs/fyffe",
    help="folder of the JSON and PNGs (default runs/fyffe; the committed ones: docs/results/fyffe)",
)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=1, help="torch threads; small nets: 1 is fastest")
args = p.parse_args()
torch.set_num_threads(args.threads)

data = {"dataset": args.dataset, "data_dir": args.data_dir, "seed": args.seed}
model = {"latent_dim": 5, "hidden": [200], "epochs": 2 if args.quick else 30}
results = {}
for guide in registry.GUIDES.names():  # "diagonal", "constant", and any you register
    if is_point_posterior(guide):  # a plain auto-encoder, not a VAE (its ELBO is no bound);
        continue  # see examples/studies/vae_vs_autoencoder.py
    # learn_scale="scalar": the constant guide learns its s (guides ignore options they lack);
    # train(config, "runs/NAME") would also write a run folder (checkpoint, metrics, plots)
    run = train({**data, **model, "guide": guide, "learn_scale": "scalar"})
    s = run.summary
    results[guide] = {k: s[k] for k in ("test_elbo", "test_iw_log_likelihood", "parameters")}
    results[guide].update(provenance(script=__file__))  # command, commit, machine
    plot_curves(run.metrics, Path(args.out) / f"swap_guides_{guide}.png", title=f"guide {guide}")
    print(f"{guide:9s} test ELBO {s['test_elbo']:.2f}, log p(x) {s['test_iw_log_likelihood']:.2f}")

Path(args.out, "swap_guides.json").write_text(json.dumps(results, indent=1) + "\n")
