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


#: settings of a run that do not define its model: they may change when a run is resumed
RUN_SETTINGS = ("epochs", "device", "data_dir", "threads")


def model_settings(config: dict) -> dict:
    """The part of a config dict that defines the model, guide and training (not RUN_SETTINGS)."""
    return {k: v for k, v in config.items() if k not in RUN_SETTINGS}


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
    #: epochs at which the learning rate is multiplied by ``lr_gamma`` (torch's MultiStepLR)
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    weight_decay: float = 0.0
    #: d of the exponential moving average of the parameters that evaluation uses (0: none)
    ema_decay: float = 0.0
    batch_size: int = 100
    epochs: int = 10
    seed: int = 0
    device: str = "auto"
    #: torch intra-op threads (None: torch's default); numbers may differ across thread counts
    threads: int | None = None
    eval_samples: int = 1
    iw_samples: int = 100
    # what a non-finite loss or gradient does: stop, or roll back and halve the lr
    nan_policy: str = "stop"
    max_rollbacks: int = 3
    # Fyffe / Mattei & Frellsen parts
    floor: float = 0.01
    info_max: float = 3.0
    floor_mode: str = "max"
    posterior_scale: float = 1.0
    learn_scale: str = "none"
    #: how the diagonal guide turns its raw output r into σ: softplus(r), or exp(r / 2)
    scale_transform: str = "softplus"
    # Alemi et al. (2018): the objective D + βR and learned marginals
    beta: float = 1.0
    beta_schedule: str = "constant"
    beta_warmup: float = 5.0
    beta_cycles: int = 4
    prior_components: int = 10
    # Kingma & Welling (2013) app. F: full variational Bayes over the decoder's weights
    decoder: str = "mlp"
    weight_prior: str = "normal"
    weight_prior_scale: float = 0.1
    mixture_pi: float = 0.5
    mixture_sigma1: float = 1.0
    mixture_sigma2: float = math.exp(-6.0)
    weight_init_scale: float = 0.03
    weight_samples: int = 10
    init_from: str | None = None

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
        _check_rate_distortion(self)
        _check_point_posterior(self)
        _check_full_vb(self)
        for key in ("particles", "latent_dim", "batch_size", "eval_samples"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ConfigError(f"{key} must be a positive integer, got {getattr(self, key)!r}")
        for key in ("epochs", "iw_samples"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 0:
                raise ConfigError(f"{key} must be a whole number >= 0, got {getattr(self, key)!r}")
        self.hidden = [int(h) for h in self.hidden]
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden widths must be positive integers, got {self.hidden}")
        if not isinstance(self.lr_milestones, (list, tuple)) or not all(
            isinstance(m, int) and not isinstance(m, bool) for m in self.lr_milestones
        ):
            raise ConfigError(f"lr_milestones must be a list of epochs, got {self.lr_milestones!r}")
        self.lr_milestones = sorted(self.lr_milestones)
        if any(m < 1 for m in self.lr_milestones):
            raise ConfigError(f"lr_milestones must be epochs >= 1, got {self.lr_milestones}")
        for key in ("lr", "sigma", "lr_gamma"):
            if not (isinstance(getattr(self, key), (int, float)) and getattr(self, key) > 0):
                raise ConfigError(f"{key} must be a positive number, got {getattr(self, key)!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if isinstance(self.ema_decay, bool) or not (
            isinstance(self.ema_decay, (int, float)) and 0 <= self.ema_decay < 1
        ):
            raise ConfigError(
                f"ema_decay must be a number in [0, 1) (0 turns averaging off), "
                f"got {self.ema_decay!r}"
            )
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.init not in ("default", "aevb"):
            raise ConfigError(f"init must be 'default' or 'aevb', got {self.init!r}")
        if self.mean_activation not in ("identity", "sigmoid"):
            raise ConfigError("mean_activation must be 'identity' or 'sigmoid'")
        for key in ("floor", "info_max", "posterior_scale"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and 0 < v < math.inf):
                raise ConfigError(f"{key} must be a positive number, got {v!r}")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ConfigError(f"threads must be a positive integer, got {self.threads!r}")
        if self.nan_policy not in ("stop", "rollback"):
            raise ConfigError(f"nan_policy must be 'stop' or 'rollback', got {self.nan_policy!r}")
        if (
            isinstance(self.max_rollbacks, bool)
            or not isinstance(self.max_rollbacks, int)
            or (self.max_rollbacks < 0)
        ):
            raise ConfigError(
                f"max_rollbacks must be a whole number >= 0, got {self.max_rollbacks!r}"
            )
        if self.floor_mode not in ("max", "softplus"):
            raise ConfigError(f"floor_mode must be 'max' or 'softplus', got {self.floor_mode!r}")
        if self.scale_transform not in ("softplus", "exp"):
            raise ConfigError(
                f"scale_transform must be 'softplus' or 'exp', got {self.scale_transform!r}"
            )
        if self.learn_scale not in ("none", "scalar", "vector"):
            raise ConfigError(
                f"learn_scale must be 'none', 'scalar' or 'vector', got {self.learn_scale!r}"
            )


def _number(cfg: RunConfig, key: str) -> float:
    v = getattr(cfg, key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v < math.inf):
        raise ConfigError(f"{key} must be a number >= 0, got {v!r}")
    return float(v)


def _check_rate_distortion(cfg: RunConfig) -> None:
    """β options (D + βR, Alemi et al. 2018) and the marginal's component count."""
    cfg.beta, cfg.beta_warmup = _number(cfg, "beta"), _number(cfg, "beta_warmup")
    _check(registry.BETA_SCHEDULES, cfg.beta_schedule)
    for key in ("beta_cycles", "prior_components"):
        v = getattr(cfg, key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{key} must be a positive integer, got {v!r}")
    if cfg.beta != 1.0 or cfg.beta_schedule != "constant":
        from pyrovae.infer.beta import beta_unsupported_reason

        reason = beta_unsupported_reason(registry.OBJECTIVES.get(cfg.objective))
        if reason is not None:
            raise ConfigError(
                f"objective {cfg.objective!r} cannot train D + βR (beta {cfg.beta:g}, schedule "
                f"{cfg.beta_schedule!r}): {reason}; use beta 1 with the constant schedule, or "
                "objective trace or meanfield"
            )


def is_point_posterior(guide: str) -> bool:
    """Whether the registered guide ``guide`` is a point mass (``point_posterior``)."""
    return bool(getattr(registry.GUIDES.get(guide), "point_posterior", False))


def _check_point_posterior(cfg: RunConfig) -> None:
    """A point-posterior guide (a plain auto-encoder) has no density in z: train it with β = 0."""
    if not is_point_posterior(cfg.guide):
        return
    if cfg.beta != 0.0 or cfg.beta_schedule != "constant":
        raise ConfigError(
            f"guide {cfg.guide!r} is a point posterior (a plain auto-encoder) with no rate to "
            f"weigh, but beta is {cfg.beta:g} (schedule {cfg.beta_schedule!r}); pass beta 0 "
            "with the constant schedule (--beta 0)"
        )


def _check_full_vb(cfg: RunConfig) -> None:
    """Options of the Bayesian decoder (full variational Bayes, Kingma & Welling app. F)."""
    _check(registry.DECODERS, cfg.decoder)
    _check(registry.WEIGHT_PRIORS, cfg.weight_prior)
    for key in ("weight_prior_scale", "mixture_sigma1", "mixture_sigma2", "weight_init_scale"):
        v = getattr(cfg, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
            raise ConfigError(f"{key} must be a positive number, got {v!r}")
    if not (isinstance(cfg.mixture_pi, (int, float)) and 0 < cfg.mixture_pi < 1):
        raise ConfigError(f"mixture_pi must be in (0, 1), got {cfg.mixture_pi!r}")
    if not cfg.mixture_sigma2 < cfg.mixture_sigma1:
        raise ConfigError("mixture_sigma2 (the narrow scale) must be below mixture_sigma1")
    if isinstance(cfg.weight_samples, bool) or not isinstance(cfg.weight_samples, int):
        raise ConfigError(f"weight_samples must be a positive integer, got {cfg.weight_samples!r}")
    if cfg.weight_samples < 1:
        raise ConfigError(f"weight_samples must be a positive integer, got {cfg.weight_samples!r}")
    if cfg.decoder != "bayesian":
        if cfg.init_from is not None:
            raise ConfigError("init_from seeds a Bayesian decoder: pass decoder='bayesian' too")
        return
    if cfg.objective not in ("trace", "meanfield"):
        raise ConfigError(
            f"objective {cfg.objective!r} needs every site inside the data plate, but a "
            "Bayesian decoder's weights are global: use objective trace or meanfield"
        )


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
