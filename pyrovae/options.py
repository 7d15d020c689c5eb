"""Options: what each part of pyrovae reads from a run's configuration, declared once.

A part (a dataset, likelihood, guide, prior, objective, β schedule, weight
treatment, ...) lists the options it reads beside its class, and the rules
it imposes on the other parts::

    class GaussianFixed(Likelihood):
        options = (SIGMA, MEAN_ACTIVATION)

    class BILBO(VectorizedLossELBO):
        needs = (Needs("guide", ("constant",), "its floating prior assumes one scale"),)

Registering the part (:mod:`pyrovae.registry`) is all it takes for the
option to exist everywhere: the run configuration
(:class:`pyrovae.config.RunConfig`), the ``train`` and ``sweep`` command-line
options (``--name-with-dashes``, grouped in ``--help`` by part), the keys of a
TOML file (the same names, dashes or underscores), the validation and its
one-line errors, the default shown in ``--help``, and the resume check.

This module imports neither torch nor pyro.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key and the fix."""


@dataclass(frozen=True)
class Needs:
    """A rule a part imposes on the rest of the configuration.

    When the part is chosen (or, declared on an :class:`Option`, when that option
    differs from its default), ``config[key]`` must be one of ``values``.

    :param key: the option the rule constrains, e.g. ``"guide"``.
    :param values: its allowed values.
    :param reason: why, in a few words.
    :param fix: what to do, if not ``pass --key value``; it ends the error message.

    Example:

    >>> from pyrovae.config import RunConfig
    >>> from pyrovae.options import Needs
    >>> rule = Needs("guide", ("constant",), "its floating prior needs one posterior scale")
    >>> rule.check(RunConfig(guide="constant"), "objective 'bilbo'")  # satisfied: no error
    >>> rule.check(RunConfig(guide="diagonal"), "objective 'bilbo'")
    Traceback (most recent call last):
        ...
    pyrovae.options.ConfigError: objective 'bilbo' needs guide 'constant', got 'diagonal': ...
    """

    key: str
    values: tuple[Any, ...]
    reason: str
    fix: str | None = None

    def check(self, config: Any, who: str) -> None:
        """Raise :class:`ConfigError` if ``config`` breaks the rule; ``who`` names the part."""
        value = config[self.key]
        if value in self.values:
            return
        allowed = " or ".join(_show(v) for v in self.values)
        flag = "--" + self.key.replace("_", "-")
        fix = self.fix or f"pass {flag} {' or '.join(_plain(v) for v in self.values)}"
        raise ConfigError(
            f"{who} needs {self.key} {allowed}, got {_show(value)}: {self.reason}; {fix}"
        )


def _plain(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return repr(value)
    return str(value)


#: the value types an option may have; ``list`` is a list of integers
TYPES = (int, float, bool, str, list, Path)


@dataclass(frozen=True)
class Option:
    """One setting a part reads, with everything needed to offer and check it.

    :param name: the key in configs and TOML files; the command line spells it
        ``--name-with-dashes``.
    :param default: the value when nobody sets it.
    :param help: one line for ``--help`` (the default is appended there).
    :param type: ``int``, ``float``, ``bool``, ``str``, ``list`` (of integers) or
        ``Path``; inferred from ``default`` when omitted.
    :param choices: the allowed values of a ``str`` option, or a callable returning
        them (a registry's names, resolved when asked).
    :param low: inclusive lower bound (numbers; list items).
    :param above: exclusive lower bound.
    :param below: exclusive upper bound.
    :param nullable: ``None`` is allowed (``default`` is then usually None).
    :param aliases: other names accepted on the command line and in TOML files.
    :param short: a one-letter command-line flag, e.g. ``"-L"``.
    :param arg: the keyword the part's constructor takes, if not ``name``.
    :param resumable: may differ when a run is resumed (e.g. ``epochs``, ``device``).
    :param needs: rules that apply when the value differs from the default.
    :param check: extra validation: returns an error message for a bad value, or None.
    :param normalize: maps a valid value to its canonical form (e.g. sorted).

    Example:

    >>> from pyrovae.options import Option
    >>> scale = Option("toy_scale", 0.5, "σ of the toy guide.", above=0)
    >>> scale.flag, scale.type, scale.describe()
    ('--toy-scale', <class 'float'>, 'a positive number')
    >>> scale.parse(1)  # a value from a config dict or a TOML file, checked and converted
    1.0
    >>> scale.parse(-1)
    Traceback (most recent call last):
        ...
    pyrovae.options.ConfigError: toy_scale must be a positive number, got -1
    """

    name: str
    default: Any
    help: str
    type: type | None = None
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    low: float | None = None
    above: float | None = None
    below: float | None = None
    nullable: bool = False
    aliases: tuple[str, ...] = ()
    short: str | None = None
    arg: str | None = None
    resumable: bool = False
    needs: tuple[Needs, ...] = ()
    check: Callable[[Any], str | None] | None = None
    normalize: Callable[[Any], Any] | None = None

    def __post_init__(self):
        if self.type is None:
            if self.default is None:
                raise TypeError(f"option {self.name!r}: give a type when the default is None")
            object.__setattr__(self, "type", type(self.default))
        if self.type not in TYPES:
            raise TypeError(f"option {self.name!r}: type must be one of {TYPES}, got {self.type}")

    @property
    def flag(self) -> str:
        """The command-line spelling, ``--name-with-dashes``."""
        return "--" + self.name.replace("_", "-")

    @property
    def keyword(self) -> str:
        """The constructor keyword the value is passed as."""
        return self.arg or self.name

    def allowed(self) -> tuple[str, ...] | None:
        """The allowed values of a choice option (None for free values)."""
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def describe(self) -> str:
        """What the values must be, as the error messages say it."""
        if self.type is bool:
            return "true or false"
        if self.type is list:
            return f"a list of integers{_bounds(self)}"
        if self.type is int:
            if self.low == 1:
                return "a positive integer"
            if self.low == 0:
                return "a whole number >= 0"
            return f"an integer{_bounds(self)}"
        if self.type is float:
            if self.above == 0 and self.below is None:
                return "a positive number"
            if self.low is not None and self.below is not None:
                return f"a number in [{self.low:g}, {self.below:g})"
            if self.above is not None and self.below is not None:
                return f"a number in ({self.above:g}, {self.below:g})"
            return f"a number{_bounds(self)}"
        if self.allowed() is not None:
            return "one of " + ", ".join(repr(c) for c in self.allowed())
        return "a path" if self.type is Path else "a string"

    def parse(self, value: Any) -> Any:
        """The value, checked and in canonical form; :class:`ConfigError` names what is wrong."""
        if value is None and self.nullable:
            return None
        parsed = _convert(self, value)
        if parsed is None or not _in_range(self, parsed):
            raise ConfigError(f"{self.name} must be {self.describe()}, got {value!r}")
        allowed = self.allowed()
        if allowed is not None and parsed not in allowed:
            raise ConfigError(f"{self.name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.check is not None:
            problem = self.check(parsed)
            if problem:
                raise ConfigError(f"{self.name} {problem}, got {value!r}")
        return self.normalize(parsed) if self.normalize is not None else parsed

    def default_text(self) -> str:
        """The default as ``--help`` shows it."""
        value = self.default
        if value is None:
            return "none"
        if isinstance(value, list):
            return ",".join(map(str, value)) or "none"
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


def _bounds(option: Option) -> str:
    parts = []
    if option.low is not None:
        parts.append(f">= {option.low:g}")
    if option.above is not None:
        parts.append(f"> {option.above:g}")
    if option.below is not None:
        parts.append(f"< {option.below:g}")
    return " " + " and ".join(parts) if parts else ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _convert(option: Option, value: Any) -> Any:
    """``value`` as the option's type, or None when it is not of that type (no coercion
    from strings, booleans or fractional numbers: a TOML ``true`` is not a number)."""
    kind = option.type
    if kind is bool:
        return value if isinstance(value, bool) else None
    if kind is int:
        return value if _is_int(value) else None
    if kind is float:
        if _is_int(value) or isinstance(value, float):
            return float(value) if math.isfinite(value) else None
        return None
    if kind is list:
        if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
            return None
        return list(value)
    if kind is Path:
        return str(value) if isinstance(value, (str, Path)) else None
    return value if isinstance(value, str) else None


def _in_range(option: Option, value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    if option.type not in (int, float, list):
        return True
    for v in items:
        if option.low is not None and not v >= option.low:
            return False
        if option.above is not None and not v > option.above:
            return False
        if option.below is not None and not v < option.below:
            return False
    return True


def options_of(part: Any) -> tuple[Option, ...]:
    """The options a part declares (its ``options`` attribute; none if it has none)."""
    return tuple(getattr(part, "options", ()))


def needs_of(part: Any) -> tuple[Needs, ...]:
    """The rules a part declares (its ``needs`` attribute)."""
    return tuple(getattr(part, "needs", ()))
