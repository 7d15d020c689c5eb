"""The results linter: every number in a page's tables comes from the JSON the table cites.

Run it on a page (``python tests/results_lint.py docs/results.md README.md``) for a readable
report; ``tests/test_results_page.py`` runs it on ``docs/results.md`` and ``README.md``.

**Which JSON a table cites.** In this order:

1. ``<!-- source: PATH [PATH ...] -->`` directly above the table (only blank lines or other
   markers between): the JSON files named, relative to the repository root. A number may
   come from any of them.
2. Otherwise the nearest Markdown link to a ``.json`` file (``[text](path.json)``, relative
   to the page) above the table in its own section (a section starts at any heading; links
   in code blocks and after the table do not count).
3. Otherwise the table cites nothing, and that is a failure, unless it is marked
   ``<!-- reference: WHY -->`` (a table of published numbers, options or messages, not of
   our measurements), or its header row is in :data:`REFERENCE_HEADERS` (for a page that
   carries no markers, such as the README).

**Other markers** (also directly above the table; column names are header cells as
written, separated by ``|``):

* ``<!-- not-data: COLUMN | COLUMN -->`` — columns that are labels, not measurements (a
  model's description, a schedule, the epochs in a configuration's name): not checked.
* ``<!-- reference-rows: TEXT -->`` — rows whose first cell contains ``TEXT`` hold
  published numbers (e.g. ``(published)``): not checked.
* ``<!-- row-source: TEXT = PATH [PATH ...] -->`` — rows whose first cell contains ``TEXT``
  cite these JSON files instead of the table's (a summary table whose rows come from
  different experiments); several such markers may stand above one table.
* ``<!-- derived: COLUMN | COLUMN -->`` — columns that may also show the sum, difference or
  ratio of two numbers of one JSON object (two numeric values of the same ``{...}``, such as
  ``{"guide": 852896, "model": 887369}`` or two medians side by side), for quantities the
  JSON does not store whole.

**When a number matches.** Every number in a checked cell (inline code, link targets,
images and HTML comments removed first; a number glued to a letter, ``_``, ``^`` or a
hyphen, as in ``L2``, ``N_z`` or ``784-400-40``, is part of a name and not a number) must
equal some number of the cited JSON (any depth; booleans and strings are not numbers)
*rounded to the precision the cell shows*: ``86.62`` matches 86.6213 but not 86.6261;
``757`` matches 757.4; ``1.9e-3`` matches 0.00187. Digit groups (``402 520``,
``1,000,000``) are one number. The documented derived forms, and only these:

* the negation (``−91.55`` matches 91.5512: NLL against log-likelihood, ELBO against loss);
* a unit conversion the cell's unit names: ``min`` (JSON seconds / 60), ``h`` (/ 3600),
  ``ms`` (seconds × 1000), ``%`` (a fraction × 100), ``M`` and ``k`` (counts / 10⁶, / 10³),
  ``GiB`` (MiB / 1024), ``MiB`` (bytes / 2²⁰) — the unmodified value always matches too.

* in a ``derived`` column only: ``a + b``, ``a − b`` or ``a / b`` of two numeric values of
  one JSON object (siblings, not numbers from different records), with the unit conversion.

A table that shows a ratio or a difference should cite a JSON that stores it
(``ratio_pyrovae_over_torch``, ``train_minus_test``, ...); ``derived`` is for the few that do
not. A wrong last digit can still match an unrelated number of a large JSON (in
``docs/results.md``, a number moved by a few units of its last digit matches some other number
of its JSON 10–25 % of the time): the rule catches numbers that come from nowhere, stale
tables and rounding slips, not every typo.

**Commands.** No command on the page may carry a machine-specific path (``/work/``,
``/home/``, ``/tmp/``, ``/Users/``, ``/root/``, ``PYROVAE_DATA=/...``, ``--data-dir /...``):
every line of a fenced code block, and every inline code span that starts with ``python``,
``pyrovae`` or ``PYROVAE_DATA=``.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: reference-only tables named by their header row, for pages that carry no markers
REFERENCE_HEADERS = [
    "name | what | split (train/valid/test) | files",  # README.md: the datasets
    "bad input | what pyrovae says | exit code",  # README.md: the error messages
]

MACHINE_PATH = re.compile(r"/work/|/home/|/tmp/|/Users/|/root/|PYROVAE_DATA=/|--data-dir[ =]+/")
COMMAND_START = re.compile(r"^(python\b|pyrovae\b|PYROVAE_DATA=)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^#{1,6}\s")
_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_JSON_LINK = re.compile(r"\]\(([^)\s]+?\.json)(?:#[^)]*)?\)")
_MARKER = re.compile(
    r"^\s*<!--\s*(source|row-source|reference|not-data|reference-rows|derived)\s*:(.*?)-->\s*$"
)
_CODE_SPAN = re.compile(r"`+[^`]*`+")
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_COMMENT = re.compile(r"<!--.*?-->")
_TAG = re.compile(r"<[^>]+>")
_NUMBER = re.compile(
    r"(?P<sign>[−\-+]?)"
    r"(?P<int>\d{1,3}(?:[ \u202f\u2009,]\d{3})+(?!\d)|\d+)"
    r"(?:\.(?P<frac>\d+))?"
    r"(?:[eE](?P<exp>[−\-+]?\d+))?"
)
#: characters that make a following number part of a name (L2, N_z, x^2, 784-400-40, v1.2)
_GLUE = set("_^.-/") | {"\u2010", "\u2011"}
#: a unit after a number, and the factors by which a JSON value may be scaled to match it
UNITS = {
    "min": (1 / 60,),
    "h": (1 / 3600,),
    "ms": (1000.0,),
    "%": (100.0,),
    "M": (1e-6,),
    "k": (1e-3,),
    "GiB": (1 / 1024,),
    "MiB": (2.0**-20,),
}
_UNIT = re.compile(r"\s?(min|ms|MiB|GiB|h|%|M|k)(?![A-Za-z])")


@dataclass
class Number:
    """A number as a table cell shows it."""

    text: str
    value: float
    tolerance: float  # half a unit of the last digit shown
    unit: str | None = None


@dataclass
class Table:
    page: Path
    line: int  # of the header row, 1-based
    header: list[str]
    rows: list[tuple[int, list[str]]]
    section: str
    sources: list[Path] = field(default_factory=list)
    cited_by: str = ""  # "marker, line N" or "link, line N"
    reference: str | None = None
    not_data: list[str] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)
    reference_rows: list[str] = field(default_factory=list)
    row_sources: list[tuple[str, list[Path]]] = field(default_factory=list)

    @property
    def name(self) -> str:
        head = " | ".join(self.header)
        return head if len(head) < 70 else head[:67] + "..."


@dataclass
class Problem:
    """One failure: where it is, and what is wrong."""

    page: Path
    line: int
    kind: str  # "number", "unsourced", "marker", "command", "missing-json"
    message: str
    table: str = ""
    column: str = ""
    number: str = ""

    def key(self) -> tuple[str, str, str]:
        """What names this failure independently of line numbers: (column, number, table)."""
        return (self.column, self.number, self.table)

    def __str__(self) -> str:
        return f"{self.page.name}:{self.line}: {self.message}"


# --------------------------------------------------------------------------- numbers


def numbers_in(cell: str) -> list[Number]:
    """The numbers of a table cell (see the module's docstring for what counts)."""
    text = _COMMENT.sub(" ", cell)
    text = _IMAGE.sub(" ", text)
    text = _CODE_SPAN.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _TAG.sub(" ", text)
    text = text.replace("*", "")
    found = []
    for m in _NUMBER.finditer(text):
        start = m.start("int")
        before = text[start - 1] if start > 0 else " "
        sign = m.group("sign")
        if sign:
            outer = text[m.start() - 1] if m.start() > 0 else " "
            if outer.isalnum() or outer in _GLUE:  # 784-400: a hyphen inside a name
                continue
        elif before.isalnum() or before in _GLUE:
            continue
        after = text[m.end() : m.end() + 1]
        if after in ("-", "_", "\u2010", "\u2011") and text[m.end() + 1 : m.end() + 2].isalnum():
            continue  # 784-400-40, 10_000: the first part of a name
        if after and (after == "^" or "\u2070" <= after <= "\u209f" or after in "¹²³"):
            continue  # a power's base (10^5, 10⁶): not a measured value
        unit_match = _UNIT.match(text, m.end())
        if after.isalpha() and not unit_match:
            continue  # 2D, 3rd: part of a word
        digits = re.sub(r"[ \u202f\u2009,]", "", m.group("int"))
        frac = m.group("frac") or ""
        exp = int((m.group("exp") or "0").replace("−", "-"))
        value = float(f"{digits}.{frac}" if frac else digits) * 10.0**exp
        if sign in ("−", "-"):
            value = -value
        tolerance = 0.5 * 10.0 ** (exp - len(frac))
        found.append(
            Number(m.group(0), value, tolerance, unit_match.group(1) if unit_match else None)
        )
    return found


def json_numbers(obj) -> Iterator[float]:
    """Every number in a JSON document, at any depth (not booleans, not strings)."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from json_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from json_numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and math.isfinite(obj):
        yield float(obj)


def sibling_pairs(obj) -> Iterator[float]:
    """``a + b``, ``a - b`` and ``a / b`` for every two numeric values of one JSON object."""
    if isinstance(obj, dict):
        own = [v for v in obj.values() if not isinstance(v, (dict, list))]
        own = list(json_numbers(own))
        for i, a in enumerate(own):
            for j, b in enumerate(own):
                if i != j:
                    yield a + b
                    yield a - b
                    if b != 0:
                        yield a / b
        children = obj.values()
    elif isinstance(obj, list):
        children = obj
    else:
        return
    for child in children:
        yield from sibling_pairs(child)


class NumberIndex:
    """The numbers of some JSON files, sorted, for look-ups at a given precision."""

    def __init__(self, values: Iterable[float]):
        self.values = sorted(set(values) | {-v for v in values})

    def __len__(self) -> int:
        return len(self.values)

    def _near(self, target: float, tolerance: float) -> float | None:
        i = bisect.bisect_left(self.values, target - tolerance)
        if i < len(self.values) and self.values[i] <= target + tolerance:
            return self.values[i]
        return None

    def match(self, number: Number) -> tuple[float, float] | None:
        """``(json value, scale)`` of a match of ``number`` (negation included), or None."""
        slack = number.tolerance * (1 + 1e-9) + 1e-12
        for scale in (1.0, *UNITS.get(number.unit, ())):
            hit = self._near(number.value / scale, slack / scale)
            if hit is not None:
                return hit, scale
        return None

    def closest(self, number: Number) -> float | None:
        """The JSON value nearest to the cell's number (unscaled), for the report."""
        if not self.values:
            return None
        i = bisect.bisect_left(self.values, number.value)
        near = self.values[max(0, i - 1) : i + 1]
        return min(near, key=lambda v: abs(v - number.value))


# --------------------------------------------------------------------------- pages


def _cells(line: str) -> list[str]:
    text = line.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|") and not text.endswith("\\|"):
        text = text[:-1]
    cells, current, in_code = [], "", False
    for ch in text:
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code and not current.endswith("\\"):
            cells.append(current.strip())
            current = ""
        else:
            current += ch
    cells.append(current.strip())
    return cells


@dataclass
class Page:
    """A Markdown page's tables and commands, with the JSON each table cites."""

    path: Path
    tables: list[Table] = field(default_factory=list)
    commands: list[tuple[int, str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def parse_page(path: Path, root: Path = ROOT) -> Page:
    """Read ``path``: its tables (with their sources and markers) and its commands."""
    page = Page(path)
    lines = path.read_text().splitlines()
    section, link, markers, in_code = "(top)", None, [], False
    i = 0
    while i < len(lines):
        line, number = lines[i], i + 1
        if _FENCE.match(line):
            in_code = not in_code
            i += 1
            continue
        if in_code:
            if line.strip():
                page.commands.append((number, line.strip()))
            i += 1
            continue
        for span in _CODE_SPAN.findall(line):
            command = span.strip("`").strip()
            if COMMAND_START.match(command):
                page.commands.append((number, command))
        if _HEADING.match(line):
            section, link = line.lstrip("#").strip(), None
            _orphans(page, markers)
            markers = []
            i += 1
            continue
        marker = _MARKER.match(line)
        if marker:
            markers.append((number, marker.group(1), marker.group(2).strip()))
            i += 1
            continue
        is_table = (
            line.lstrip().startswith("|") and i + 1 < len(lines) and _SEPARATOR.match(lines[i + 1])
        )
        if is_table:
            table = Table(path, number, _cells(line), [], section)
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                table.rows.append((i + 1, _cells(lines[i])))
                i += 1
            _attach(page, table, markers, link, root)
            page.tables.append(table)
            markers = []
            continue
        if line.strip():
            _orphans(page, markers)
            markers = []
            for target in _JSON_LINK.findall(line):
                link = (number, (path.parent / target).resolve())
        i += 1
    _orphans(page, markers)
    return page


def _orphans(page: Page, markers) -> None:
    for number, kind, _ in markers:
        page.problems.append(
            Problem(page.path, number, "marker", f"<!-- {kind}: --> is not directly above a table")
        )


def _attach(page: Page, table: Table, markers, link, root: Path) -> None:
    for number, kind, value in markers:
        if kind == "source":
            table.sources += [(root / p).resolve() for p in value.split()]
            table.cited_by = f"marker, line {number}"
        elif kind == "reference":
            table.reference = value or "reference"
        elif kind == "reference-rows":
            table.reference_rows.append(value)
        elif kind == "row-source":
            text, _, paths = value.rpartition("=")
            table.row_sources.append((text.strip(), [(root / p).resolve() for p in paths.split()]))
        else:  # not-data, derived: column names
            for column in (c.strip() for c in value.split("|")):
                if column not in table.header:
                    page.problems.append(
                        Problem(
                            page.path,
                            number,
                            "marker",
                            f"{kind} column {column!r} is not a header of the table "
                            f"at line {table.line} ({table.name})",
                        )
                    )
                getattr(table, kind.replace("-", "_")).append(column)
    if not table.sources and link is not None:
        table.sources = [link[1]]
        table.cited_by = f"nearest link, line {link[0]}"


def _rel(path: Path, root: Path = ROOT) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- checks


@dataclass
class TableResult:
    table: Table
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    note: str = ""


def _indexes(table: Table, sources: list[Path], result: TableResult, root: Path, cache: dict):
    """The plain and the derived :class:`NumberIndex` of ``sources``, or None when one of
    them does not exist (reported once per table)."""
    key = tuple(sources)
    if key in cache:
        return cache[key]
    values, derived = [], []
    for source in sources:
        if not source.is_file():
            result.problems.append(
                Problem(
                    table.page,
                    table.line,
                    "missing-json",
                    f"table ({table.name}) cites {_rel(source, root)}, which does not exist",
                    table=table.name,
                )
            )
            cache[key] = None
            return None
        document = json.loads(source.read_text())
        values += json_numbers(document)
        if table.derived:
            derived += sibling_pairs(document)
    cache[key] = (NumberIndex(values), NumberIndex(derived))
    return cache[key]


def check_table(
    table: Table, reference_headers: Iterable[str] = (), root: Path = ROOT
) -> TableResult:
    """Check every number of ``table`` against the JSON it cites."""
    result = TableResult(table)
    if table.reference is not None or " | ".join(table.header) in set(reference_headers):
        result.note = f"reference-only ({table.reference or 'REFERENCE_HEADERS'})"
        return result
    if not table.sources and not table.row_sources:
        result.problems.append(
            Problem(
                table.page,
                table.line,
                "unsourced",
                f"table ({table.name}) in section {table.section!r} cites no JSON: add a link "
                "to its JSON above it, a <!-- source: PATH --> marker, or <!-- reference: WHY -->",
                table=table.name,
            )
        )
        return result
    cited = [f"{', '.join(_rel(s, root) for s in table.sources)} ({table.cited_by})"]
    cited += [f"rows {t!r}: {', '.join(_rel(s, root) for s in p)}" for t, p in table.row_sources]
    result.note = "; ".join(c for c in cited if not c.startswith(" ("))
    skip = {table.header.index(c) for c in table.not_data if c in table.header}
    derived_columns = {table.header.index(c) for c in table.derived if c in table.header}
    cache: dict = {}
    for line, cells in table.rows:
        first = cells[0] if cells else ""
        if any(text in first for text in table.reference_rows):
            continue
        sources = next((p for t, p in table.row_sources if t in first), table.sources)
        if not sources:
            result.problems.append(
                Problem(
                    table.page,
                    line,
                    "unsourced",
                    f"row {first[:40]!r} of table ({table.name}) cites no JSON (no table "
                    "source and no <!-- row-source: --> for it)",
                    table=table.name,
                )
            )
            continue
        found = _indexes(table, sources, result, root, cache)
        if found is None:
            continue
        index, derived_index = found
        for col, cell in enumerate(cells):
            if col in skip:
                continue
            column = table.header[col] if col < len(table.header) else f"column {col + 1}"
            for number in numbers_in(cell):
                result.checked += 1
                if index.match(number) is not None:
                    continue
                if col in derived_columns and derived_index.match(number) is not None:
                    continue
                closest = index.closest(number)
                near = f"; closest JSON value {closest:.6g}" if closest is not None else ""
                result.problems.append(
                    Problem(
                        table.page,
                        line,
                        "number",
                        f"column {column!r}, row {first[:40]!r}: {number.text}"
                        f"{' ' + number.unit if number.unit else ''} is not in "
                        f"{', '.join(s.name for s in sources)}{near}",
                        table=table.name,
                        column=column,
                        number=number.text,
                    )
                )
    return result


def check_commands(page: Page) -> list[Problem]:
    """Commands (code blocks, inline ``python``/``pyrovae`` spans) with machine paths."""
    return [
        Problem(
            page.path,
            line,
            "command",
            f"machine-specific path {MACHINE_PATH.search(text).group(0)!r} in command: {text}",
            number=text,
        )
        for line, text in page.commands
        if MACHINE_PATH.search(text)
    ]


@dataclass
class Report:
    pages: list[Page]
    results: list[TableResult]
    problems: list[Problem]

    def text(self, root: Path = ROOT) -> str:
        """A readable report: every table with the JSON it was checked against, then the
        failures, each with its line, column, number and the JSON looked in."""
        out = []
        for page in self.pages:
            out.append(f"== {_rel(page.path, root)}: {len(page.tables)} tables")
            for r in (r for r in self.results if r.table.page == page.path):
                status = "FAIL" if r.problems else "ok  "
                what = r.note or "no JSON"
                out.append(
                    f"  {status} line {r.table.line:4d} [{r.checked:3d} numbers] "
                    f"{r.table.name}\n         <- {what}"
                )
                out += [f"       {p}" for p in r.problems]
            commands = [p for p in self.problems if p.kind == "command" and p.page == page.path]
            markers = [p for p in self.problems if p.kind == "marker" and p.page == page.path]
            out.append(f"  commands: {len(page.commands)} checked, {len(commands)} failing")
            out += [f"       {p}" for p in commands + markers]
        checked = sum(r.checked for r in self.results)
        out.append(
            f"== {len(self.results)} tables, {checked} numbers checked, "
            f"{len(self.problems)} problems"
        )
        return "\n".join(out)


def lint(
    pages: Iterable[str | Path],
    reference_headers: Iterable[str] = REFERENCE_HEADERS,
    root: Path = ROOT,
) -> Report:
    """Lint ``pages``; ``reference_headers`` names (by header row, cells joined with
    ``" | "``) tables that are reference-only on pages that cannot carry a marker."""
    reference_headers = list(reference_headers)
    parsed, results, problems = [], [], []
    for path in pages:
        page = parse_page(Path(path).resolve(), root)
        parsed.append(page)
        problems += page.problems
        for table in page.tables:
            result = check_table(table, reference_headers, root)
            results.append(result)
            problems += result.problems
        problems += check_commands(page)
    return Report(parsed, results, problems)


def main(argv: list[str] | None = None) -> int:
    """``python tests/results_lint.py PAGE...``: print the report; exit 1 on any problem."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python tests/results_lint.py PAGE.md [PAGE.md ...]", file=sys.stderr)
        return 2
    report = lint(args)
    print(report.text())
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
