"""The hash of everything a chapter's outputs depend on besides its own cells.

``make notebooks`` records it in each chapter notebook's metadata, and a test compares it with the current
one, so a notebook committed with outputs of older code or an older ledger fails (the reproducibility
chapter reads ``results/VERIFY.md``). Standard library only: ``python3 helpers/stamp.py`` runs before the
virtual environment exists.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def code_stamp(repo: Path = REPO, ledger: bool = True) -> str:
    """A short hash of requirements.txt, helpers/*.py and (``ledger``) results/MANIFEST.json and results/VERIFY.md."""
    digest = hashlib.sha256()
    files = [repo / "requirements.txt", *sorted((repo / "helpers").glob("*.py"))]
    if ledger:
        files += [repo / "results" / "MANIFEST.json", repo / "results" / "VERIFY.md"]
    for path in files:
        if path.is_file():
            digest.update(path.relative_to(repo).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


if __name__ == "__main__":
    print(code_stamp())
