"""The gated PixelCNN and the autoregressive likelihood built on it.

Receptive field (see :mod:`pyrovae.nets.pixelcnn`): with ``L`` gated layers after the
first (mask A) layer, kernel ``k`` and ``R = (L + 1)(k // 2)``, the output at pixel
``(i, j)``, every plane, depends on the input at exactly

    {(i, j') : j - R <= j' <= j - 1}  ∪  {(i', j') : i - 1 - R <= i' <= i - 1, |j' - j| <= R}

inside the image, every channel of those pixels: ``R`` pixels to the left in the row,
and ``R + 1`` rows above, ``R`` columns to either side. The vertical stack of layer
``l`` sees ``(l + 1) p`` rows up and ``(l + 1) p`` columns to either side (``p = k//2``);
shifted down one row, it reaches ``R + 1`` rows above; the horizontal stack adds ``p``
columns to the left per layer from ``j - p .. j - 1`` in the first one.
"""

from __future__ import annotations

import itertools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from torch import nn

from pyrovae.distributions.autoregressive import Autoregressive, AutoregressiveImage
from pyrovae.models.gaussian_heads import Baggins, BoundedGaussian, GaussianShared
from pyrovae.models.likelihoods import (
    MSE,
    Bernoulli,
    GaussianFixed,
    GaussianLearned,
    Likelihood,
)
from pyrovae.nets.pixelcnn import GatedPixelCNN

# (C, H, W), kernel, layers: square and not, 1 to 3 channels; the first three have
# a receptive field smaller than the image, so its edges are tested too
CONFIGS = [
    ((1, 7, 7), 3, 1),
    ((3, 7, 5), 3, 2),
    ((1, 7, 5), 5, 1),
    ((2, 9, 8), 3, 3),
    ((3, 5, 7), 5, 4),
]


def _net(shape, kernel_size=3, layers=2, params=1, cond_channels=3, channels=12):
    return GatedPixelCNN(shape, params, cond_channels, channels, layers, kernel_size).double()


def _receptive_field(shape, i: int, j: int, radius: int) -> torch.Tensor:
    """The analytic receptive field of output pixel (i, j), a bool (H, W) mask."""
    _, h, w = shape
    rows = torch.arange(h)[:, None]
    cols = torch.arange(w)[None, :]
    left = (rows == i) & (cols < j) & (cols >= j - radius)
    above = (rows < i) & (rows >= i - 1 - radius) & ((cols - j).abs() <= radius)
    return left | above


@pytest.mark.parametrize("shape,kernel_size,layers", CONFIGS)
def test_output_depends_on_exactly_the_receptive_field(shape, kernel_size, layers):
    """Zero gradient on the pixel itself, later pixels and beyond the field; none zero inside."""
    torch.manual_seed(0)
    net = _net(shape, kernel_size, layers, params=2)
    c, h, w = shape
    radius = (layers + 1) * (kernel_size // 2)
    assert net.receptive_radius == radius
    x = torch.randn(1, c, h, w, dtype=torch.float64, requires_grad=True)
    cond = torch.randn(1, 3, h, w, dtype=torch.float64)
    out = net(x, cond)
    assert out.shape == (1, 2 * c, h, w)
    for i, j in itertools.product(range(h), range(w)):
        (grad,) = torch.autograd.grad(out[0, :, i, j].sum(), x, retain_graph=True)
        seen = grad[0] != 0
        field = _receptive_field(shape, i, j, radius)
        assert torch.equal(seen, field.expand(c, h, w)), (i, j)
        if j > 0:
            assert seen[:, i, j - 1].all()  # left in the same row
        if i > 0 and j + 1 < w:
            assert seen[:, i - 1, j + 1].all()  # above right: no blind spot
        assert not seen[:, i, j:].any() and not seen[:, i + 1 :].any()


@pytest.mark.parametrize("shape,kernel_size,layers", CONFIGS[1:4])
def test_row_and_pixel_passes_equal_the_full_pass(shape, kernel_size, layers):
    """The sampler's shortcuts are exact: the first r rows; the vertical stack row by row
    while x is filled in place; one pixel from a row segment of R + 1 columns (W > R + 1
    in two of these configurations)."""
    torch.manual_seed(1)
    net = _net(shape, kernel_size, layers, params=2)
    c, h, w = shape
    x = torch.randn(2, c, h, w, dtype=torch.float64)
    cond = torch.randn(2, 3, h, w, dtype=torch.float64)
    full = net(x, cond)
    contexts = net.vertical(x, cond)
    for r in range(1, h + 1):
        rows = net(x[:, :, :r], cond[:, :, :r])
        torch.testing.assert_close(rows, full[:, :, :r], rtol=0, atol=1e-12)
    # NaN marks what must not be read: the rows not yet drawn, and pixel (i, j) onwards
    filled = torch.full_like(x, float("nan"))
    for i, row in enumerate(net.vertical_rows(filled, cond)):
        for k, context in enumerate(row):
            torch.testing.assert_close(context, contexts[k][:, :, i : i + 1], rtol=0, atol=1e-12)
        for j in range(w):
            out = net.pixel(filled, row, i, j)
            torch.testing.assert_close(out, full[:, :, i, j], rtol=0, atol=1e-12)
            filled[:, :, i, j] = x[:, :, i, j]


def test_network_arguments_are_validated():
    for bad in [dict(kernel_size=4), dict(kernel_size=1), dict(layers=-1), dict(channels=0)]:
        with pytest.raises(ValueError):
            GatedPixelCNN((1, 4, 4), 1, 2, **bad)
    with pytest.raises(ValueError, match="shape"):
        GatedPixelCNN((4, 4), 1, 2)
    with pytest.raises(ValueError, match="params_per_channel"):
        GatedPixelCNN((1, 4, 4), 0, 2)
    net = GatedPixelCNN((1, 4, 4), 1, 2, channels=4, layers=1, kernel_size=3)
    with pytest.raises(ValueError, match="cond"):
        net(torch.zeros(2, 1, 4, 4), torch.zeros(2, 3, 4, 4))


def _distribution(head, shape, batch=(3,), cond_channels=3, scale=1.0, coupling=1.0, **kw):
    """A random AutoregressiveImage; ``scale`` sharpens the conditionals, ``coupling``
    strengthens the dependence on earlier pixels."""
    torch.manual_seed(0)
    params = head.out_features // head.data_dim
    net = _net(shape, params=params, cond_channels=cond_channels, **kw)
    with torch.no_grad():
        net.output[-1].weight.mul_(scale)
        for layer in net.layers:
            layer.h_conv.weight.mul_(coupling)
            layer.v_conv.weight.mul_(coupling)
    _, h, w = shape
    cond = torch.randn(*batch, cond_channels * h * w, dtype=torch.float64)
    return AutoregressiveImage(net, head.double(), cond, shape)


def _binary_images(d: int = 4) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64)


def _dependence(images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """max |p(x) − ∏_d p(x_d)|: how far the joint ``p`` (16, B) is from its marginals' product."""
    marginal = (images[:, :, None] * p[:, None, :]).sum(0)  # P(x_d = 1), (4, B)
    product = torch.where(images[:, :, None] == 1, marginal, 1 - marginal).prod(1)
    return (p - product).abs().max()


HEADS = [
    lambda d: Bernoulli(d),
    lambda d: GaussianLearned(d),
    lambda d: BoundedGaussian(d, floor=0.05, mean_activation="sigmoid"),
    lambda d: GaussianShared(d, sigma=0.3),
]


@pytest.mark.parametrize("make_head", HEADS)
@pytest.mark.parametrize("shape", [(1, 5, 4), (3, 4, 5)])
def test_log_prob_equals_the_conditionals_the_sampler_used(make_head, shape):
    c, h, w = shape
    d = _distribution(make_head(c * h * w), shape, scale=3.0)
    x, conditionals = d.sample_with_log_prob((2,))
    assert x.shape == (2, 3, c * h * w) and conditionals.shape == (2, 3)
    torch.testing.assert_close(d.log_prob(x), conditionals, rtol=1e-12, atol=1e-10)
    if isinstance(d.head, Bernoulli):
        assert ((x == 0) | (x == 1)).all()


@pytest.mark.parametrize("shape", [(1, 2, 2), (2, 1, 2), (4, 1, 1)])
def test_probabilities_of_all_binary_images_sum_to_one(shape):
    d = _distribution(Bernoulli(4), shape, batch=(2,), scale=20.0, coupling=10.0)
    images = _binary_images()
    p = d.log_prob(images[:, None]).exp()  # (16, 2): every image under both conds
    torch.testing.assert_close(p.sum(0), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)
    if shape[1:] == (1, 1):  # one pixel: its channels are independent given the past
        assert _dependence(images, p) < 1e-12
    else:
        assert _dependence(images, p) > 0.03


def test_sample_frequencies_match_the_probabilities():
    d = _distribution(Bernoulli(4), (1, 2, 2), batch=(), scale=20.0, coupling=10.0)
    images = _binary_images()
    exact = d.log_prob(images).exp()
    assert _dependence(images, exact[:, None]) > 0.04  # a sampler ignoring x_<ij fails
    n = 20000
    x = d.sample((n,))
    counts = (x[:, None, :] == images).all(-1).sum(0).double()
    assert (counts / n - exact).abs().max() < 0.02  # ≥ 5.6 standard errors


def test_conditional_means_follow_the_drawn_sample():
    shape = (2, 3, 4)
    head = Bernoulli(24)
    d = _distribution(head, shape, batch=(5,))
    pyro.set_rng_seed(3)
    x, _ = d.sample_with_log_prob()
    pyro.set_rng_seed(3)
    means = d.conditional_means()
    pyro.set_rng_seed(3)
    assert torch.equal(d.mean, means)
    # the mean at each pixel given the pixels drawn before it: teacher forcing on x
    params = d.net(x.view(5, *shape), d.cond.view(5, 3, 3, 4)).view(5, -1)
    torch.testing.assert_close(means, head.mean(params), rtol=0, atol=1e-12)
    lik = Autoregressive(Bernoulli(24), shape, cond_channels=3).double()
    assert lik.mean(d.cond).shape == (5, 24)


def test_batch_shapes_broadcast_and_expand():
    shape, b, s = (1, 3, 3), 4, 2
    d = _distribution(Bernoulli(9), shape, batch=(s, b))
    x = torch.bernoulli(torch.full((b, 9), 0.5, dtype=torch.float64))
    lp = d.log_prob(x)
    assert lp.shape == (s, b)
    for k in range(s):
        single = AutoregressiveImage(d.net, d.head, d.cond[k], shape)
        torch.testing.assert_close(single.log_prob(x), lp[k], rtol=0, atol=1e-12)
    one = AutoregressiveImage(d.net, d.head, d.cond[0, 0], shape)
    assert one.batch_shape == () and one.event_shape == (9,)
    wide = one.expand((b,))
    assert wide.batch_shape == (b,) and wide.sample().shape == (b, 9)
    torch.testing.assert_close(wide.log_prob(x), one.log_prob(x), rtol=0, atol=0)
    assert d.support.check(x).all() and not d.has_rsample


def test_observed_inside_a_plate_is_expanded_and_scored():
    shape, b = (1, 3, 3), 4
    d = _distribution(Bernoulli(9), shape, batch=())
    x = torch.bernoulli(torch.full((b, 9), 0.5, dtype=torch.float64))

    def model():
        with pyro.plate("data", b):
            pyro.sample("obs", d, obs=x)

    trace = poutine.trace(model).get_trace()
    trace.compute_log_prob()
    site = trace.nodes["obs"]
    assert site["fn"].batch_shape == (b,)
    torch.testing.assert_close(site["log_prob"], d.log_prob(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("vectorize", [False, True])
def test_trace_elbo_trains_the_pixelcnn(vectorize):
    shape, n, z_dim = (1, 4, 4), 5, 2
    torch.manual_seed(0)
    lik = Autoregressive(
        Bernoulli(16), shape, cond_channels=2, channels=8, layers=1, kernel_size=3
    ).double()
    decoder = nn.Linear(z_dim, lik.out_features).double()
    encoder = nn.Linear(16, 2 * z_dim).double()
    x = torch.bernoulli(torch.full((n, 16), 0.5, dtype=torch.float64))

    def model(x):
        pyro.module("lik", lik)
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            zero = x.new_zeros(z_dim)
            z = pyro.sample("z", dist.Normal(zero, 1.0).to_event(1))
            pyro.sample("obs", lik(decoder(z)), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        loc, log_scale = encoder(x).chunk(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    elbo = Trace_ELBO(num_particles=2, vectorize_particles=vectorize, max_plate_nesting=1)
    loss = elbo.differentiable_loss(model, guide, x)
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in lik.net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert decoder.weight.grad.abs().sum() > 0
    # the head's own log_prob is the distribution's
    h = torch.randn(3, n, lik.out_features, dtype=torch.float64)
    torch.testing.assert_close(lik.log_prob(h, x), lik(h).log_prob(x), rtol=0, atol=0)
    assert lik.log_prob(h, x).shape == (3, n)


def test_pixelwise_heads_and_delegation():
    d = 12
    for head in [Bernoulli(d), GaussianFixed(d), MSE(d), GaussianLearned(d)]:
        assert head.pixelwise
    for head in [GaussianShared(d), BoundedGaussian(d)]:
        assert head.pixelwise
    assert not Baggins(d).pixelwise and not Likelihood.pixelwise
    lik = Autoregressive(Bernoulli(d), (3, 2, 2), cond_channels=5, channels=4, layers=1)
    assert lik.requires_binary and lik.out_features == 5 * 2 * 2
    assert lik.net.params_per_channel == 1
    with pytest.raises(ValueError, match="binary"):
        lik.check_data(torch.full((1, d), 0.5))
    gauss = Autoregressive(BoundedGaussian(d), (3, 2, 2), channels=4, layers=1)
    assert not gauss.requires_binary and gauss.net.params_per_channel == 2


def test_non_pixelwise_or_mismatched_heads_are_refused():
    with pytest.raises(ValueError, match="pixelwise"):
        Autoregressive(Baggins(16), (1, 4, 4))
    with pytest.raises(ValueError, match="data_dim"):
        Autoregressive(Bernoulli(15), (1, 4, 4))
    net = GatedPixelCNN((1, 4, 4), 1, 2, channels=4, layers=1, kernel_size=3)
    with pytest.raises(ValueError, match="pixelwise"):
        AutoregressiveImage(net, Baggins(16), torch.zeros(32), (1, 4, 4))
    with pytest.raises(ValueError, match="cond"):
        AutoregressiveImage(net, Bernoulli(16), torch.zeros(31), (1, 4, 4))
    with pytest.raises(ValueError, match="parameters"):
        AutoregressiveImage(net, GaussianLearned(16), torch.zeros(32), (1, 4, 4))
