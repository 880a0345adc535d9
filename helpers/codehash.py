"""Code read for what it does, not how it is written: the normalised form that the code hash hashes.

:func:`helpers.runs.code_hash` names the code that determines a trained model. It hashes each
function or class of the training core (and a configuration's own layers and losses) by its name
and its *normalised* source (:func:`normalise`): the syntax tree with every docstring removed
(the first statement of a module, class or function when it is a string), so that comments,
docstrings, blank lines, line breaks and quotes do not count, and a change to what the code does
(a constant, an argument, a statement) does. The functions are listed by name in sorted order
(:func:`fingerprint`), not by file or line: a function moved into another module keeps its hash.

The tree is written out by :func:`dump`, which is :func:`ast.dump` (fields named, no line
numbers) with the fields that are empty or ``None`` left out, so that one function gives the
same text on every Python the book supports: Python 3.12 added ``type_params=[]`` to every
function and class, and 3.13's :func:`ast.dump` leaves out empty fields on its own.
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
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
    """The tree as :func:`ast.dump` writes it with ``annotate_fields=True, include_attributes=False``,
    but without the fields that are ``None`` or empty (the same text on Python 3.10 to 3.13)."""
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


def name_of(obj: Any) -> str:
    """The name a function, class or module is hashed under: its own name, without its module."""
    return obj.__name__.rpartition(".")[2]


def read(objects: Iterable[Any]) -> dict[str, str]:
    """The normalised source of each function, class or module, by name (read now, from its file)."""
    found: dict[str, str] = {}
    for obj in objects:
        name = name_of(obj)
        if name in found:
            raise ValueError(f"two hashed objects are named {name!r}: the code hash names them by name")
        found[name] = normalise(inspect.getsource(obj))
    return found


def fingerprint(normalised: Mapping[str, str]) -> str:
    """One text of named normalised sources, sorted by name: what the code hash hashes of the code."""
    return json.dumps(sorted(normalised.items()))
