"""Code read for what it does, not how it is written: the normalised form that the code hash hashes.

:func:`helpers.job.code_hash` hashes each function or class of the training core (and a configuration's
own layers and losses) by its name and its syntax tree without docstrings (:func:`normalise`): comments,
docstrings, blank lines, line breaks and quotes do not count; a changed constant, argument or statement
does. The functions are listed by name in sorted order (:func:`fingerprint`), not by file or line: a
function moved into another module keeps its hash.

:func:`dump` writes the tree the same on every Python the book supports: Python 3.12 added
``type_params=[]`` to every function and class, and 3.13's :func:`ast.dump` leaves out empty fields.
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
from pathlib import Path
from typing import Any, Iterable, Mapping

_WITH_DOCSTRING = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def strip_docstrings(tree: ast.AST) -> ast.AST:
    """``tree`` with the docstring of every module, class and function in it removed (in place)."""
    for node in ast.walk(tree):
        if isinstance(node, _WITH_DOCSTRING) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = node.body[1:]
    return tree


def dump(node: Any) -> str:
    """:func:`ast.dump` with fields named and no line numbers, without the fields that are ``None`` or empty."""
    if isinstance(node, ast.AST):
        literal = isinstance(node, (ast.Constant, ast.MatchSingleton))  # their value None is the constant None
        fields = [f"{name}={dump(value)}" for name, value in ast.iter_fields(node)
                  if value != [] and (value is not None or (literal and name == "value"))]
        return f"{type(node).__name__}({', '.join(fields)})"
    if isinstance(node, list):
        return f"[{', '.join(dump(item) for item in node)}]"
    return repr(node)


def normalise(source: str) -> str:
    """The normalised form of a function's, class's or module's source: its tree without docstrings."""
    return dump(strip_docstrings(ast.parse(textwrap.dedent(source))))


def _by_name(sources: Iterable[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, source in sources:
        if name in found:
            raise ValueError(f"two hashed objects are named {name!r}: the code hash names them by name")
        found[name] = normalise(source)
    return found


def read(objects: Iterable[Any]) -> dict[str, str]:
    """The normalised source of each function, class or module (read now, from its file), by its own name."""
    return _by_name((obj.__name__.rpartition(".")[2], inspect.getsource(obj)) for obj in objects)


def fingerprint(normalised: Mapping[str, str]) -> str:
    """One text of named normalised sources, sorted by name: what the code hash hashes of the code."""
    return json.dumps(sorted(normalised.items()))


def source_of(where: str, package: Path) -> str:
    """The source text of ``"module:name"`` (a top-level function or class) or ``"module"`` of the package
    folder ``package``, read from its file (nothing is imported)."""
    module, _, name = where.partition(":")
    text = (package / f"{module}.py").read_text()
    if not name:
        return text
    found = [node for node in ast.parse(text).body if getattr(node, "name", None) == name
             and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    if len(found) != 1:
        raise LookupError(f"{where}: helpers/{module}.py defines no top-level {name} (the code hash names it "
                          f"in helpers/job.py; say where it moved)")
    node = found[0]
    lines = text.splitlines(keepends=True)
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return "".join(lines[first - 1:node.end_lineno])


def read_named(places: Iterable[str], package: Path) -> dict[str, str]:
    """The normalised source of each ``"module:name"`` (read now, from the files), by name."""
    return _by_name((where.partition(":")[2] or where, source_of(where, package)) for where in places)
