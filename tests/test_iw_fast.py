"""The default IW evaluation equals the traced reference on the same random numbers.

``iw_log_likelihood`` takes a trace-free path for pyrovae's own pairs (the prior built once,
q(z | x) once per batch, a Bernoulli MLP decoder in reused buffers with
``log_sigmoid_sum``) and chooses its pass sizes from a memory budget. The reference
here is the general path: Pyro's vectorised traces in passes of the same sizes, which
consume the same random numbers. Every registered likelihood and prior is covered.
"""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from heads import every_head
from torch import nn

from pyrovae import registry
from pyrovae.guides import ConstantVariance, DiagonalGaussian
from pyrovae.infer.evaluation import (
    PASS_BYTES,
    PASS_ROWS,
    chunked_log_mean_exp,
    iw_log_likelihood,
    pass_sizes,
)
from pyrovae.infer.importance import log_importance_weights
from pyrovae.models import Bernoulli
from pyrovae.models.likelihoods import log_sigmoid_sum
from pyrovae.models.marginals import MixtureOfGaussians, VampPrior
from pyrovae.models.priors import StandardNormal
from pyrovae.models.vae import VAE

D, DZ, HIDDEN = 70, 3, [16]  # D > 64 and not a multiple of it: whole groups and a tail
#: the brief's tolerance: nats per point
TOL = 1e-3

LIKELIHOODS = every_head(D)
PRIORS = {
    "standard": lambda guide: StandardNormal(DZ),
    "mixture": lambda guide: MixtureOfGaussians(DZ, num_components=4),
    "vamp": lambda guide: VampPrior(DZ, guide, D, num_components=5),
}


def test_every_registered_likelihood_and_prior_is_covered():
    assert set(LIKELIHOODS) == set(registry.LIKELIHOODS.names())
    assert set(PRIORS) == set(registry.PRIORS.names())


def _pair(likelihood="bernoulli", prior="standard", guide_cls=DiagonalGaussian, decoder=None):
    torch.manual_seed(0)
    guide = guide_cls(D, DZ, hidden=HIDDEN)
    model = VAE(
        D,
        DZ,
        hidden=HIDDEN,
        likelihood=LIKELIHOODS[likelihood](),
        prior=PRIORS[prior](guide),
        decoder=decoder,
    )
    return model, guide


def _data(n=6, seed=1):
    return torch.bernoulli(torch.full((n, D), 0.3), generator=torch.Generator().manual_seed(seed))


def _reference(model, guide, x, k, chunk, batch):
    """The general path: Pyro's vectorised traces, one call per pass."""

    def traced(xb, kk):
        return log_importance_weights(model, guide, xb, num_samples=kk)[0]

    pyro.set_rng_seed(5)
    return chunked_log_mean_exp(traced, x, k, chunk, batch)


def _fast(model, guide, x, k, chunk=None, batch=None):
    pyro.set_rng_seed(5)
    return iw_log_likelihood(model, guide, x, k, chunk_size=chunk, batch_size=batch)


def _assert_close(fast, ref):
    assert fast.shape == ref.shape and torch.isfinite(fast).all()
    assert (fast - ref).abs().max().item() <= TOL


def _frozen(model):
    """BAGGINS scored with a training-set σ² (as evaluation does): an ordinary Gaussian."""
    model.likelihood.frozen_variance.fill_(0.3)
    return model.eval()


@pytest.mark.parametrize("prior", sorted(PRIORS))
@pytest.mark.parametrize("likelihood", [*sorted(LIKELIHOODS), "baggins-frozen"])
def test_fast_evaluation_equals_the_traced_reference(likelihood, prior):
    frozen = likelihood == "baggins-frozen"
    model, guide = _pair("baggins" if frozen else likelihood, prior)
    if frozen:
        model = _frozen(model)
    x = _data()
    # one point a pass (a Bernoulli MLP folds the signs into its last layer) and several;
    # BAGGINS's σ² is an aggregate over the points of a pass until it is frozen
    sizes = [(6, 3)] if likelihood == "baggins" else [(13, 1), (6, 3)]
    for chunk, batch in sizes:
        ref = _reference(model, guide, x, 40, chunk, batch)
        _assert_close(_fast(model, guide, x, 40, chunk, batch), ref)


def test_default_passes_of_a_batch_aggregate_hold_two_points():
    """BAGGINS before freezing scores points by their pass's σ²: default passes hold two
    points, and a last lone point joins the batch before it."""
    model, guide = _pair("baggins")
    x = _data(7)
    chunk, batch = pass_sizes(5000, num_points=7, point_bytes=D * 4, min_batch=2)
    assert batch == 2 and chunk * batch * D * 4 <= PASS_BYTES

    def traced(xb, k):
        return log_importance_weights(model, guide, xb, num_samples=k)[0]

    pyro.set_rng_seed(5)  # batches of 2, 2 and 3 points
    ref = torch.cat(
        [
            chunked_log_mean_exp(traced, x[:4], 5000, chunk, batch),
            chunked_log_mean_exp(traced, x[4:], 5000, chunk, 3),
        ]
    )
    _assert_close(_fast(model, guide, x, 5000), ref)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian-fixed"])
def test_default_sizes_equal_the_reference_at_those_sizes(likelihood):
    """Without sizes the evaluation takes pass_sizes' passes (the same random numbers as the
    reference run at them would differ under any other split)."""
    model, guide = _pair(likelihood)
    x = _data(5)
    chunk, batch = pass_sizes(9000, num_points=5, point_bytes=D * 4)
    assert batch == 1 and chunk < 9000  # several passes of one point
    _assert_close(_fast(model, guide, x, 9000), _reference(model, guide, x, 9000, chunk, batch))


def test_constant_guide_and_tanh_decoder():
    torch.manual_seed(0)
    guide = ConstantVariance(D, DZ, hidden=HIDDEN, learn_scale="vector")
    model = VAE(D, DZ, hidden=[16, 12], activation="tanh", likelihood=Bernoulli(D))
    x = _data()
    _assert_close(_fast(model, guide, x, 30, 10, 2), _reference(model, guide, x, 30, 10, 2))


class _Decoder(nn.Module):
    """Not a plain MLP: the Bernoulli head's generic binary path."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(DZ, 16), nn.Softplus(), nn.Linear(16, D))

    def forward(self, z):
        return self.net(z)


@pytest.mark.parametrize(
    "decoder",
    [
        _Decoder(),
        nn.Sequential(nn.Linear(DZ, 16), nn.Softplus(), nn.Linear(16, D)),  # no in-place form
        nn.Sequential(nn.Linear(DZ, D)),  # one layer
    ],
)
def test_other_decoders_equal_the_reference(decoder):
    model, guide = _pair(decoder=decoder)
    x = _data()
    _assert_close(_fast(model, guide, x, 30, 10, 2), _reference(model, guide, x, 30, 10, 2))


def test_grey_data_falls_back_to_the_heads_log_prob():
    """A relaxed Bernoulli scores grey values by its own formula, which log_sigmoid_sum
    does not compute: the evaluation must not use it there."""
    torch.manual_seed(0)
    guide = DiagonalGaussian(D, DZ, hidden=HIDDEN)
    model = VAE(D, DZ, hidden=HIDDEN, likelihood=Bernoulli(D, strict=False))
    x = torch.rand(6, D, generator=torch.Generator().manual_seed(2))
    _assert_close(_fast(model, guide, x, 30, 10, 1), _reference(model, guide, x, 30, 10, 1))


def test_evaluation_leaves_the_parameters_alone():
    """The in-place passes write into their own buffers, never into the weights."""
    model, guide = _pair(prior="vamp")
    before = {k: v.clone() for m in (model, guide) for k, v in m.state_dict().items()}
    _fast(model, guide, _data(), 50, 25, 1)
    _fast(model, guide, _data(), 50, 10, 3)
    after = {k: v for m in (model, guide) for k, v in m.state_dict().items()}
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_bernoulli_fast_form_matches_log_prob_at_mnist_size():
    """float32 logits of a fitted decoder's size (±20, some ±100) at D = 784: within the
    tolerance of the float64 value, as BCE-with-logits in float32 is."""
    gen = torch.Generator().manual_seed(0)
    head = Bernoulli(784)
    h = torch.randn(300, 4, 784, generator=gen) * 8
    h[:, :, :10] = 100.0 * torch.sign(torch.randn(300, 4, 10, generator=gen))
    x = torch.bernoulli(torch.full((4, 784), 0.2), generator=gen)
    exact = head.log_prob(h.double(), x.double())
    assert (head.binary_log_prob(h, x).double() - exact).abs().max() <= TOL
    assert (head.log_prob(h, x).double() - exact).abs().max() <= TOL
    scratch = torch.empty_like(h)
    overwritten = h.clone()
    assert (head.binary_log_prob(overwritten, x, scratch).double() - exact).abs().max() <= TOL


@pytest.mark.parametrize("d", [1, 5, 64, 130])
def test_log_sigmoid_sum_is_the_sum_of_log_sigmoids(d):
    y = torch.randn(50, d, dtype=torch.float64) * 10
    expected = torch.nn.functional.logsigmoid(y).sum(-1)
    torch.testing.assert_close(log_sigmoid_sum(y.clone()), expected, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize(
    "num_samples, num_points, dim, itemsize",
    [
        (5000, 10_000, 784, 4),
        (1000, 3, 784, 4),
        (7, 500, 784, 8),
        (200, 40, 3, 4),
        (1, 1, 10**6, 4),
    ],
)
def test_default_pass_sizes_respect_the_memory_budget(num_samples, num_points, dim, itemsize):
    chunk, batch = pass_sizes(num_samples, num_points=num_points, point_bytes=dim * itemsize)
    assert 1 <= chunk <= num_samples and 1 <= batch <= num_points
    rows = chunk * batch
    # within the budget (one row at least: a single point larger than it still runs)
    assert rows <= PASS_ROWS and (rows == 1 or rows * dim * itemsize <= PASS_BYTES)
    # and not needlessly small: the samples split into equal chunks, the fewest passes
    budget = max(1, min(PASS_ROWS, PASS_BYTES // (dim * itemsize)))
    assert math.ceil(num_samples / chunk) == math.ceil(num_samples / min(num_samples, budget))


def test_default_passes_are_the_ones_the_evaluation_makes():
    calls = []

    def log_weights(xb, k):
        calls.append((k, xb.shape[0]))
        return torch.zeros(k, xb.shape[0])

    x = torch.zeros(300, 784)
    chunked_log_mean_exp(log_weights, x, 5000)
    chunk, batch = pass_sizes(5000, num_points=300, point_bytes=784 * 4)
    assert max(k for k, _ in calls) == chunk and max(n for _, n in calls) == batch
    assert all(k * n * 784 * 4 <= PASS_BYTES for k, n in calls)
    assert sum(k * n for k, n in calls) == 5000 * 300


def test_a_wide_head_gets_passes_within_the_budget_of_the_decoder_output():
    """The budget bounds the decoder's output (here 2D numbers a row: means and
    log-variances), not only the data."""
    model, guide = _pair("gaussian-learned")
    rows = []
    model.decoder.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[:-1]))
    x = _data(3)
    estimate = _fast(model, guide, x, 9000)
    width = model.likelihood.out_features
    assert width == 2 * D and rows
    assert all(math.prod(r) * width * 4 <= PASS_BYTES for r in rows)
    assert max(math.prod(r) for r in rows) > PASS_BYTES // (4 * width) // 2  # not needlessly small
    chunk = max(r[0] for r in rows)
    _assert_close(estimate, _reference(model, guide, x, 9000, chunk, 1))
