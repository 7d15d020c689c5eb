"""Roofline: achieved FLOP rates of training and IW evaluation against this machine's sgemm peak.

For every network the library has — the MLP 784-400-40 (the pythae VAE), the conv
encoder/decoder and the conv + PixelCNN decoder (the CPU-budget rows of
``nll_binarized_mnist.py``, settings ``CONV``) — with a diagonal guide, Bernoulli
likelihood and N(0, I) prior, it measures in one process:

* the **sgemm peak**: ``torch.mm`` into a preallocated output at the GEMM shapes the
  networks run (their linear layers as recorded in a training step and an IW pass, and
  their convolutions as the equivalent im2col GEMM: the largest, holding 90% of each
  workload's FLOPs) and at a large square one; the peak is the largest of the per-shape
  medians;
* a **training step** (forward, backward and pyrovae's fused Adam; the ``meanfield``
  objective, L^B, at batch ``--train-batch``);
* an **IW evaluation pass**: ``iw_log_likelihood(model, guide, x, K)`` with its default
  pass sizes, as the README calls it.

Rounds interleave all of them (every shape and every workload once a round, ``--rounds``
times, the order rotated from round to round: a measurement taken right after seconds of
dense GEMMs ran up to 15% slower here), so that other jobs on the machine slow the peak
and the workloads alike; medians are reported, with ``os.getloadavg()`` before and after.
Every timing is taken in wall-clock and in process-CPU seconds; on a busy machine the
CPU-time rates are the steadier ones (time slicing stretches a long measurement's wall
time more than a short one's).

**FLOP counts** (``flop_convention`` in the JSON): a multiply-add of a matrix product or
convolution counts 2 FLOPs (:class:`torch.utils.flop_counter.FlopCounterMode`);
elementwise work (activations, log-densities, sampling, the optimiser) counts nothing.
A training step counts 3 × its forward FLOPs (backward ≈ 2 × forward); the FLOPs
FlopCounterMode sees in forward + backward are reported beside it. An IW pass counts the
model's work, ``N · encoder(1 point) + N · K · (decoder + likelihood + prior)(1 sample)``,
each term counted by FlopCounterMode; the MLP's is checked against the closed form
``N · 2(784·400 + 400·80) + N · K · 2(40·400 + 400·784)``. A path that recomputes work
(e.g. the encoder once per chunk) gets no credit for it: the FLOPs it executed are
reported as ``flops_executed``.

    python benchmarks/roofline.py --out benchmarks/results/roofline.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from _report import write_report
from nll_binarized_mnist import CONV, PYTHAE
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

import pyrovae
from pyrovae.build import build_model
from pyrovae.config import RunConfig
from pyrovae.data import load_dataset
from pyrovae.infer.evaluation import iw_log_likelihood
from pyrovae.infer.objectives import make_objective
from pyrovae.trainer import make_optimizer

#: name -> (RunConfig overrides, what it is)
NETWORKS = {
    "mlp": (
        {k: PYTHAE[k] for k in ("hidden", "latent_dim", "activation")},
        "MLP 784-400-40, ReLU (the pythae VAE)",
    ),
    "conv": (
        {**{k: v for k, v in CONV.items() if k != "objective"}, "decoder": "conv"},
        "conv encoder 32-64 (kernel 4) + MLP 256, latent 32; the mirrored conv decoder",
    ),
    "pixelcnn": (
        {**{k: v for k, v in CONV.items() if k != "objective"}, "decoder": "pixelcnn"},
        "the conv encoder; conv decoder to 8 planes + gated PixelCNN 3 layers x 16 channels",
    ),
}
#: the square GEMM of the peak measurement
SQUARE = 2048
#: rows of a measured GEMM shape are capped here (the rate has saturated long before)
MAX_ROWS = 8192
#: each timed GEMM repeats until it has run this long: as long as a workload's timing,
#: so that a busy machine's scheduler interrupts both alike
MIN_GEMM_SECONDS = 0.2
#: the shapes of each workload measured: the largest by FLOPs, until they hold this share
SHAPE_SHARE = 0.9
#: and at most this many
MAX_SHAPES = 6


class GemmShapes(TorchFunctionMode):
    """Record ``(M, K, N)`` of every linear layer and matrix product, and the im2col
    GEMM of every convolution, called inside the mode (forward only)."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, int, int]] = []
        #: the matrix products' shapes alone (no convolutions)
        self.products: list[tuple[int, int, int]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self._record(func, args, out)
        return out

    def _record(self, func, args, out) -> None:
        if func is F.linear:
            x, w = args[0], args[1]
            self.products.append((x.numel() // x.shape[-1], w.shape[1], w.shape[0]))
            self.shapes.append(self.products[-1])
        elif func in (torch.mm, torch.addmm, torch.matmul, torch.Tensor.__matmul__):
            a, b = (args[1], args[2]) if func is torch.addmm else (args[0], args[1])
            if a.dim() >= 2 and b.dim() == 2:
                self.products.append((a.numel() // a.shape[-1], a.shape[-1], b.shape[-1]))
                self.shapes.append(self.products[-1])
        elif func is F.conv2d:
            x, w = args[0], args[1]
            groups = args[6] if len(args) > 6 else 1
            rows = out.shape[0] * out.shape[2] * out.shape[3]
            self.shapes.append((rows, w.shape[1] * w.shape[2] * w.shape[3], w.shape[0] // groups))
        elif func is F.conv_transpose2d:
            x, w = args[0], args[1]  # weight (C_in, C_out, kh, kw): a GEMM per input pixel
            rows = x.shape[0] * x.shape[2] * x.shape[3]
            self.shapes.append((rows, w.shape[0], w.shape[1] * w.shape[2] * w.shape[3]))

    def main_shapes(self) -> list[tuple[int, int, int]]:
        """The distinct shapes holding :data:`SHAPE_SHARE` of the FLOPs, largest first."""
        flops: dict[tuple[int, int, int], int] = {}
        for shape in self.shapes:
            flops[shape] = flops.get(shape, 0) + gemm_flops(shape)
        total, chosen, held = sum(flops.values()), [], 0
        for shape in sorted(flops, key=flops.get, reverse=True)[:MAX_SHAPES]:
            if held >= SHAPE_SHARE * total:
                break
            chosen.append(shape)
            held += flops[shape]
        return chosen


class Timings:
    """Wall-clock and process-CPU seconds of repeated measurements."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def run(self, fn, per: int = 1) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        self.wall.append((time.perf_counter() - wall) / per)
        self.cpu.append((time.process_time() - cpu) / per)

    def median(self, clock: str) -> float:
        return statistics.median(getattr(self, clock))

    def as_dict(self) -> dict:
        return {
            "wall": self.wall,
            "cpu": self.cpu,
            "median_wall": self.median("wall"),
            "median_cpu": self.median("cpu"),
        }


def flops_of(fn) -> int:
    """FLOPs (2 per multiply-add) of the matrix products and convolutions ``fn()`` runs."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def capped(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The shape timed for ``shape``: rows capped at :data:`MAX_ROWS`."""
    m, k, n = shape
    return (min(m, MAX_ROWS), k, n)


def gemm_flops(shape: tuple[int, int, int]) -> int:
    m, k, n = shape
    return 2 * m * k * n


class Gemm:
    """A timed ``torch.mm`` of one shape, into a preallocated output."""

    def __init__(self, shape: tuple[int, int, int]):
        self.shape = capped(shape)
        m, k, n = self.shape
        gen = torch.Generator().manual_seed(0)
        self.a = torch.randn(self.shape[0], k, generator=gen)
        self.b = torch.randn(k, n, generator=gen)
        self.out = torch.empty(self.shape[0], n)
        self.repeats = 1
        start = time.perf_counter()
        self.run()  # warm up
        once = time.perf_counter() - start
        self.repeats = max(1, math.ceil(MIN_GEMM_SECONDS / max(once, 1e-6)))
        self.timings = Timings()

    def run(self) -> None:
        for _ in range(self.repeats):
            torch.mm(self.a, self.b, out=self.out)

    def time(self) -> None:
        self.timings.run(self.run, per=self.repeats)

    def rate(self, clock: str) -> float:
        return gemm_flops(self.shape) / self.timings.median(clock)


class Workload:
    """One network: a training step and an IW pass, their FLOP counts and their timings."""

    def __init__(self, name: str, data, args):
        overrides, self.description = NETWORKS[name]
        self.name = name
        config = RunConfig(
            dataset="mnist-binarized", likelihood="bernoulli", seed=args.seed, **overrides
        )
        self.config = {k: config[k] for k in overrides}
        pyro.set_rng_seed(args.seed)
        self.model, self.guide = build_model(config, data.shape)
        self.loss_fn = make_objective("meanfield")(self.model, self.guide)
        self.optimizer = make_optimizer(torch.optim.Adam, list(self.loss_fn.parameters()), lr=1e-3)
        self.batch = data.train[: args.train_batch]
        self.num_data = data.train.shape[0]
        self.train_steps = getattr(args, f"{name}_train_steps")
        points, self.samples = getattr(args, f"{name}_iw")
        stride = max(1, data.test.shape[0] // points)
        self.x = data.test[::stride][:points]  # spread: the test split is sorted by class
        self.train_timings, self.iw_timings = Timings(), Timings()
        self.train_shapes, self.iw_shapes = GemmShapes(), GemmShapes()
        with self.train_shapes:
            self.train_step()
        with self.iw_shapes:
            self.iw_pass()
        self._count_flops()

    def train_step(self) -> None:
        loss = self.loss_fn(self.batch, num_data=self.num_data)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def iw_pass(self) -> torch.Tensor:
        return iw_log_likelihood(self.model, self.guide, self.x, self.samples)

    @torch.no_grad()
    def _per_sample_flops(self) -> tuple[int, int]:
        """FLOPs of the encoder on one point, and of decoder + likelihood + prior on one z."""
        x1 = self.x[:1]
        encoder = flops_of(lambda: self.guide.posterior(x1))
        z = self.guide.posterior(x1).sample()
        decoder = flops_of(
            lambda: (
                self.model.likelihood.log_prob(self.model.decoder(z), x1)
                + self.model.prior().log_prob(z)
            )
        )
        prior_itself = flops_of(self.model.prior)  # a VampPrior's encoder pass: hoistable
        return encoder, decoder - prior_itself

    def _count_flops(self) -> None:
        forward = flops_of(lambda: self.loss_fn(self.batch, num_data=self.num_data))

        def forward_backward():
            self.loss_fn(self.batch, num_data=self.num_data).backward()

        self.train_flops = {
            "forward": forward,
            "step_3x_forward": 3 * forward,
            "forward_backward_counted": flops_of(forward_backward),
        }
        self.optimizer.zero_grad(set_to_none=True)
        encoder, decoder = self._per_sample_flops()
        n, k = self.x.shape[0], self.samples
        self.iw_flops = {
            "encoder_per_point": encoder,
            "decoder_per_sample": decoder,
            "model": n * encoder + n * k * decoder,
            "executed": flops_of(self.iw_pass),
        }
        if self.name == "mlp":  # the closed form of 784-400-40 (one particle in training)
            enc, dec = 2 * (784 * 400 + 400 * 80), 2 * (40 * 400 + 400 * 784)
            self.iw_flops["closed_form"] = n * enc + n * k * dec
            self.iw_flops["closed_form_matches"] = (
                self.iw_flops["closed_form"] == (self.iw_flops["model"])
            )
            closed = self.batch.shape[0] * (enc + dec)
            self.train_flops["forward_closed_form"] = closed
            self.train_flops["forward_closed_form_matches"] = closed == forward

    def time_training(self) -> None:
        def steps():
            for _ in range(self.train_steps):
                self.train_step()

        self.train_timings.run(steps, per=self.train_steps)

    def time_iw(self) -> None:
        self.iw_timings.run(self.iw_pass)

    @property
    def shapes(self) -> list[tuple[int, int, int]]:
        return self.train_shapes.main_shapes() + self.iw_shapes.main_shapes()

    def report(self, peak: dict, rates: dict) -> dict:
        def gemm_time(shapes: GemmShapes, clock: str) -> float:
            """The time the recorded GEMMs take at their measured rates (the few unmeasured
            ones, under 10% of the FLOPs, at the peak)."""
            return sum(
                gemm_flops(s) / rates[clock].get(capped(s), peak[clock]) for s in shapes.shapes
            )

        def rates_of(timings: Timings, flops: int, shapes: GemmShapes, scale: int) -> dict:
            out = {}
            for clock in ("wall", "cpu"):
                seconds = timings.median(clock)
                suffix = "" if clock == "wall" else "_cpu"
                out[f"gflops{suffix}"] = flops / seconds / 1e9
                out[f"fraction_of_peak{suffix}"] = flops / seconds / peak[clock]
                out[f"fraction_of_gemm_time{suffix}"] = scale * gemm_time(shapes, clock) / seconds
            return out

        n, k = self.x.shape[0], self.samples
        latent = self.model.latent_dim
        rows = max((m for m, kk, _ in self.iw_shapes.products if kk == latent), default=None)
        return {
            "network": self.name,
            "description": self.description,
            "config": self.config,
            "training": {
                "batch": self.batch.shape[0],
                "objective": "meanfield (L^B), fused Adam",
                "flops": self.train_flops,
                "seconds_per_step": self.train_timings.as_dict(),
                **rates_of(
                    self.train_timings, self.train_flops["step_3x_forward"], self.train_shapes, 3
                ),
            },
            "iw": {
                "points": n,
                "samples": k,
                "call": "iw_log_likelihood(model, guide, x, num_samples) with default pass sizes",
                "largest_rows_per_decoder_call": rows,
                "flops": self.iw_flops,
                "seconds": self.iw_timings.as_dict(),
                **rates_of(self.iw_timings, self.iw_flops["model"], self.iw_shapes, 1),
                "point_samples_per_second": n * k / self.iw_timings.median("wall"),
                "point_samples_per_cpu_second": n * k / self.iw_timings.median("cpu"),
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--train-batch", type=int, default=100)
    parser.add_argument("--mlp-train-steps", type=int, default=20)
    parser.add_argument("--conv-train-steps", type=int, default=5)
    parser.add_argument("--pixelcnn-train-steps", type=int, default=2)
    parser.add_argument("--mlp-iw", type=int, nargs=2, default=(50, 5000), metavar=("N", "K"))
    parser.add_argument("--conv-iw", type=int, nargs=2, default=(4, 1000), metavar=("N", "K"))
    parser.add_argument("--pixelcnn-iw", type=int, nargs=2, default=(2, 200), metavar=("N", "K"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/roofline.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    data = load_dataset("mnist-binarized", data_dir=args.data_dir)
    workloads = [Workload(name, data, args) for name in args.networks]
    shapes = {(SQUARE, SQUARE, SQUARE)}
    for w in workloads:
        shapes.update(w.shapes)
    gemms = {s: Gemm(s) for s in sorted({capped(s) for s in shapes})}
    # every measurement once a round, the order rotated from round to round: what runs
    # just before a measurement (e.g. seconds of dense GEMMs) changes its speed
    tasks = [g.time for g in gemms.values()]
    tasks += [t for w in workloads for t in (w.time_training, w.time_iw)]
    step = math.ceil(len(tasks) / args.rounds)
    for r in range(args.rounds):
        shift = (r * step) % len(tasks)
        for task in tasks[shift:] + tasks[:shift]:
            task()
    rates = {clock: {s: g.rate(clock) for s, g in gemms.items()} for clock in ("wall", "cpu")}
    peak_shape = {clock: max(r, key=r.get) for clock, r in rates.items()}
    peak = {clock: rates[clock][peak_shape[clock]] for clock in rates}
    results = [w.report(peak, rates) for w in workloads]
    report = {
        "benchmark": "roofline",
        "pyrovae_package": str(Path(pyrovae.__file__).parent),
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "flop_convention": (
            "2 FLOPs per multiply-add of matrix products and convolutions "
            "(torch.utils.flop_counter.FlopCounterMode); elementwise ops, reductions, "
            "sampling and the optimiser count nothing. Training step = 3 x forward FLOPs "
            "(backward = 2 x forward; forward_backward_counted is what FlopCounterMode saw). "
            "IW pass = N x encoder(1 point) + N x K x (decoder + likelihood + prior)(1 sample); "
            "MLP closed form N*2(784*400 + 400*80) + N*K*2(40*400 + 400*784). "
            "fraction_of_peak = achieved / the largest median sgemm rate below (wall clock; "
            "*_cpu: both in process-CPU seconds, which a busy machine's time slicing does not "
            "inflate); fraction_of_gemm_time = the time the recorded forward GEMMs (x3 for "
            "training; convolutions as im2col GEMMs) take at their own measured rates / the "
            "time taken"
        ),
        "peak": {
            "gflops": peak["wall"] / 1e9,
            "shape_mkn": list(gemms[peak_shape["wall"]].shape),
            "gflops_cpu": peak["cpu"] / 1e9,
            "shape_mkn_cpu": list(gemms[peak_shape["cpu"]].shape),
            "how": "torch.mm(A[M,K], B[K,N], out=C) repeated for >= "
            f"{MIN_GEMM_SECONDS} s, median over rounds; rows capped at {MAX_ROWS}; the shapes "
            f"holding {SHAPE_SHARE:.0%} of each workload's GEMM FLOPs (at most {MAX_SHAPES}) "
            f"and {SQUARE}^3",
            "shapes": [
                {
                    "mkn": list(g.shape),
                    "gflops": rates["wall"][s] / 1e9,
                    "gflops_cpu": rates["cpu"][s] / 1e9,
                    "seconds": g.timings.as_dict(),
                }
                for s, g in gemms.items()
            ],
        },
        "networks": results,
    }
    write_report(report, args.out)
    for row in results:
        t, i = row["training"], row["iw"]
        print(
            f"{row['network']:9s} train {t['gflops']:6.1f} GFLOP/s ({t['fraction_of_peak']:.0%}; "
            f"cpu {t['fraction_of_peak_cpu']:.0%})   IW {i['gflops']:6.1f} GFLOP/s "
            f"({i['fraction_of_peak']:.0%}; cpu {i['fraction_of_peak_cpu']:.0%})"
        )
    for clock in ("wall", "cpu"):
        print(f"peak ({clock}) {peak[clock] / 1e9:.1f} GFLOP/s at {peak_shape[clock]}")
    print(f"load {os.getloadavg()}")
    print(json.dumps({"out": str(args.out)}))


if __name__ == "__main__":
    main()
