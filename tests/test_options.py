"""Parts declare their options once; config, CLI, TOML, validation and resume follow.

The central test registers a toy guide with one option from inside this module,
touching no file of the package, and finds that option everywhere a built-in
option is: ``train --help`` (in the guide's section), a TOML file, validation,
the constructor, the run folder, and the resume check.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyro.distributions as dist
import pytest
import torch
from click.testing import CliRunner

from pyrovae import registry
from pyrovae.cli import main
from pyrovae.config import ConfigError, RunConfig, load_toml, schema
from pyrovae.guides.amortized import AmortizedGuide
from pyrovae.options import Needs, Option
from pyrovae.run import load_run, migrate_config

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMALL = ["--dataset", "digits", "--hidden", "16", "--latent", "2", "--iw-samples", "0"]


class ToyGuide(AmortizedGuide):
    """q(z|x) = N(μ(x), toy_scale² I): a constant-variance guide defined outside the package."""

    options = (Option("toy_scale", 0.5, "σ of the toy guide.", above=0),)

    def __init__(self, data_dim, latent_dim, hidden, activation, init, toy_scale=0.5):
        super().__init__(data_dim, latent_dim, hidden, activation, init, outputs_per_latent=1)
        self.toy_scale = toy_scale

    def posterior(self, x):
        loc = self.encode(x)
        return dist.Normal(loc, torch.full_like(loc, self.toy_scale)).to_event(1)


@pytest.fixture
def toy_guide():
    registry.GUIDES.register("toy", ToyGuide)
    yield
    registry.GUIDES.unregister("toy")


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _section(help_text: str, title: str) -> str:
    """The lines of one option section of ``--help``."""
    start = help_text.index(f"{title} options:")
    rest = help_text[start + 1 :]
    end = re.search(r"\n\S[^\n]* options:\n", rest)
    return rest[: end.start()] if end else rest


def _one_error(result) -> str:
    assert result.exit_code != 0, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def test_a_registered_part_has_its_option_everywhere(toy_guide, tmp_path):
    # --help: in the guide's section, with its default and the part that reads it
    helped = _invoke("train", "--help")
    assert helped.exit_code == 0, helped.output
    guide_section = _section(helped.output, "Guide q(z|x)")
    assert "--toy-scale FLOAT" in guide_section and "toy; default: 0.5" in guide_section
    assert "toy" in re.search(r"--guide \[([^\]]*)\]", guide_section).group(1).split("|")
    assert "--toy-scale" not in _section(helped.output, "Likelihood p(x|z)")

    # a TOML file with the same key trains, and the value reaches the constructor
    toml = tmp_path / "toy.toml"
    toml.write_text('guide = "toy"\ntoy_scale = 0.25\nepochs = 1\n')
    out = tmp_path / "run"
    trained = _invoke("train", "--config", toml, *SMALL, "--no-progress", "--out", out)
    assert trained.exit_code == 0, trained.output
    saved = json.loads((out / "config.json").read_text())["config"]
    assert (saved["guide"], saved["toy_scale"]) == ("toy", 0.25)
    _, _, guide, _ = load_run(out)
    assert isinstance(guide, ToyGuide) and guide.toy_scale == 0.25
    x = torch.rand(3, 64)
    torch.testing.assert_close(guide.posterior(x).stddev, torch.full((3, 2), 0.25))

    # validation: a bad value is one line naming the option and what it must be
    toml.write_text('guide = "toy"\ntoy_scale = -1\n')
    error = _one_error(_invoke("train", "--config", toml, "--out", tmp_path / "bad"))
    assert "toy_scale must be a positive number, got -1" in error
    assert "must be a positive number" in _one_error(
        _invoke("train", *SMALL, "--guide", "toy", "--toy-scale", "0", "--out", tmp_path / "b")
    )
    assert not (tmp_path / "bad").exists() and not (tmp_path / "b").exists()

    # resume: the run's own value is kept when omitted, and a changed one is refused
    refused = _invoke("train", "--out", out, "--resume", "--toy-scale", "0.3")
    assert "toy_scale" in _one_error(refused) and "--toy-scale" in _one_error(refused)
    resumed = _invoke("train", "--out", out, "--resume", "--epochs", "2", "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    saved = json.loads((out / "config.json").read_text())["config"]
    assert (saved["toy_scale"], saved["epochs"], saved["hidden"]) == (0.25, 2, [16])
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_the_schema_keeps_every_key_of_a_0_1_0_run():
    """No option was dropped: every key of a 0.1.0 config.json is read, with its value;
    the options added since (the networks, the weights) take their defaults."""
    old = json.loads((FIXTURES / "run-0.1.0" / "config.json").read_text())["config"]
    assert set(old) <= set(schema())
    new = RunConfig.from_dict(migrate_config(old, "0.1.0")).to_dict()
    assert {k: new[k] for k in old} == old
    added = set(schema()) - set(old)
    assert {"encoder", "weights", "conv_channels"} <= added
    assert all(new[k] == schema()[k].option.default for k in added)


def test_0_1_0_s_bayesian_decoder_is_now_the_weights_option():
    """0.1.0's ``decoder`` chose the weight treatment; it migrates to ``weights``, and a
    user who still writes ``decoder = "bayesian"`` is told where it went."""
    migrated = migrate_config({"decoder": "bayesian", "hidden": [8]}, "0.1.0")
    assert migrated == {"decoder": "mlp", "weights": "bayesian", "hidden": [8]}
    assert RunConfig.from_dict(migrated).part("weights").__name__ == "BayesianWeights"
    with pytest.raises(ConfigError, match="is now weights 'bayesian' \\(pass --weights bayesian"):
        RunConfig(decoder="bayesian")


def test_names_aliases_and_dashes_are_one_option(tmp_path):
    assert RunConfig(latent=3).latent_dim == 3
    assert RunConfig.from_dict({"latent-dim": 4}).latent_dim == 4
    with pytest.raises(ConfigError, match="latent_dim is given twice"):
        RunConfig.from_dict({"latent": 3, "latent_dim": 3})
    with pytest.raises(ConfigError, match="did you mean 'latent_dim'"):
        RunConfig.from_dict({"latnt_dim": 3})
    assert RunConfig(latent=3).given == {"latent_dim"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": True}, "lr must be a positive number, got True"),
        ({"latent_dim": 2.5}, "latent_dim must be a positive integer, got 2.5"),
        ({"hidden": 400}, "hidden must be a list of integers >= 1, got 400"),
        ({"hidden": [400, "a"]}, "hidden must be a list of integers"),
        ({"relaxed_bernoulli": 1}, "relaxed_bernoulli must be true or false, got 1"),
        ({"mixture_pi": 1.0}, r"mixture_pi must be a number in \(0, 1\), got 1.0"),
        ({"device": "gpu"}, "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        ({"guide": 3}, "guide must be the name of a guide, got 3"),
        ({"objective": "bilbo"}, "objective 'bilbo' needs guide 'constant', got 'diagonal'"),
        ({"guide": "deterministic"}, "guide 'deterministic' needs beta 0, got 1"),
        (
            {"weight_prior": "scale-mixture", "mixture_sigma2": 2.0},
            "weight prior 'scale-mixture': mixture_sigma2",
        ),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_option(values, message):
    with pytest.raises(ConfigError, match=message) as info:
        RunConfig.from_dict(values)
    assert "\n" not in str(info.value)


def test_bad_toml_files_are_one_line_errors(tmp_path):
    latin = tmp_path / "latin.toml"
    latin.write_bytes('dataset = "digits" # caf\xe9\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_toml(latin)
    nested = tmp_path / "nested.toml"
    nested.write_text("[model]\nlatent_dim = 3\n")
    with pytest.raises(ConfigError, match=r"has a table \[model\]"):
        load_toml(nested)


def test_a_name_declared_twice_differently_is_refused():
    class Clash:
        options = (Option("sigma", 2.0, "Another σ."),)

    registry.LIKELIHOODS.register("clash", Clash)
    try:
        with pytest.raises(ConfigError, match="'sigma' is declared twice, differently"):
            schema()
    finally:
        registry.LIKELIHOODS.unregister("clash")
    assert schema()["sigma"].option.default == 0.1


def test_rules_of_a_registered_part_are_checked():
    class NeedsBernoulli:
        needs = (Needs("likelihood", ("bernoulli",), "it scores binary codes"),)

    registry.PRIORS.register("needy", NeedsBernoulli)
    try:
        with pytest.raises(ConfigError, match="prior 'needy' needs likelihood 'bernoulli'"):
            RunConfig(prior="needy", likelihood="mse")
        assert RunConfig(prior="needy", likelihood="bernoulli").prior == "needy"
    finally:
        registry.PRIORS.unregister("needy")


def test_readme_resume_command_continues_with_the_runs_own_settings(tmp_path):
    """``pyrovae train --out RUN --epochs N --resume`` as the README gives it."""
    out = tmp_path / "run"
    first = _invoke(
        "train", *SMALL, "--epochs", "1", "--lr", "0.002", "--no-progress", "--out", out
    )
    assert first.exit_code == 0, first.output
    again = _invoke("train", "--out", out, "--epochs", "2", "--resume", "--no-progress")
    assert again.exit_code == 0, again.output
    saved = json.loads((out / "config.json").read_text())["config"]
    assert (saved["latent_dim"], saved["hidden"], saved["lr"], saved["epochs"]) == (
        2,
        [16],
        0.002,
        2,
    )
    error = _one_error(_invoke("train", "--out", out, "--epochs", "3", "--latent", "3", "--resume"))
    assert "different latent_dim" in error and "--latent-dim" in error
