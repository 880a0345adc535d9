"""An on-disk cache whose entries are written atomically, checksummed and locked.

An entry is a folder named by the hash of a *spec*: a JSON-able dictionary of
everything that determines its content. It is built in a temporary folder, a
``manifest.json`` with the SHA-256 of every file is written last, and only then is
the folder renamed into place. A reader accepts an entry only when its manifest is
there and every checksum matches, so a build killed half-way or a file altered
afterwards is never read back: it is reported and rebuilt. A file lock per entry
keeps two processes from building the same entry at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

from helpers.data import cache_root, sha256_of

MANIFEST = "manifest.json"


def key_of(spec: dict[str, Any]) -> str:
    """A short stable hash of a spec."""
    text = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def problem(entry: Path) -> str | None:
    """Why ``entry`` cannot be trusted, or ``None`` if it is complete and intact."""
    manifest = entry / MANIFEST
    if not manifest.is_file():
        return "no manifest (an interrupted build)"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as exc:
        return f"unreadable manifest ({exc})"
    for name, digest in files.items():
        path = entry / name
        if not path.is_file():
            return f"{name} is missing"
        if sha256_of(path) != digest:
            return f"{name} was altered (checksum mismatch)"
    return None


def entry_path(kind: str, spec: dict[str, Any], root: Path | None = None) -> Path:
    """Where the entry of ``spec`` lives (it may not exist)."""
    return (root or cache_root()) / kind / key_of(spec)


def lookup(kind: str, spec: dict[str, Any], root: Path | None = None) -> Path | None:
    """The entry of ``spec`` if it is complete and intact, else ``None``."""
    entry = entry_path(kind, spec, root)
    return entry if entry.is_dir() and problem(entry) is None else None


def get_or_build(kind: str, spec: dict[str, Any], build: Callable[[Path], None],
                 root: Path | None = None, accept: Callable[[Path], bool] | None = None) -> tuple[Path, bool]:
    """Return ``(entry, built)``: the intact entry of ``spec``, building it if needed.

    ``build(folder)`` writes the entry's files into an empty temporary folder. If it
    raises, or the process dies, nothing is left that a later call would accept. An intact
    entry that ``accept`` refuses (a stale one) is rebuilt too.
    """
    entry = entry_path(kind, spec, root)
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        if entry.is_dir():
            why = problem(entry)
            if why is None and (accept is None or accept(entry)):
                return entry, False
            print(f"cache: discarding {entry.name} ({why or 'stale'}); rebuilding it.", file=sys.stderr)
            shutil.rmtree(entry)
        for stale in entry.parent.glob(f".{entry.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed build; we hold the lock
        tmp = entry.parent / f".{entry.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            build(tmp)
            files = {p.name: sha256_of(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            manifest = {"spec": spec, "files": files, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
            os.replace(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return entry, True


def cached_json(kind: str, spec: dict[str, Any], compute: Callable[[], Any],
                root: Path | None = None) -> Any:
    """``compute()``'s JSON-able result, cached under ``spec`` (see :func:`supersede`)."""
    def build(folder: Path) -> None:
        (folder / "result.json").write_text(json.dumps(compute(), indent=1))

    entry, built = get_or_build(kind, spec, build, root)
    if built:
        supersede(entry, spec)
    return json.loads((entry / "result.json").read_text())


def cached_pickle(kind: str, spec: dict[str, Any], compute: Callable[[], Any], root: Path | None = None) -> Any:
    """``compute()``'s result (objects of this package), pickled under ``spec`` (see :func:`supersede`)."""
    def build(folder: Path) -> None:
        (folder / "result.pickle").write_bytes(pickle.dumps(compute(), protocol=pickle.HIGHEST_PROTOCOL))

    entry, built = get_or_build(kind, spec, build, root)
    if built:
        supersede(entry, spec)
    return pickle.loads((entry / "result.pickle").read_bytes())


def supersede(entry: Path, spec: dict[str, Any]) -> None:
    """Remove the entries beside ``entry`` that it replaces: those for the same ``spec["for"]`` (a result of
    older code or an older ledger), so that the cache keeps one entry per result. Without ``"for"``: none."""
    if "for" not in spec:
        return
    for other in entry.parent.iterdir():
        try:
            superseded = other != entry and json.loads((other / MANIFEST).read_text())["spec"].get("for") == spec["for"]
        except (OSError, ValueError, KeyError):
            continue
        if superseded:
            shutil.rmtree(other, ignore_errors=True)
            Path(f"{other}.lock").unlink(missing_ok=True)
