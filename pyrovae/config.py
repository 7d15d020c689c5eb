"""Run configuration, generated from the options the registered parts declare.

A :class:`RunConfig` holds one value per declared option
(:mod:`pyrovae.options`): the fixed option sets of :data:`pyrovae.registry.SECTIONS`,
the option choosing each part, and every part's own options. It is what
``config.json`` in a run folder holds, and enough to rebuild the model and
guide (:func:`pyrovae.build.build_model`). Values come from the defaults,
then a TOML file, then command-line options, each overriding the one before;
the config remembers which keys were *given* (not defaulted), which is what a
resumed run compares with the run it continues.

Validation happens here, once: unknown keys (with a suggestion), values of
the wrong type or range, unknown part names (resolved to their classes), each
chosen part's own cross-option check, and the rules parts impose on each
other (:class:`~pyrovae.options.Needs`). Every failure is a one-line
:class:`ConfigError`.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyrovae import registry
from pyrovae.options import ConfigError, Option, needs_of, options_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["ConfigError", "Declared", "RunConfig", "load_toml", "schema"]


@dataclass(frozen=True)
class Declared:
    """An option in the schema: its declaration, its section, and who reads it.

    :ivar readers: the parts that declared it as ``(kind, name)`` pairs, e.g.
        ``(("likelihood", "gaussian-fixed"),)``; empty for fixed and part-choosing options.
    :ivar selects: the registry whose entry it names, for part-choosing options.

    Example:

    >>> from pyrovae.config import schema
    >>> declared = schema()["posterior_scale"]
    >>> declared.option.flag, declared.section.name, declared.readers
    ('--posterior-scale', 'guide', (('guide', 'constant'),))
    """

    option: Option
    section: registry.Section
    readers: tuple[tuple[str, str], ...] = ()
    selects: registry.Registry | None = None


_cache: dict[int, dict[str, Declared]] = {}


def schema() -> dict[str, Declared]:
    """Every option of a run, in ``--help`` order, from the current registry.

    :raises ConfigError: if two parts declare one name differently.
    """
    generation = registry.generation()
    if generation not in _cache:
        _cache.clear()
        _cache[generation] = _build_schema()
    return _cache[generation]


def _build_schema() -> dict[str, Declared]:
    out: dict[str, Declared] = {}

    def add(option: Option, section, reader: tuple[str, str] | None = None, selects=None):
        known = out.get(option.name)
        if known is not None and known.option != option:
            first = " ".join(known.readers[0]) if known.readers else known.section.name
            raise ConfigError(
                f"option {option.name!r} is declared twice, differently, by {first} and "
                f"{' '.join(reader) if reader else section.name}; rename one of them"
            )
        readers = known.readers if known is not None else ()
        if reader is not None:
            readers = (*readers, reader)
        out[option.name] = Declared(option, section, readers, selects)

    def add_registry(reg: registry.Registry, section) -> None:
        add(reg.selector(), section, selects=reg)
        for name, option in reg.declared():
            add(option, section, (reg.kind, name))

    for section in registry.SECTIONS:  # the first part's choice, the fixed options, the rest
        for reg in section.registries[:1]:
            add_registry(reg, section)
        for option in section.fixed_options():
            add(option, section)
        for reg in section.registries[1:]:
            add_registry(reg, section)
    return out


def names() -> dict[str, str]:
    """Every accepted spelling of every option (name, alias, dashed forms) -> its name."""
    out: dict[str, str] = {}
    for name, declared in schema().items():
        for spelling in (name, *declared.option.aliases):
            out[spelling] = name
            out[spelling.replace("_", "-")] = name
    return out


def resumable() -> frozenset[str]:
    """Options that may differ when a run is resumed (they do not define what it trains)."""
    return frozenset(name for name, d in schema().items() if d.option.resumable)


class RunConfig(Mapping):
    """A validated run configuration: one value per declared option.

    Read values as attributes or items (``config.latent_dim``,
    ``config["latent_dim"]``); a config is immutable, :meth:`replace` makes a
    changed copy. ``RunConfig(**values)`` is ``RunConfig.from_dict(values)``.

    :ivar given: the keys set explicitly (not defaulted).

    Example:

    >>> from pyrovae.config import RunConfig
    >>> config = RunConfig(latent_dim=2, guide="constant")
    >>> config
    RunConfig(latent_dim=2, guide='constant')
    >>> config.latent_dim, config["objective"], config.part("guide").__name__
    (2, 'meanfield', 'ConstantVariance')
    >>> config.replace(beta=0.5)
    RunConfig(latent_dim=2, guide='constant', beta=0.5)
    >>> RunConfig(latnt_dim=3)
    Traceback (most recent call last):
        ...
    pyrovae.options.ConfigError: unknown key 'latnt_dim' in config; did you mean 'latent_dim'?
    """

    __slots__ = ("_values", "given")

    def __init__(self, **values: Any):
        made = RunConfig.from_dict(values)
        object.__setattr__(self, "_values", made._values)
        object.__setattr__(self, "given", made.given)

    @classmethod
    def _make(cls, values: dict[str, Any], given: Iterable[str]) -> RunConfig:
        config = object.__new__(cls)
        object.__setattr__(config, "_values", values)
        object.__setattr__(config, "given", frozenset(given))
        return config

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], source: str = "config", given: Iterable[str] | None = None
    ) -> RunConfig:
        """Build and validate a config; unknown keys are errors with a suggestion.

        :param values: option values by name (or alias; dashes or underscores).
        :param source: where the values come from, for messages (a file name).
        :param given: the keys to record as given (default: those in ``values``).
        """
        spelled = canonical(values, source)
        parsed = {}
        for name, declared in schema().items():
            value = spelled.get(name, declared.option.default)
            parsed[name] = _parse(declared, value)
        config = cls._make(parsed, spelled if given is None else canonical_keys(given))
        _check_parts(config)
        return config

    # -- reading --------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"RunConfig has no option {name!r}") from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"RunConfig is immutable: use config.replace({name}=...)")

    def __repr__(self) -> str:
        changed = {k: v for k, v in self._values.items() if k in self.given}
        return f"RunConfig({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def to_dict(self) -> dict[str, Any]:
        """Every value, as ``config.json`` stores it (lists copied)."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self._values.items()}

    def replace(self, **changes: Any) -> RunConfig:
        """A validated copy with ``changes`` applied (and recorded as given)."""
        return RunConfig.from_dict(
            {**self.to_dict(), **changes}, given={*self.given, *canonical_keys(changes)}
        )

    # -- parts ----------------------------------------------------------------
    def part(self, key: str) -> Any:
        """The class (or function) of the part chosen by option ``key``, e.g. ``"guide"``."""
        return registry.SELECTORS[key].get(self._values[key])

    def options_for(self, part: Any) -> dict[str, Any]:
        """The values of the options ``part`` declares, by constructor keyword."""
        return {o.keyword: self._values[o.name] for o in options_of(part)}

    def build(self, key: str, *args: Any, **context: Any) -> Any:
        """Construct the part chosen by ``key`` with ``context`` and its own options.

        A part with a ``from_options`` classmethod is built by it; otherwise its
        constructor is called as ``part(*args, **context, **its options)``.
        """
        part = self.part(key)
        factory = getattr(part, "from_options", part)
        return factory(*args, **context, **self.options_for(part))

    def for_data(self, binary: bool) -> RunConfig:
        """This config with ``likelihood = "auto"`` resolved for binary or grey data:
        bernoulli for binary, gaussian-fixed otherwise (the one place "auto" is read)."""
        if self._values["likelihood"] != "auto":
            return self
        resolved = "bernoulli" if binary else "gaussian-fixed"
        return RunConfig._make({**self._values, "likelihood": resolved}, self.given)


def canonical(values: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """``values`` keyed by option names; unknown or doubled keys are errors."""
    spellings = names()
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = spellings.get(key)
        if name is None:
            close = difflib.get_close_matches(key, list(spellings), n=1)
            hint = f"; did you mean {spellings[close[0]]!r}?" if close else ""
            raise ConfigError(f"unknown key {key!r} in {source}{hint}")
        if name in out:
            raise ConfigError(f"{name} is given twice in {source}; keep one")
        out[name] = value
    return out


def canonical_keys(keys: Iterable[str]) -> set[str]:
    spellings = names()
    return {spellings.get(k, k) for k in keys}


def _parse(declared: Declared, value: Any) -> Any:
    reg = declared.selects
    if reg is None:
        return declared.option.parse(value)
    if not isinstance(value, str):
        raise ConfigError(f"{reg.key} must be the name of a {reg.kind}, got {value!r}")
    if reg.paths and value not in reg and value not in reg.extra:
        # a user's file or folder: absolute, so that a run resumes from any folder (a name
        # that is neither is kept as typed, for the loader's one-line error)
        path = Path(value).expanduser()
        return str(path.absolute()) if path.exists() else value
    if value not in reg.extra:
        try:
            reg.check(value)
        except registry.UnknownNameError as e:
            raise ConfigError(str(e)) from None
    return value


def _check_parts(config: RunConfig) -> None:
    """The chosen parts' own checks and the rules they and set options impose."""
    for key, reg in registry.SELECTORS.items():
        name = config[key]
        if name in reg.extra or (reg.paths and name not in reg):  # a user's data file
            continue
        part = reg.get(name)
        who = f"{reg.kind} {name!r}"
        check = getattr(part, "check_options", None)
        if check is not None:
            problem = check(**config.options_for(part))
            if problem:
                raise ConfigError(f"{who}: {problem}")
        for need in needs_of(part):
            need.check(config, who)
    for name, declared in schema().items():
        option = declared.option
        if option.needs and config[name] != option.default:
            for need in option.needs:
                need.check(config, name)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a flat dict (its keys are checked by :class:`RunConfig`)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text ({e.reason})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    nested = [k for k, v in values.items() if isinstance(v, dict)]
    if nested:
        raise ConfigError(
            f"config file {path} has a table [{nested[0]}]; pyrovae's settings are flat keys "
            "(e.g. latent_dim = 20) at the top of the file"
        )
    return values


def is_point_posterior(guide: str) -> bool:
    """Whether the registered guide ``guide`` is a point mass (``point_posterior``)."""
    return bool(getattr(registry.GUIDES.get(guide), "point_posterior", False))
