"""The committed chapter notebooks: what they show a reader and what they were executed with.

    python -m helpers.notebooks execute chapters/*.ipynb  # run each as JupyterLab's "Run all" does
    python -m helpers.notebooks stamp chapters/*.ipynb    # after executing them (make notebooks)
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from helpers.stamp import code_stamp

VISIBLE = ("image/png", "text/html", "text/markdown")
KEY = "usps_book"
#: An inline expression of the prose, ``{eval}`n["name:format"]```.
EVAL = re.compile(r"\{eval\}`([^`\n]+)`")
#: Where jupyterlab-myst keeps the values of a Markdown cell's expressions (and restores them from).
EXPRESSIONS = "user_expressions"


class ExpressionError(RuntimeError):
    """An expression of a chapter's prose that its kernel could not evaluate where it stands."""


def execute(path: Path) -> None:
    """Run a chapter notebook in place as JupyterLab's "Run all" does: the code cells in order and, at each
    Markdown cell, the prose's ``{eval}`` expressions in the same kernel, their values stored in its metadata as
    jupyterlab-myst does (so the committed notebook shows the numbers before anyone runs it). An expression the
    cells above do not define stops it with the chapter, cell and expression."""
    import nbformat
    from nbclient import NotebookClient
    from traitlets.config import Config

    notebook = nbformat.read(path, as_version=4)
    config = Config()
    config.KernelManager.transport_encryption = "auto"  # CurveZMQ keys: no "TCP without encryption" warning
    client = NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(path.parent)}},
                            config=config)
    with client.setup_kernel():
        client.reset_execution_trackers()
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type == "code":
                client.execute_cell(cell, index)
            elif cell.cell_type == "markdown":
                cell.metadata.pop(EXPRESSIONS, None)
                expressions = list(dict.fromkeys(EVAL.findall(cell.source)))
                if expressions:
                    cell.metadata[EXPRESSIONS] = _evaluate(client, expressions, f"{path.name}, cell {index}")
    nbformat.write(notebook, path)


def _evaluate(client: Any, expressions: list[str], where: str) -> list[dict[str, Any]]:
    """Evaluate ``expressions`` as jupyterlab-myst does (one request with ``user_expressions``), in its format."""
    message = client.kc.execute("", silent=True, store_history=False,
                                user_expressions={str(i): e for i, e in enumerate(expressions)})
    reply = client.wait_for_reply(message)["content"]
    results = [reply["user_expressions"][str(i)] for i in range(len(expressions))]
    failed = [f"{e}: {r.get('ename')}: {r.get('evalue')}" for e, r in zip(expressions, results) if r["status"] != "ok"]
    if failed:
        raise ExpressionError(f"{where}: the text quotes numbers the cells above it do not define "
                              f"(add them with n.add(...) before this paragraph): " + "; ".join(failed))
    return [{"expression": e, "result": r} for e, r in zip(expressions, results)]


def visible_outputs(cell: dict[str, Any]) -> int:
    """How many outputs of a code cell Jupyter, Colab or GitHub would show as a figure or table."""
    return sum(1 for out in cell.get("outputs", [])
               if out.get("output_type") in ("display_data", "execute_result")
               and any(kind in out.get("data", {}) for kind in VISIBLE))


def stamp(path: Path) -> None:
    """Record the code stamp and the profile a notebook was executed with in its metadata."""
    notebook = json.loads(path.read_text())
    notebook["metadata"][KEY] = {"code_stamp": code_stamp(), "profile": os.environ.get("USPS_BOOK_PROFILE", "full")}
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


def stamp_of(path: Path) -> dict[str, str]:
    """What a notebook was executed with (empty if never stamped)."""
    return json.loads(path.read_text())["metadata"].get(KEY, {})


if __name__ == "__main__":
    COMMANDS = {"execute": (execute, "executed"), "stamp": (stamp, "stamped")}
    if len(sys.argv) < 3 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    command, done = COMMANDS[sys.argv[1]]
    for name in sys.argv[2:]:
        command(Path(name))
        print(f"{done} {name}")
