"""The API reference (docs/api) builds without a warning, and every example in it runs.

Both builds run ``sphinx-build`` in a subprocess, as a user would. They share one doctree
folder, so the doctest build reuses what the html build read instead of importing and parsing
every module again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "docs" / "api"
PAGES = re.findall(r"^   (\w+)$", (SOURCE / "index.rst").read_text(), flags=re.M)


@pytest.fixture(scope="module")
def doctrees(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("doctrees")


def sphinx(builder: str, out: Path, doctrees: Path) -> str:
    """Run ``sphinx-build -W --keep-going -b BUILDER``; fail with its output unless it succeeds."""
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", builder]
    command += ["-d", str(doctrees), str(SOURCE), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"sphinx-build -b {builder} failed ({done.returncode}):\n{output}")
    return output


def test_pages_are_listed():
    assert PAGES == [
        "models",
        "guides",
        "infer",
        "distributions",
        "data",
        "networks",
        "training",
        "diagnostics",
        "registry",
    ]


def test_html_builds_without_warnings(tmp_path, doctrees):
    output = sphinx("html", tmp_path, doctrees)
    assert "warning" not in output.lower(), output
    for page in ["index", *PAGES]:
        assert (tmp_path / f"{page}.html").stat().st_size > 0, page
    # every part of the public API has its section, e.g. the VAE and its guides
    models = (tmp_path / "models.html").read_text()
    assert 'id="pyrovae.models.vae.VAE"' in models


def test_examples_run_as_doctests(tmp_path, doctrees):
    output = sphinx("doctest", tmp_path, doctrees)
    summary = (tmp_path / "output.txt").read_text()
    ran = int(re.search(r"^\s*(\d+) tests$", summary, flags=re.M).group(1))
    assert ran > 0, output
    assert re.search(r"^\s*0 failures in tests$", summary, flags=re.M), summary
    for page in PAGES:  # every page has examples, and they passed
        block = re.search(rf"Document: {page}\n-+\n(.*?)(?:\n\n|\Z)", summary, flags=re.S)
        assert block and "passed all tests" in block.group(1), f"{page}:\n{summary}"
