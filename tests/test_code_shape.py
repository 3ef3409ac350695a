"""The shape the code keeps (checked on the source, so it cannot drift): short functions, no
module reaching into another's private names, no print() in model code."""

from __future__ import annotations

import ast

from conftest import ROOT

SRC = ROOT / "src"


def _trees():
    for path in sorted(SRC.rglob("*.py")):
        yield path.relative_to(ROOT), ast.parse(path.read_text())


def test_no_function_in_src_is_over_60_lines():
    long = [f"{path}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for path, tree in _trees() for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert not long, "split these into named steps: " + "; ".join(long)


def test_nothing_imports_another_modules_private_names():
    bad = []
    for path, tree in _trees():
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith(("attnlab", "hydra_plugins")):
                bad += [f"{path}:{n.lineno} {n.module}.{a.name}" for a in n.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not bad, bad


def test_no_print_in_layers_or_models():
    offenders = []
    for path, tree in _trees():
        if "layers" in path.parts or path.name == "models.py":
            offenders += [f"{path}:{n.lineno}" for n in ast.walk(tree)
                          if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
    assert not offenders, offenders
