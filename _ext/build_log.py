"""A build log without messages that only look like trouble.

Sphinx 7.4 prints "Copying the source path ... will overwrite data, as a file already exists at
the destination path and the content does not match" when a file under ``_static/`` (or one the
pages offer for download, such as the demo's script) changed since the last build into the same
``_build/html``: the new copy replacing the old one is exactly what the build should do, and a
fresh clone never sees the message. It is left out of the log here, for the book's own files
only; Sphinx's other messages are untouched. (The chapters' kernels: see kernel_transport.py.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class _BookFileUpdated(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "subtype", None) != "copy_overwrite" or len(record.args or ()) < 2:
            return True
        source = str(record.args[0])
        return not source.startswith(str(ROOT / "_static")) and not source.startswith(str(ROOT / "benchmarks"))


def setup(app: Any) -> dict[str, Any]:
    logging.getLogger("sphinx.sphinx.util.osutil").addFilter(_BookFileUpdated())
    return {"parallel_read_safe": True, "parallel_write_safe": True}
