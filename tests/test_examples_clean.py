"""Examples and studies write under ``runs/`` by default and leave a checkout clean (issue #20).

The committed results under ``docs/results/`` are rewritten only by an explicit ``--out`` (and,
for the studies, ``--figures``). :func:`clean_checkout` makes what a fresh clone has of the
examples: a new git repository holding this tree's ``.gitignore`` and ``examples/`` (the
working-tree versions, so uncommitted edits are what is tested), committed; the scripts then
run there with their default outputs, the current directory set to it, and
:func:`stays_clean` checks that ``git status --porcelain`` is unchanged and that everything
they wrote is git-ignored under ``runs/``. ``pyrovae`` itself is the installed package.

The quick modes of the Fyffe examples and of the studies run once, in ``test_examples_fyffe.py``
and ``test_studies.py``, inside such a checkout (their budgets are not spent twice); this file
holds the helpers, the checks of the checkout itself, the one quick mode run nowhere else
(``rate_distortion_sweep.py``) and a static check of every example's ``--out``-like defaults
(which also covers ``full_vb_mnist.py`` and ``pixelcnn_vamp.py``, which have no quick mode).
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import assert_png

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: written by importing a script, git-ignored everywhere
BYTECODE = "__pycache__/"


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``git -C repo args`` with no user or system configuration (no global excludes, no
    signing) and no outer repository from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    identity = ["-c", "user.name=pyrovae tests", "-c", "user.email=tests@pyrovae.invalid"]
    command = ["git", "-C", str(repo), *identity, "-c", "commit.gpgsign=false", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=check)


def status(repo: Path) -> list[str]:
    """``git status --porcelain`` of ``repo``, one entry per file."""
    return git(repo, "status", "--porcelain", "--untracked-files=all").stdout.splitlines()


def ignored(repo: Path) -> list[str]:
    """The git-ignored paths of ``repo`` (folders whole, as ``git status --ignored`` gives)."""
    lines = git(repo, "status", "--porcelain", "--ignored").stdout.splitlines()
    return [line[3:] for line in lines if line.startswith("!! ")]


def clean_checkout(dest: Path) -> Path:
    """A git repository at ``dest`` with this tree's ``.gitignore`` and ``examples/``, committed:
    its ``git status --porcelain`` is empty, as in a fresh clone."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / ".gitignore", dest / ".gitignore")
    shutil.copytree(EXAMPLES, dest / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "a clean checkout of the examples")
    assert status(dest) == [] and ignored(dest) == []
    return dest


@contextlib.contextmanager
def stays_clean(repo: Path) -> Iterator[None]:
    """Assert that the block leaves ``git status --porcelain`` of ``repo`` as it was and that
    whatever it wrote is git-ignored under ``runs/`` (or is bytecode)."""
    before = status(repo)
    yield
    after = status(repo)
    assert after == before, (
        f"written outside the git-ignored runs/: {sorted(set(after) ^ set(before))}"
    )
    stray = [p for p in ignored(repo) if not p.startswith("runs/") and BYTECODE not in p]
    assert not stray, f"git-ignored output outside runs/: {stray}"


def load_script(path: Path, name: str | None = None):
    """Import the script at ``path`` as a module (its ``main`` not run)."""
    name = name or f"_script_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checkout_is_clean_and_ignores_runs_only(tmp_path):
    repo = clean_checkout(tmp_path / "checkout")
    assert git(repo, "check-ignore", "-q", "runs/fyffe/x.json", check=False).returncode == 0
    for committed in ("docs/results/fyffe/x.json", "docs/results/studies/x.png"):
        assert git(repo, "check-ignore", "-q", committed, check=False).returncode == 1
    # the guard fails on a write outside runs/, tracked or not
    (repo / "runs" / "a").mkdir(parents=True)
    (repo / "runs" / "a" / "ok.json").write_text("{}")
    with stays_clean(repo):
        pass
    for target in (repo / "docs" / "results" / "x.json", repo / "examples" / "README.md"):
        with pytest.raises(AssertionError), stays_clean(repo):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("changed\n")


def test_rate_distortion_sweep_quick_writes_under_runs(tmp_path, monkeypatch):
    repo = clean_checkout(tmp_path / "checkout")
    monkeypatch.chdir(repo)
    with stays_clean(repo):
        load_script(repo / "examples" / "rate_distortion_sweep.py").main(["--quick"])
    out = repo / "runs" / "toy-rd"
    assert_png(out / "toy_rate_distortion.png")
    report = json.loads((out / "toy_rate_distortion.json").read_text())
    assert len(report["series"]["table decoder"]) == 3


def _default_paths(path: Path) -> list[str]:
    """The string defaults of every ``add_argument`` call in the script at ``path`` that look
    like paths (``"a/b"`` or ``Path("a/b")``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"):
            continue
        for keyword in node.keywords:
            value = keyword.value
            if isinstance(value, ast.Call) and value.args:  # Path("...")
                value = value.args[0]
            text = value.value if isinstance(value, ast.Constant) else None
            if keyword.arg == "default" and isinstance(text, str) and "/" in text:
                found.append(text)
    return found


@pytest.mark.parametrize(
    "path", sorted(EXAMPLES.glob("**/*.py")), ids=lambda p: str(p.relative_to(EXAMPLES))
)
def test_default_outputs_are_under_runs(path):
    for default in _default_paths(path):
        assert default.startswith("runs/"), f"{path.name}: default {default!r}"


def test_study_defaults_and_explicit_paths(tmp_path):
    repo = clean_checkout(tmp_path / "checkout")
    common = load_script(repo / "examples" / "studies" / "_common.py", "_common_under_test")
    with stays_clean(repo):
        args = common.parse_args("s", "a study", [])
    runs = repo / "runs" / "studies"
    assert (args.out, args.figures, args.runs_dir) == (runs / "s.json", runs, runs)
    # the committed results are named explicitly; --figures alone follows --out
    out = tmp_path / "docs" / "results" / "studies" / "s.json"
    assert common.parse_args("s", "", ["--out", str(out)]).figures == out.parent
    figures = tmp_path / "figures"
    args = common.parse_args("s", "", ["--out", str(out), "--figures", str(figures)])
    assert (args.out, args.figures) == (out, figures)
