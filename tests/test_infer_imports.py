"""The modules of ``pyrovae.infer`` import one another without cycles, imports inside
functions included, and one module computes per-point log-weights."""

from __future__ import annotations

import ast
from pathlib import Path

import pyrovae.infer

INFER = Path(pyrovae.infer.__file__).parent
PACKAGE = "pyrovae.infer"


def _infer_imports(path: Path) -> set[str]:
    """The ``pyrovae.infer`` submodules that ``path`` imports anywhere (functions included)."""
    modules = {p.stem for p in INFER.glob("*.py") if p.stem != "__init__"}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith(PACKAGE + "."):
                head = name[len(PACKAGE) + 1 :].split(".")[0]
                if head in modules:
                    found.add(head)
    return found - {path.stem}


def _graph() -> dict[str, set[str]]:
    return {p.stem: _infer_imports(p) for p in INFER.glob("*.py") if p.stem != "__init__"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_inside_infer():
    graph = _graph()
    assert {"evaluation", "full_vb", "log_weights", "fast_elbo"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_full_vb_handles_weights_and_evaluation_uses_it():
    graph = _graph()
    assert "full_vb" in graph["evaluation"]
    assert not graph["full_vb"], graph["full_vb"]  # it knows q(θ), not the estimators


def test_one_definition_of_each_estimator():
    from pyrovae.infer import evaluation, full_vb

    for name in ("elbo_terms", "iw_log_likelihood", "log_likelihood_draws"):
        assert hasattr(evaluation, name) and not hasattr(full_vb, name), name
    defining = {
        p.stem
        for p in INFER.glob("*.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.FunctionDef)
        and node.name in {"elbo_terms", "iw_log_likelihood", "fast_log_weights"}
    }
    assert defining == {"evaluation", "log_weights"}, defining
