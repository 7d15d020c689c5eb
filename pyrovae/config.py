"""Run configuration: every choice a training run makes, by registry name.

A :class:`RunConfig` is what ``config.json`` in a run folder holds; it is
enough to rebuild the model and guide (:func:`pyrovae.build.build_model`).
Values come from the defaults, then a TOML file, then command-line options,
each overriding the one before. Unknown keys and bad values are errors that
name the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrovae import registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key and the fix."""


@dataclass
class RunConfig:
    """Everything that defines a training run.

    ``likelihood="auto"`` picks ``bernoulli`` for binary datasets and
    ``gaussian-fixed`` (σ = ``sigma``) for grey ones; the resolved name is
    what the run folder records.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    likelihood: str = "auto"
    sigma: float = 0.1
    relaxed_bernoulli: bool = False
    mean_activation: str = "identity"
    guide: str = "diagonal"
    prior: str = "standard"
    objective: str = "meanfield"
    particles: int = 1
    latent_dim: int = 10
    hidden: list[int] = field(default_factory=lambda: [400])
    activation: str = "tanh"
    init: str = "default"
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 100
    epochs: int = 10
    seed: int = 0
    device: str = "auto"
    eval_samples: int = 1
    iw_samples: int = 100

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> RunConfig:
        """Build and validate a config; unknown keys are errors with a suggestion."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"unknown key {key!r} in {source}{hint}")
        cfg = cls(**{**cls().to_dict(), **values})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise :class:`ConfigError` for any value that cannot run."""
        for reg, name in [
            (registry.DATASETS, self.dataset),
            (registry.GUIDES, self.guide),
            (registry.PRIORS, self.prior),
            (registry.OBJECTIVES, self.objective),
            (registry.OPTIMIZERS, self.optimizer),
            (registry.ACTIVATIONS, self.activation),
        ]:
            _check(reg, name)
        if self.likelihood != "auto":
            _check(registry.LIKELIHOODS, self.likelihood)
        for key in ("particles", "latent_dim", "batch_size", "eval_samples"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ConfigError(f"{key} must be a positive integer, got {getattr(self, key)!r}")
        for key in ("epochs", "iw_samples"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 0:
                raise ConfigError(f"{key} must be a whole number >= 0, got {getattr(self, key)!r}")
        self.hidden = [int(h) for h in self.hidden]
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden widths must be positive integers, got {self.hidden}")
        for key in ("lr", "sigma"):
            if not (isinstance(getattr(self, key), (int, float)) and getattr(self, key) > 0):
                raise ConfigError(f"{key} must be a positive number, got {getattr(self, key)!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.init not in ("default", "aevb"):
            raise ConfigError(f"init must be 'default' or 'aevb', got {self.init!r}")
        if self.mean_activation not in ("identity", "sigmoid"):
            raise ConfigError("mean_activation must be 'identity' or 'sigmoid'")


def _check(reg: registry.Registry, name: str) -> None:
    try:
        reg.check(name)
    except registry.UnknownNameError as e:
        raise ConfigError(str(e)) from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a flat dict (keys as in :class:`RunConfig`)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    return {k.replace("-", "_"): v for k, v in values.items()}
