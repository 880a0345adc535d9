"""Small glue between the helpers and the chapters' text."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def plain(value: Any) -> Any:
    """NumPy scalars as Python numbers, so that glued values format as numbers."""
    return value.item() if isinstance(value, np.generic) else value


def glue_all(values: Mapping[str, Any]) -> None:
    """Glue every value under its name for ``{glue:text}`` roles, without displaying it."""
    from myst_nb import glue

    for name, value in values.items():
        glue(name, plain(value), display=False)
