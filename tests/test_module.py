"""The module's own shape: it reads top to bottom as its docstring says."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

import pytest

from support import ROOT

SOURCE = (ROOT / "timercheck.py").read_text()


def bound_in(function: ast.AST) -> set[str]:
    """The names a function binds for itself: its parameters, assignments,
    loop and `with` targets, caught exceptions, inner definitions."""
    names = set()
    for node in ast.walk(function):
        if isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif node is not function and isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        ):
            names.add(node.name)
    return names


def used(node: ast.AST, local: frozenset[str] = frozenset()) -> Iterator[str]:
    """The global names `node` reads, at definition or at run time, outside
    type annotations."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        arguments = node.args
        evaluated_here = arguments.defaults + [
            default for default in arguments.kw_defaults if default
        ]
        evaluated_here += getattr(node, "decorator_list", [])
        for expression in evaluated_here:
            yield from used(expression, local)
        inner = local | bound_in(node)
        for statement in node.body if isinstance(node.body, list) else [node.body]:
            yield from used(statement, inner)
    elif isinstance(node, ast.AnnAssign):
        if node.value is not None:
            yield from used(node.value, local)
    elif isinstance(node, ast.Name):
        if isinstance(node.ctx, ast.Load) and node.id not in local:
            yield node.id
    else:
        for child in ast.iter_child_nodes(node):
            yield from used(child, local)


def defined(statement: ast.stmt) -> set[str]:
    if isinstance(statement, ast.FunctionDef | ast.ClassDef):
        return {statement.name}
    if isinstance(statement, ast.Assign | ast.AnnAssign):
        targets = (
            statement.targets
            if isinstance(statement, ast.Assign)
            else [statement.target]
        )
        return {
            node.id
            for target in targets
            for node in ast.walk(target)
            if isinstance(node, ast.Name)
        }
    return set()


def forward_uses(source: str) -> list[str]:
    """Each top-level definition's use of a name defined below it."""
    body = ast.parse(source).body
    first = {}
    for n, statement in enumerate(body):
        for name in defined(statement):
            first.setdefault(name, n)
    return [
        f"line {statement.lineno} uses {name},"
        f" defined at line {body[first[name]].lineno}"
        for n, statement in enumerate(body)
        for name in sorted(set(used(statement)))
        if first.get(name, -1) > n
    ]


def test_no_top_level_definition_uses_a_name_defined_below_it() -> None:
    assert forward_uses(SOURCE) == []


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("def a():\n    return b()\ndef b():\n    return 1\n", ["line 1 uses b"]),
        ("class A(B):\n    pass\nclass B:\n    pass\n", ["line 1 uses B"]),
        ("X = f()\ndef f():\n    return 1\n", ["line 1 uses f"]),
        ("@d\ndef f():\n    pass\ndef d(g):\n    return g\n", ["line 2 uses d"]),
        ("def f(x=Y):\n    return x\nY = 1\n", ["line 1 uses Y"]),
        ("def f(a: A) -> A:\n    return a\nclass A:\n    pass\n", []),
        ("def f():\n    b = 1\n    return b\nb = 2\n", []),
        ("def f():\n    return [b for b in ()]\nb = 2\n", []),
        ("class C:\n    x: B\nclass B:\n    pass\n", []),
    ],
)
def test_the_reading_order_check_tells_a_forward_use_from_an_annotation(
    source: str, found: list[str]
) -> None:
    assert [use.split(",")[0] for use in forward_uses(source)] == found


def test_the_docstring_names_the_sections_in_the_order_they_appear() -> None:
    docstring = ast.get_docstring(ast.parse(SOURCE)) or ""
    listed = re.findall(r"^  (\w[\w ]*?)  +\S", docstring, re.M)
    headers = re.findall(r"^# -- ([^:]+?)(?::.*)? --$", SOURCE, re.M)
    in_order = [h for n, h in enumerate(headers) if n == 0 or headers[n - 1] != h]
    assert listed == in_order
