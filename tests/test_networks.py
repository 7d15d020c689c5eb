"""Network parts: shapes, the fast path, and every combination with the other parts.

The encoder and decoder networks (:mod:`pyrovae.networks`) are chosen
independently of the guide, objective and prior; every combination the config
allows trains (finite, decreasing loss), and every one it refuses says why in one
line. ``mlp`` keeps 0.1.0's numbers (``test_identity.py``).
"""

from __future__ import annotations

import itertools
import json

import pyro
import pytest
import torch
from click.testing import CliRunner

from pyrovae import registry
from pyrovae.build import build_model
from pyrovae.cli import main
from pyrovae.config import ConfigError, RunConfig
from pyrovae.infer.beta import BetaScaled
from pyrovae.infer.fast_elbo import REFERENCES, FastELBO, supports_fast_path
from pyrovae.infer.objectives import make_objective
from pyrovae.models import Bernoulli, GaussianLearned
from pyrovae.nets.conv import ConvDecoder, ConvEncoder
from pyrovae.run import load_run

SHAPES = [(1, 8, 8), (1, 28, 20), (3, 7, 5), (3, 12, 12)]
#: small networks, so that the whole grid trains in seconds
SMALL = {
    "latent_dim": 2,
    "hidden": [16],
    "conv_channels": [4, 8],
    "kernel_size": 3,
    "pixelcnn_layers": 1,
    "pixelcnn_channels": 8,
    "pixelcnn_kernel": 3,
    "pixelcnn_cond_channels": 2,
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel", [3, 4, 5])
def test_conv_networks_map_flat_rows_of_any_image_shape(shape, kernel):
    """(..., C·H·W) in, (..., out) out for the encoder; (..., k·C·H·W) for the decoder,
    on square and non-square images, 1 and 3 channels, with particle dimensions."""
    d = shape[0] * shape[1] * shape[2]
    encoder = ConvEncoder(shape, [4, 8], [16], 6, kernel)
    decoder = ConvDecoder(shape, [4, 8], [16], 3, planes_per_channel=2, kernel_size=kernel)
    assert encoder(torch.rand(5, d)).shape == (5, 6)
    assert encoder(torch.rand(2, 5, d)).shape == (2, 5, 6)
    assert decoder(torch.randn(5, 3)).shape == (5, 2 * d)
    assert decoder(torch.randn(4, 5, 3)).shape == (4, 5, 2 * d)


def test_the_conv_decoder_lays_out_whole_images_per_parameter_block():
    """Block j of the output is plane group j: channel c of block j is one (H, W) image,
    as a likelihood head's ``h.split(D, -1)`` reads it. Zeroing one output plane of the
    last layer zeroes exactly that image of that block."""
    shape = (3, 7, 5)
    d = 3 * 7 * 5
    decoder = ConvDecoder(shape, [4], [], 2, planes_per_channel=2, kernel_size=3)
    last = decoder.upsample[-1]
    with (
        torch.no_grad()
    ):  # a transposed conv's weight is (in, out, kh, kw): plane 4 is block 1, c 1
        last.weight[:, 4] = 0
        last.bias[4] = 0
    h = decoder(torch.randn(6, 2))
    blocks = h.reshape(6, 2, 3, 7, 5)
    assert (blocks[:, 1, 1] == 0).all()
    assert (blocks[:, 0] != 0).any() and (blocks[:, 1, 0] != 0).any()
    loc, log_var = h.split(d, -1)
    assert (log_var.reshape(6, 3, 7, 5)[:, 1] == 0).all()


def test_a_conv_network_refuses_images_it_would_shrink_to_nothing():
    with pytest.raises(ValueError, match="shrink a 3×3 image to nothing"):
        ConvEncoder((1, 3, 3), [4, 8, 16], [], 2, 4)
    config = RunConfig(encoder="conv", conv_channels=[4, 8, 16, 32], kernel_size=4)
    with pytest.raises(ConfigError, match="use fewer --conv-channels"):
        build_model(config.for_data(True), (1, 8, 8))


def test_a_conv_network_on_a_table_is_one_clear_error():
    config = RunConfig(decoder="conv").for_data(True)
    with pytest.raises(ConfigError, match="needs images, but this data is rows of 30 numbers"):
        build_model(config, (30,))
    with pytest.raises(ConfigError, match="needs images"):
        build_model(RunConfig(encoder="conv").for_data(True), 30)


def _model(encoder: str, decoder: str, shape=(1, 6, 5), likelihood="bernoulli", **extra):
    config = RunConfig(
        **{**SMALL, "encoder": encoder, "decoder": decoder, "likelihood": likelihood, **extra}
    )
    return build_model(config, shape)


NETWORKS = [(e, d) for e in registry.ENCODERS.names() for d in registry.DECODERS.names()]


@pytest.mark.parametrize(("encoder", "decoder"), NETWORKS)
@pytest.mark.parametrize("kind", ["trace", "meanfield"])
def test_the_fast_path_equals_pyros_elbo_for_every_network(encoder, decoder, kind):
    torch.manual_seed(0)
    model, guide = _model(encoder, decoder)
    model, guide = model.double(), guide.double()
    assert supports_fast_path(model, guide)
    x = torch.bernoulli(torch.full((7, 30), 0.4, dtype=torch.float64))
    losses, grads = [], []
    for elbo in (
        FastELBO(kind, num_particles=2),
        REFERENCES[kind](num_particles=2, vectorize_particles=True, max_plate_nesting=1),
    ):
        pyro.set_rng_seed(5)
        loss = elbo.differentiable_loss(model, guide, x, num_data=50)
        params = [*model.parameters(), *guide.parameters()]
        grads.append(torch.autograd.grad(loss, params, allow_unused=True))
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-10, atol=1e-8)
    for a, b in zip(*grads):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def _binary_digits(n: int = 64) -> torch.Tensor:
    from pyrovae.data import load_dataset

    return (load_dataset("digits").train[:n] > 0.5).float()


def _grid():
    axes = (
        registry.ENCODERS.names(),
        registry.DECODERS.names(),
        registry.GUIDES.names(),
        registry.OBJECTIVES.names(),
        registry.PRIORS.names(),
    )
    return list(itertools.product(*axes))


def _config(encoder, decoder, guide, objective, prior) -> RunConfig:
    values = {**SMALL, "encoder": encoder, "decoder": decoder, "guide": guide}
    values |= {"objective": objective, "prior": prior, "particles": 2}
    if guide == "deterministic":
        values["beta"] = 0.0
    return RunConfig.from_dict(values).for_data(True)


def _train_steps(config: RunConfig, x: torch.Tensor, steps: int = 16) -> list[float]:
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    model, guide = build_model(config, (1, 8, 8))
    loss_fn = BetaScaled(make_objective(config.objective, config.particles), config.beta)(
        model, guide
    )
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(x, len(x))
        loss.backward()
        optimizer.step()
        losses.append(loss.item() / len(x))
    return losses


def test_every_allowed_combination_of_parts_trains_and_every_refused_one_says_why():
    """network × guide × objective × prior: a finite, decreasing loss over a few steps on
    binarised digits, or one line naming the rule; every network trains with every guide."""
    x = _binary_digits()
    trained, refused = set(), {}
    for combo in _grid():
        try:
            config = _config(*combo)
        except ConfigError as e:
            refused[combo] = str(e)
            continue
        losses = _train_steps(config, x)
        assert all(map(torch.isfinite, torch.tensor(losses))), combo
        first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
        assert last < first, (combo, losses)
        trained.add(combo)
    for message in refused.values():
        assert "\n" not in message and ("needs" in message or "requires" in message), message
    for encoder, decoder, guide in itertools.product(
        registry.ENCODERS.names(), registry.DECODERS.names(), registry.GUIDES.names()
    ):
        assert any(c[:3] == (encoder, decoder, guide) for c in trained), (encoder, decoder, guide)
    assert len(trained) > len(refused)


def test_full_vb_keeps_to_the_mlp_decoder_with_one_line():
    for decoder in ("conv", "pixelcnn"):
        with pytest.raises(ConfigError) as e:
            RunConfig(weights="bayesian", decoder=decoder)
        assert str(e.value) == (
            f"weights 'bayesian' needs decoder 'mlp', got {decoder!r}: its Bayesian layers are "
            "affine (BayesianLinear) only; pass --decoder mlp"
        )
    RunConfig(weights="bayesian", encoder="conv")  # the encoder is the guide's: any network


def test_a_gaussian_learned_conv_decoder_splits_mean_and_variance_planes():
    model, _ = _model("mlp", "conv", shape=(3, 7, 5), likelihood="gaussian-learned")
    assert isinstance(model.likelihood, GaussianLearned)
    h = model.decoder(torch.randn(4, 2))
    assert h.shape == (4, 2 * 105)
    assert model.likelihood(h).event_shape == (105,)
    assert isinstance(_model("conv", "conv")[0].likelihood, Bernoulli)


def test_train_cli_with_conv_networks_writes_a_run_that_loads_back(tmp_path):
    out = tmp_path / "conv"
    args = ["train", "--encoder", "conv", "--decoder", "conv", "--conv-channels", "4,8"]
    args += ["--hidden", "16", "--latent", "2", "--epochs", "1", "--iw-samples", "5"]
    args += ["--eval-samples", "2", "--no-progress", "--threads", "1", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["data_shape"] == [1, 8, 8]
    assert saved["config"]["encoder"] == saved["config"]["decoder"] == "conv"
    config, model, guide, info = load_run(out)
    assert type(guide.encoder).__name__ == "ConvEncoder"
    assert type(model.decoder).__name__ == "ConvDecoder"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_elbo"] < 0 and summary["test_rate"] > 0
    assert (out / "plots" / "samples.png").exists()


def test_the_python_api_takes_any_module_with_the_shape_contract():
    """A user's own networks: flat rows in, the guide's or likelihood's outputs out."""
    from pyrovae.guides import DiagonalGaussian
    from pyrovae.models.vae import VAE

    class Encoder(torch.nn.Module):  # reads (B, 64) rows as 8×8 images
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.out = torch.nn.Linear(4 * 64, 2 * 2)

        def forward(self, x):
            images = x.reshape(-1, 1, 8, 8)
            return self.out(torch.relu(self.conv(images)).flatten(1)).reshape(*x.shape[:-1], -1)

    decoder = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 64))
    guide = DiagonalGaussian(64, 2, encoder=Encoder())
    model = VAE(64, 2, likelihood=Bernoulli(64), decoder=decoder)
    x = _binary_digits(32).reshape(32, 64)
    loss_fn = make_objective("meanfield")(model, guide)
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = loss_fn(x, 32)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert guide.encoder.conv.weight.grad is not None and losses[-1] < losses[0]
