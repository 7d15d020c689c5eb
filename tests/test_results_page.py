"""Every number in the tables of the results page comes from a committed JSON (issue #23).

The rules are in ``tests/results_lint.py`` (run it as ``python tests/results_lint.py
docs/results.md README.md`` for the full report). The first tests lint the real pages; the
others check the linter itself on small pages written here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from results_lint import ROOT, lint, numbers_in

RESULTS = ROOT / "docs" / "results.md"
README = ROOT / "README.md"

#: Table numbers with no JSON behind them, each (page, column, number as shown), allowed to
#: fail the linter while they wait to be re-run into a JSON or removed. The test fails when an
#: entry is no longer needed, so this list only shrinks; keep it empty.
KNOWN_UNSOURCED: list[tuple[str, str, str]] = []

#: Prose numbers (the linter reads tables only) that issue #23 found with no record behind
#: them and that were removed rather than re-run: they must not come back without one.
REMOVED_UNSOURCED = [
    "−142.58",  # a plain-torch loop of pythae's recipe, validation ELBO at epoch 5
    "scores 91.18",  # a 200-sample re-evaluation of vae-pythae-ema-const
    "−105.9 at epoch 125",  # the L2-1000 run
    "by 1.56, 0.61 and 0.24",  # the batch-20 run
    "−91.24 at 230",  # the resumed IWAE-10 run
    "7.5×",  # the fused-Adam speed-up (the JSON gives 1.15× an epoch)
]


@pytest.fixture(scope="module")
def report():
    return lint([RESULTS, README])  # README's tables: results_lint.REFERENCE_HEADERS


def test_every_table_number_is_in_the_json_it_cites(report):
    known = {(page, column, number) for page, column, number in KNOWN_UNSOURCED}
    failures = {(p.page.name, p.column, p.number): p for p in report.problems}
    unexpected = [str(p) for key, p in failures.items() if key not in known]
    assert not unexpected, "\n".join(unexpected) + "\n\n" + report.text()
    stale = known - failures.keys()
    assert not stale, f"resolved, remove from KNOWN_UNSOURCED: {sorted(stale)}"


def test_the_linter_read_the_tables(report):
    checked = {r.table.line: r.checked for r in report.results if r.table.page == RESULTS}
    assert len(checked) >= 20 and sum(checked.values()) > 500


def test_numbers_removed_for_want_of_a_record_stay_removed():
    text = RESULTS.read_text() + README.read_text()
    back = [entry for entry in REMOVED_UNSOURCED if entry in text]
    assert not back, f"re-run these into a committed JSON before quoting them again: {back}"


# --------------------------------------------------------------------------- the linter


def _page(tmp_path: Path, body: str, data: dict | list | None = None) -> Path:
    (tmp_path / "r.json").write_text(json.dumps(data if data is not None else {}))
    page = tmp_path / "page.md"
    page.write_text(body)
    return page


def _lint(tmp_path, body, data=None):
    return lint([_page(tmp_path, body, data)], root=tmp_path)


TABLE = "| model | NLL | time |\n|---|---|---|\n| `vae-2` | {nll} | {time} |\n"


def test_numbers_in_a_cell():
    shown = [(n.text, n.value, n.tolerance, n.unit) for n in numbers_in("**−86.62 ± 0.24**")]
    assert shown == [("−86.62", -86.62, 0.005, None), ("0.24", 0.24, 0.005, None)]
    assert [n.value for n in numbers_in("784-400-40, L2, N_z, `iwae50`, 10^5")] == []
    assert [n.value for n in numbers_in("402 520 and 1,000,000")] == [402520, 1000000]
    assert [(n.value, n.unit) for n in numbers_in("98.0 min, 1.70 M, 8%")] == [
        (98.0, "min"),
        (1.70, "M"),
        (8.0, "%"),
    ]


@pytest.mark.parametrize(
    ("nll", "time", "ok"),
    [
        ("86.62", "2.0 min", True),  # 86.6213 rounds to 86.62; 120.4 s is 2.0 min
        ("−86.62", "120", True),  # negation; seconds as stored
        ("86.6", "2 min", True),  # a coarser precision
        ("86.63", "2.0 min", False),  # a wrong last digit
        ("86.62", "2.1 min", False),
    ],
)
def test_a_number_matches_at_the_precision_shown(tmp_path, nll, time, ok):
    data = {"rows": [{"test_nll": 86.6213, "train_wall_seconds": 120.4}]}
    body = "# R\n\nNumbers in [the JSON](r.json).\n\n" + TABLE.format(nll=nll, time=time)
    report = _lint(tmp_path, body, data)
    assert (not report.problems) is ok, report.text()
    if not ok:
        (problem,) = report.problems
        text = report.text()
        # the report names the line, the column, the number and the JSON looked in
        assert problem.line == 7 and problem.kind == "number"
        assert "page.md:7" in text and "column" in text and "r.json" in text


def test_a_table_without_a_json_fails_unless_marked(tmp_path):
    table = TABLE.format(nll="86.62", time="1")
    report = _lint(tmp_path, "# R\n\n" + table, {"x": 86.62})
    assert [p.kind for p in report.problems] == ["unsourced"]
    named = lint([_page(tmp_path, "# R\n\n" + table)], ["model | NLL | time"], tmp_path)
    assert not named.problems
    # the nearest link counts only within the section, and only above the table
    linked = "# A\n\n[json](r.json)\n\n# B\n\n" + table + "\n[json](r.json)\n"
    assert [p.kind for p in _lint(tmp_path, linked, {"x": 86.62}).problems] == ["unsourced"]
    marked = "# R\n\n<!-- reference: published numbers -->\n" + table
    assert not _lint(tmp_path, marked).problems
    sourced = "# R\n\n<!-- source: r.json -->\n\n" + table
    assert not _lint(tmp_path, sourced, {"x": 86.62, "t": 1}).problems


def test_markers(tmp_path):
    data = [{"test_nll": 86.62, "guide": 400, "model": 300}]
    body = (
        "# R\n\n<!-- source: r.json -->\n<!-- not-data: model -->\n"
        "<!-- reference-rows: (published) -->\n<!-- derived: time -->\n"
        "| model | NLL | time |\n|---|---|---|\n"
        "| 784-400-40 v3 | 86.62 | 700 |\n"  # 700 = guide + model
        "| someone (published) | 79.1 | 9 |\n"
    )
    assert not _lint(tmp_path, body, data).problems
    # derived only where declared: the same sum in an undeclared column fails
    body = "# R\n\n<!-- source: r.json -->\n| a | b |\n|---|---|\n| 86.62 | 700 |\n"
    assert [p.number for p in _lint(tmp_path, body, data).problems] == ["700"]
    # a marker must stand directly above a table, and name real columns
    stray = "# R\n\n<!-- source: r.json -->\nprose\n\n" + TABLE.format(nll="1", time="1")
    assert "marker" in [p.kind for p in _lint(tmp_path, stray, data).problems]
    typo = "# R\n\n<!-- source: r.json -->\n<!-- not-data: modle -->\n" + TABLE.format(
        nll="86.62", time="400"
    )
    assert [p.kind for p in _lint(tmp_path, typo, data).problems] == ["marker"]


def test_row_sources_and_missing_json(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"gap": 9.7}))
    body = (
        "# R\n\n<!-- row-source: b = other.json -->\n<!-- row-source: a = r.json -->\n"
        "| study | result |\n|---|---|\n| a | 1.5 |\n| b | 9.7 |\n"
    )
    assert not _lint(tmp_path, body, {"x": 1.5}).problems
    missing = "# R\n\n<!-- source: later.json -->\n" + TABLE.format(nll="1", time="1")
    (problem,) = _lint(tmp_path, missing).problems
    assert problem.kind == "missing-json" and "later.json" in problem.message


@pytest.mark.parametrize(
    ("command", "bad"),
    [
        ("```bash\npython x.py --data-dir ../shared/data\n```\n", False),
        ("```bash\nPYROVAE_DATA=$HOME/d python x.py\n```\n", False),
        ("```bash\npython x.py \\\n    --out /tmp/rd\n```\n", True),
        ("```bash\nPYROVAE_DATA=/data/mnist python x.py\n```\n", True),
        ("Run `pyrovae sweep --data-dir /work/shared/data` first.\n", True),
        ("Run `python x.py --data-dir /home/me/data` first.\n", True),
        ("The file `/tmp/x` is not a command.\n", False),
    ],
)
def test_commands_with_machine_paths(tmp_path, command, bad):
    report = _lint(tmp_path, "# R\n\n" + command)
    assert [p.kind for p in report.problems] == (["command"] if bad else [])
