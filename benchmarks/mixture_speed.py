"""Speed of the learned marginals' density: DiagonalNormalMixture vs MixtureSameFamily.

The VampPrior of Tomczak & Welling (K = 500 pseudo-inputs, 40 latent
dimensions) scores every sampled z under 500 diagonal Gaussians.
``MixtureSameFamily`` broadcasts z against all of them, a (N, K, D) tensor;
:class:`pyrovae.distributions.DiagonalNormalMixture` gets the same numbers from
two matrix products (in float64). Measured one after the other in one process:

* ``log_prob``: forward and backward of ``m.log_prob(z)`` for a training batch
  (100 z's) and one pass of the headline evaluation (5000 z's, no gradient);
* ``train_step``: one ELBO step (forward, backward, Adam) of the VampPrior VAE
  on the pythae network 784-400-40, against the standard-normal prior's step
  (the floor: encoding the 500 pseudo-inputs is the VampPrior's own cost).

The JSON holds medians of ``--repeats`` timings, the ratios, and the largest
difference between the two densities.

    python benchmarks/mixture_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from _report import write_report

from pyrovae.build import build_model
from pyrovae.config import RunConfig
from pyrovae.data import load_dataset
from pyrovae.infer.fast_elbo import FastELBO


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _reference(m: dist.MixtureSameFamily) -> dist.MixtureSameFamily:
    """The same mixture as plain ``MixtureSameFamily``."""
    return dist.MixtureSameFamily(m.mixture_distribution, m.component_distribution)


def _log_prob_step(m, z: torch.Tensor, grad: bool):
    def step():
        if grad:
            zz = z.detach().requires_grad_()
            m.log_prob(zz).sum().backward()
        else:
            with torch.no_grad():
                m.log_prob(z)

    return step


def _train_step(prior: str, x: torch.Tensor, components: int, plain: bool = False):
    config = RunConfig(
        hidden=[400], latent_dim=40, activation="relu", prior=prior, prior_components=components
    )
    config = config.replace(likelihood="bernoulli")
    pyro.set_rng_seed(0)
    model, guide = build_model(config, x.shape[1])
    if plain:  # the VampPrior's mixture as plain MixtureSameFamily
        fast_forward = model.prior.forward
        model.prior.forward = lambda: _reference(fast_forward())
    params = [*model.parameters(), *guide.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    loss = FastELBO("meanfield")

    def step():
        optimizer.zero_grad()
        loss.fast_loss(model, guide, x, 50_000).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--components", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mixture_speed.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("mnist-binarized", data_dir=args.data_dir)
    x = data.train[:100]
    pyro.set_rng_seed(0)
    config = RunConfig(hidden=[400], latent_dim=40, prior="vamp", prior_components=args.components)
    config = config.replace(likelihood="bernoulli")
    model, guide = build_model(config, x.shape[1])
    with torch.no_grad():
        fast = model.prior()
    plain = _reference(fast)
    z_train = guide.posterior(x).sample().detach()
    z_eval = guide.posterior(data.test[:50]).sample((100,)).detach().reshape(-1, 40)
    cases = {
        "log_prob_train_batch": (z_train, True),
        "log_prob_eval_pass": (z_eval, False),
    }
    seconds: dict[str, dict[str, float]] = {}
    for name, (z, grad) in cases.items():
        seconds[name] = {
            "DiagonalNormalMixture": _median_seconds(_log_prob_step(fast, z, grad), args.repeats),
            "MixtureSameFamily": _median_seconds(_log_prob_step(plain, z, grad), args.repeats),
        }
    seconds["train_step"] = {
        "DiagonalNormalMixture": _median_seconds(
            _train_step("vamp", x, args.components), args.repeats
        ),
        "MixtureSameFamily": _median_seconds(
            _train_step("vamp", x, args.components, plain=True), args.repeats
        ),
        "standard prior": _median_seconds(_train_step("standard", x, 1), args.repeats),
    }
    with torch.no_grad():
        difference = (fast.log_prob(z_eval) - plain.log_prob(z_eval)).abs().max().item()
    report = {
        "benchmark": "mixture_speed",
        "prior": f"VampPrior, K = {args.components}, latent 40, network 784-400-40",
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "median_seconds": seconds,
        "speedup": {
            name: row["MixtureSameFamily"] / row["DiagonalNormalMixture"]
            for name, row in seconds.items()
        },
        "vamp_step_over_standard_step": seconds["train_step"]["DiagonalNormalMixture"]
        / seconds["train_step"]["standard prior"],
        "max_abs_difference_nats": difference,
    }
    write_report(report, args.out)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
