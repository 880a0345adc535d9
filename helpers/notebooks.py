"""The committed chapter notebooks: what they show a reader and what they were executed with.

    python -m helpers.notebooks stamp chapters/*.ipynb   # after executing them (make notebooks)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from helpers.stamp import code_stamp

VISIBLE = ("image/png", "text/html", "text/markdown")
KEY = "usps_book"


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
    """What a notebook was executed with (empty if it was never stamped)."""
    return json.loads(path.read_text())["metadata"].get(KEY, {})


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "stamp":
        sys.exit(__doc__)
    for name in sys.argv[2:]:
        stamp(Path(name))
        print(f"stamped {name}")
