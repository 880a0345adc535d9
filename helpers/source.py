"""The book's own code on its pages: a function's real source, or the lines one configuration uses.

The chapters show the Keras code that builds and trains the network, read from ``helpers/`` with :mod:`inspect`
when the chapter runs, so that a page cannot drift from the code that trained the ledger's runs (the style of
*Dive into Deep Learning*: the code, then where it is defined).

A function such as :func:`helpers.model.build_model` serves every chapter, each option behind an ``if`` on the
configuration. :func:`sliced` keeps the lines one configuration uses: an ``if`` whose test it decides drops the
branch not taken, statements after a taken ``return`` or ``raise`` go, and so do assignments of the function's
own body whose name nothing kept reads (when their value calls nothing). Every line of a slice is a line of the
function's source, in order, with nothing rewritten.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path
from typing import Any, Callable, Mapping

from IPython.display import Markdown

from helpers import book

REPO = Path(__file__).resolve().parents[1]


def source(obj: Callable[..., Any]) -> str:
    """The source of a function or class, as :func:`inspect.getsource` reads it (dedented)."""
    return textwrap.dedent(inspect.getsource(obj))


def _decide(test: ast.expr, namespace: Mapping[str, Any]) -> bool | None:
    """The truth of an ``if`` test in ``namespace``; None if it reads a name it lacks, calls something or fails."""
    names = {node.id for node in ast.walk(test) if isinstance(node, ast.Name)}
    if not names <= set(namespace) or any(isinstance(node, ast.Call) for node in ast.walk(test)):
        return None
    try:
        return bool(eval(compile(ast.Expression(test), "<test>", "eval"), {"__builtins__": {}}, dict(namespace)))
    except Exception:  # an undecidable test keeps both branches
        return None


class _Slicer:
    def __init__(self, code: str, namespace: Mapping[str, Any]) -> None:
        self.lines = code.splitlines()
        self.namespace = namespace
        self.dropped: set[int] = set()  # 1-based line numbers

    def drop(self, statements: list[ast.stmt]) -> None:
        """Drop the lines of ``statements`` and the comment lines right above each."""
        for statement in statements:
            first = statement.lineno
            while first > 1 and self.lines[first - 2].strip().startswith("#"):
                first -= 1
            self.dropped.update(range(first, (statement.end_lineno or statement.lineno) + 1))

    def block(self, statements: list[ast.stmt]) -> bool:
        """Slice a block of statements; True when the kept block always ends in return or raise."""
        for i, statement in enumerate(statements):
            ends = False
            if isinstance(statement, ast.If):
                taken = _decide(statement.test, self.namespace)
                if taken is True:
                    if statement.orelse:  # from the `else:` or `elif` line to the end of the statement
                        self.dropped.update(range(statement.body[-1].end_lineno + 1, statement.end_lineno + 1))
                    ends = self.block(statement.body)
                elif taken is False and not statement.orelse:
                    self.drop([statement])
                else:  # undecided, or an `else` whose lines would need re-indenting: keep both branches
                    self.block(statement.body)
                    self.block(statement.orelse)
            elif isinstance(statement, (ast.Return, ast.Raise)):
                ends = True
            else:
                for field in ("body", "orelse", "finalbody"):
                    inner = getattr(statement, field, None)
                    if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                        self.block(inner)
            if ends:
                self.drop(statements[i + 1:])
                return True
        return False

    def kept(self, node: ast.AST) -> bool:
        return getattr(node, "lineno", 0) not in self.dropped

    def unused_assignments(self, function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.stmt]:
        """Kept assignments of the body (not in a block) to a name nothing kept reads, whose value calls nothing."""
        read = {node.id for node in ast.walk(function) if isinstance(node, ast.Name) and self.kept(node)
                and isinstance(node.ctx, ast.Load)}
        read |= {node.target.id for node in ast.walk(function)  # `x += 1` reads x
                 if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and self.kept(node)}
        unused = []
        for node in function.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if (self.kept(node) and isinstance(target, ast.Name) and target.id not in read
                    and not any(isinstance(n, ast.Call) for n in ast.walk(value))):
                unused.append(node)
        return unused


def sliced(obj: Callable[..., Any], namespace: Mapping[str, Any]) -> str:
    """The lines of function ``obj`` that the values in ``namespace`` (what its ``if`` tests read, e.g.
    ``{"config": config}``) use; the docstring goes too: it describes the whole function, not the slice."""
    code = source(obj)
    tree = ast.parse(code)
    function = tree.body[0]
    if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise TypeError(f"{obj!r} is not a function")
    slicer = _Slicer(code, namespace)
    body = function.body
    if ast.get_docstring(function, clean=False) is not None:
        slicer.drop(body[:1])
        body = body[1:]
    slicer.block(body)
    while unused := slicer.unused_assignments(function):
        slicer.drop(unused)
    lines = [line for number, line in enumerate(slicer.lines, 1) if number not in slicer.dropped]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"
    try:
        ast.parse(text)
    except SyntaxError as exc:  # e.g. a block whose every statement was cut away
        raise ValueError(f"the slice of {obj.__name__} is not valid Python ({exc.msg}, line {exc.lineno}):\n{text}")
    return text


def excerpt(code: str, first: str, last: str | None = None) -> str:
    """The lines of ``code`` from the first that starts with ``first`` (indent aside) to the end, or to the next
    line that starts with ``last``, dedented."""
    lines = code.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith(first)), None)
    if start is None:
        raise ValueError(f"no line starts with {first!r}")
    stop = len(lines)
    if last is not None:
        stop = next((i + 1 for i, line in enumerate(lines[start:], start) if line.strip().startswith(last)), None)
        if stop is None:
            raise ValueError(f"no line after {first!r} starts with {last!r}")
    return textwrap.dedent("\n".join(lines[start:stop])).strip("\n") + "\n"


def listing(code: str, obj: Callable[..., Any], note: str = "") -> Markdown:
    """A code block of ``code`` (the source of ``obj``, a slice or an excerpt of it), then where ``obj`` is
    defined, with a link to its lines in the repository."""
    lines, first = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj) or "").resolve().relative_to(REPO).as_posix()
    found = book.repository()
    url, branch = found.get("url", ""), found.get("branch", "main")
    where = f"[`{path}`]({url}/blob/{branch}/{path}#L{first}-L{first + len(lines) - 1})" if url else f"`{path}`"
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", code)), default=0))
    return Markdown(f"{fence}python\n{code.rstrip()}\n{fence}\n\n"
                    f"*Defined in* {where} (`{obj.__name__}`){note}")
