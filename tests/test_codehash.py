"""The code hash follows what the code does, not how it is written (:mod:`helpers.codehash`).

Edits are made to scratch copies of ``helpers/train.py`` and ``helpers/data.py`` (the real files
are never touched); the copies' functions replace the real ones in the hash
(:func:`helpers.job.code_hash` of the paper's configuration). A docstring, a comment, a line
break inside a call or a function moved into another module leave the hash alone; a changed
constant, argument or line of ``fit`` changes it. The last test edits ``fit`` in a copy of the
package and runs ``python -m helpers check`` on the committed ledger there.
"""

from __future__ import annotations

import ast
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable

import pytest

import helpers.job
from helpers import codehash
from helpers.config import BASELINE
from tests.conftest import REPO, need_real_data

FILES = ("train.py", "data.py")  # the modules that hold the training core's functions (and arrays)


# --------------------------------------------------------------------- the normal form


def test_docstrings_comments_and_layout_do_not_count() -> None:
    plain = "def f(x, y=2):\n    return g(x, y, z=[1, 2])\n"
    same = '''
        def f(x,
              y=2):  # a comment
            """A docstring.

            Two paragraphs."""
            # another comment
            return g(
                x, y,
                z=[1,
                   2],   # trailing
            )
        '''
    assert codehash.normalise(same) == codehash.normalise(plain)
    for other in ("def f(x, y=3):\n    return g(x, y, z=[1, 2])\n",
                  "def f(x, y=2):\n    return g(x, y, z=[1, 2, 3])\n",
                  "def f(x, y=2):\n    return g(x, y, w=[1, 2])\n",
                  "def f(x, y=2):\n    return g(y, x, z=[1, 2])\n",
                  "def f(x, y=2):\n    return g(x, y, z=[1.0, 2])\n",
                  "def f(x, y=2):\n    return g(x, y, z=[True, 2])\n",
                  "def f(x, y=2):\n    g(x, y, z=[1, 2])\n    return None\n",
                  "def h(x, y=2):\n    return g(x, y, z=[1, 2])\n"):
        assert codehash.normalise(other) != codehash.normalise(plain), other


def test_docstrings_are_removed_at_every_level_and_other_strings_kept() -> None:
    with_docs = '''
        """Module."""
        class A:
            """Class."""
            def m(self):
                """Method."""
                def inner():
                    """Inner."""
                    return 1
                return inner
        '''
    without = "class A:\n    def m(self):\n        def inner():\n            return 1\n        return inner\n"
    assert codehash.normalise(with_docs) == codehash.normalise(without)
    assert "Method" not in codehash.normalise(with_docs)
    # a string that is not the first statement is code (and a constant None is not an empty field)
    assert codehash.normalise("def f():\n    x = 1\n    'kept'\n") != codehash.normalise("def f():\n    x = 1\n")
    assert codehash.normalise("x = None\n") != codehash.normalise("x = 0\n")
    assert codehash.normalise("def f():\n    return\n") != codehash.normalise("def f():\n    return None\n")


def test_the_fingerprint_names_functions_not_files_and_ignores_their_order() -> None:
    a, b = codehash.normalise("def a():\n    return 1\n"), codehash.normalise("def b():\n    return 2\n")
    assert codehash.fingerprint({"a": a, "b": b}) == codehash.fingerprint({"b": b, "a": a})
    assert codehash.fingerprint({"a": a, "b": b}) != codehash.fingerprint({"a": b, "b": a})


def test_the_normal_form_is_the_same_on_every_python_found(tmp_path: Path) -> None:
    """Python 3.12 added fields to the tree and 3.13 changed what ast.dump writes: the normal form of
    the hashed code must not depend on which Python computes it (a reader's is not the ledger's)."""
    sources = {where.partition(":")[2] or where: codehash.source_of(where, helpers.job.PACKAGE)
               for where in dict.fromkeys(helpers.job.TRAINING_CORE + sum(helpers.job.OPTION_CODE.values(), ()))}
    (tmp_path / "sources.json").write_text(json.dumps(sources))
    script = textwrap.dedent(f"""
        import importlib.util, json
        spec = importlib.util.spec_from_file_location("codehash", {str(REPO / 'helpers' / 'codehash.py')!r})
        codehash = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(codehash)
        sources = json.load(open({str(tmp_path / 'sources.json')!r}))
        print(codehash.fingerprint({{name: codehash.normalise(text) for name, text in sources.items()}}))
        """)
    here = codehash.fingerprint({name: codehash.normalise(text) for name, text in sources.items()})
    assert here == codehash.fingerprint({name: helpers.job._CODE[name] for name in sources})
    found = {}
    candidates = [shutil.which(f"python3.{minor}") for minor in range(10, 15)]
    candidates += glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3"))
    for python in filter(None, dict.fromkeys(candidates)):
        done = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True)
        if done.returncode != 0 or done.stdout.strip() in found or int(done.stdout.split(".")[1]) < 10:
            continue  # not a Python, one already asked, or older than the book supports (pyproject.toml)
        version = done.stdout.strip()
        found[version] = subprocess.run([python, "-c", script], capture_output=True, text=True,
                                        check=True).stdout.strip()
    others = {v for v in found if v != "%d.%d" % sys.version_info[:2]}
    if not others:
        pytest.skip("no other Python version is installed here to compare with")
    assert all(text == here for text in found.values()), sorted(v for v, t in found.items() if t != here)


# ------------------------------------------------- edits to scratch copies of the real files


def _node(text: str, name: str) -> ast.FunctionDef | ast.ClassDef:
    found = [n for n in ast.parse(text).body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name]
    assert len(found) == 1, f"{name} is not a top-level definition of the scratch file"
    return found[0]


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _replace(text: str, line: int, start: int, end: int, new: str) -> str:
    """``text`` with columns ``start`` to ``end`` of ``line`` replaced by ``new`` (the tree's
    positions: lines from 1, columns in UTF-8 bytes)."""
    lines = _lines(text)
    raw = lines[line - 1].encode()
    lines[line - 1] = (raw[:start] + new.encode() + raw[end:]).decode()
    return "".join(lines)


def _insert(text: str, line: int, col: int, new: str) -> str:
    return _replace(text, line, col, col, new)


def _body(fn: ast.FunctionDef | ast.ClassDef) -> list[ast.stmt]:
    """The statements of a definition after its docstring."""
    first = fn.body[0]
    doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    return fn.body[1:] if doc else fn.body


def docstring_sentence(text: str, name: str) -> str:
    doc = _node(text, name).body[0]
    assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant), f"{name} has no docstring"
    closing = 3 if _lines(text)[doc.end_lineno - 1].encode()[doc.end_col_offset - 3:doc.end_col_offset] \
        in (b'"""', b"'''") else 1
    return _insert(text, doc.end_lineno, doc.end_col_offset - closing, " One more sentence, for readers.")


def new_docstring(text: str, name: str) -> str:
    """A docstring for a definition without one (else its docstring gets a second paragraph)."""
    fn = _node(text, name)
    first = _body(fn)[0]
    if first is not fn.body[0]:
        return docstring_sentence(text, name)
    return _insert(text, first.lineno, 0, " " * first.col_offset + '"""A docstring added later."""\n')


def comment(text: str, name: str) -> str:
    first = _body(_node(text, name))[0]
    indent = " " * first.col_offset
    return _insert(text, first.lineno, 0, f"{indent}# A comment: why this line is here.\n{indent}\n")


def line_break_in_a_call(text: str, name: str) -> str:
    """A line break before the second argument of the first one-line call with two or more."""
    for node in ast.walk(_node(text, name)):
        if isinstance(node, ast.Call):
            args = sorted([*node.args, *node.keywords], key=lambda a: (a.lineno, a.col_offset))
            if len(args) >= 2 and node.lineno == node.end_lineno:
                return _insert(text, args[1].lineno, args[1].col_offset, "\n" + " " * (node.col_offset + 8))
    raise AssertionError(f"{name} has no one-line call with two arguments")


def drop(text: str, name: str) -> tuple[str, str]:
    """``text`` without the definition ``name``, and that definition's lines."""
    fn = _node(text, name)
    first = min([fn.lineno, *(d.lineno for d in fn.decorator_list)])
    lines = _lines(text)
    return "".join(lines[:first - 1] + lines[fn.end_lineno:]), "".join(lines[first - 1:fn.end_lineno])


def changed_constant(text: str, name: str) -> str:
    for node in ast.walk(ast.Module(body=_body(_node(text, name)), type_ignores=[])):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return _replace(text, node.lineno, node.col_offset, node.end_col_offset, str(node.value + 1))
    raise AssertionError(f"{name} has no integer constant")


def extra_argument(text: str, name: str) -> str:
    for node in ast.walk(_node(text, name)):
        if isinstance(node, ast.Call) and node.keywords:
            return _insert(text, node.end_lineno, node.end_col_offset - 1, ", an_extra_argument=1")
    raise AssertionError(f"{name} has no call with a keyword argument")


def dropped_line(text: str, name: str) -> str:
    first = _body(_node(text, name))[0]
    lines = _lines(text)
    return "".join(lines[:first.lineno - 1] + lines[first.end_lineno:])


@pytest.fixture
def hash_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], str]:
    """The code hash of the paper's configuration with the hashed functions read from scratch files:
    ``{"train.py": text, "data.py": text}`` (each one a new module in its own folder)."""
    count = iter(range(1000))

    def compute(files: dict[str, str]) -> str:
        folder = tmp_path / f"variant{next(count)}"
        folder.mkdir()
        found: dict[str, str] = {}
        for name, text in files.items():
            path = folder / name
            path.write_text(text)
            module_name = f"scratch_{folder.name}_{path.stem}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            monkeypatch.setitem(sys.modules, module_name, module)
            spec.loader.exec_module(module)
            objects = [getattr(module, n) for n in helpers.job._CODE if getattr(getattr(module, n, None), "__module__", None)
                       == module_name]
            for key, value in codehash.read(objects).items():
                assert key not in found, f"{key} is defined twice in the scratch files"
                found[key] = value
        core = {where.partition(":")[2] for where in helpers.job.TRAINING_CORE if where.startswith(("train:", "data:"))}
        assert core <= set(found), f"the scratch files lack {core - set(found)}"
        helpers.job.code_hash.cache_clear()
        with monkeypatch.context() as patch:
            for key, value in found.items():
                patch.setitem(helpers.job._CODE, key, value)
            result = helpers.job.code_hash(BASELINE)
        helpers.job.code_hash.cache_clear()
        return result

    return compute


@pytest.fixture(scope="module")
def originals() -> dict[str, str]:
    return {name: (REPO / "helpers" / name).read_text() for name in FILES}


def test_scratch_copies_hash_like_the_real_files(hash_of: Callable[[dict[str, str]], str],
                                                 originals: dict[str, str]) -> None:
    assert hash_of(originals) == helpers.job.code_hash(BASELINE)


@pytest.mark.parametrize("edit", [docstring_sentence, new_docstring, comment, line_break_in_a_call])
@pytest.mark.parametrize("function", ["fit", "_predict", "set_seed", "parse", "fold_split"])
def test_writing_changes_leave_the_hash_alone(edit: Callable[[str, str], str], function: str,
                                              hash_of: Callable[[dict[str, str]], str],
                                              originals: dict[str, str]) -> None:
    if edit is line_break_in_a_call and function == "set_seed":
        pytest.skip(f"{function} has no call with two arguments")
    file = "train.py" if function in ("fit", "_predict", "set_seed") else "data.py"
    if edit is docstring_sentence and not ast.get_docstring(_node(originals[file], function)):
        pytest.skip(f"{function} has no docstring (new_docstring gives it one)")
    edited = edit(originals[file], function)
    assert edited != originals[file]
    ast.parse(edited)
    assert hash_of({**originals, file: edited}) == helpers.job.code_hash(BASELINE)


def test_every_writing_change_at_once_and_a_move_leave_the_hash_alone(
        hash_of: Callable[[dict[str, str]], str], originals: dict[str, str]) -> None:
    train = originals["train.py"]
    for edit in (docstring_sentence, comment, line_break_in_a_call):
        train = edit(train, "fit")
    train, moved = drop(train, "_predict")  # into data.py, at its end
    data, moved_back = drop(originals["data.py"], "fold_split")  # into train.py
    files = {"train.py": train + "\n\n" + moved_back, "data.py": data + "\n\n" + moved}
    assert hash_of(files) == helpers.job.code_hash(BASELINE)


@pytest.mark.parametrize("edit", [changed_constant, extra_argument, dropped_line])
@pytest.mark.parametrize("function", ["fit", "_predict", "fold_split"])
def test_code_changes_change_the_hash(edit: Callable[[str, str], str], function: str,
                                      hash_of: Callable[[dict[str, str]], str], originals: dict[str, str]) -> None:
    file = "data.py" if function == "fold_split" else "train.py"
    if function == "_predict" and edit is dropped_line:
        pytest.skip("_predict is one line")
    edited = edit(originals[file], function)
    ast.parse(edited)
    assert hash_of({**originals, file: edited}) != helpers.job.code_hash(BASELINE)


def test_the_network_still_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The serialised network is part of the hash: another network, another hash (see also
    tests/test_trust.py, which adds a layer behind build_model's back)."""
    base = helpers.job.code_hash(BASELINE)
    assert helpers.job.code_hash(BASELINE.with_(dense_units=BASELINE.dense_units + 1)) != base
    assert base == helpers.job.code_hash(BASELINE)


# ---------------------------------------------------- the ledger, in a copy of the package


CHECK = """
import sys
import helpers
print("helpers from", helpers.__file__)
from helpers import ledger_cli
sys.exit(ledger_cli.check())
"""


def test_a_docstring_and_a_comment_in_fit_keep_the_ledger_current(tmp_path: Path) -> None:
    """`python -m helpers check` in a copy of helpers/ and results/ whose train.fit has a new docstring
    sentence and a comment: the copy is the one imported, and the ledger is intact and current."""
    need_real_data()
    copy = tmp_path / "scratch-hash"
    shutil.copytree(REPO / "helpers", copy / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "results", copy / "results", ignore=shutil.ignore_patterns("*.lock", ".*"))
    train = copy / "helpers" / "train.py"
    text = comment(docstring_sentence(train.read_text(), "fit"), "fit")
    assert text != train.read_text()
    train.write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("USPS_LEDGER_DIR", "PYTHONPATH")}
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=copy, capture_output=True, text=True, timeout=300,
                          env={**env, "PYTHONPATH": str(copy), "USPS_TRAINING": "forbid"})
    assert f"helpers from {copy / 'helpers' / '__init__.py'}" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 0 and "none stale" in done.stdout, done.stdout + done.stderr
