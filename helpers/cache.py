"""An on-disk cache whose entries are written atomically, checksummed and locked.

An entry is a folder named by the hash of a *spec*, a JSON-able dictionary of everything that
determines its content. It is built in a temporary folder, a ``manifest.json`` with the SHA-256 of
every file is written last, and only then is the folder renamed into place. A reader accepts an entry
only when its manifest is there and every checksum matches, so a build killed half-way or a file
altered afterwards is never read back: it is reported and rebuilt. A file lock per entry keeps two
processes from building the same entry at once.
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

from filelock import FileLock, Timeout

from helpers.data import cache_root, sha256_of

MANIFEST = "manifest.json"


def key_of(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


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
    return (root or cache_root()) / kind / key_of(spec)


def lookup(kind: str, spec: dict[str, Any], root: Path | None = None) -> Path | None:
    """The entry of ``spec`` if it is complete and intact."""
    entry = entry_path(kind, spec, root)
    return entry if entry.is_dir() and problem(entry) is None else None


def get_or_build(kind: str, spec: dict[str, Any], build: Callable[[Path], None],
                 root: Path | None = None, accept: Callable[[Path], bool] | None = None) -> tuple[Path, bool]:
    """``(entry, built)``: the intact entry of ``spec``, built if needed (also when ``accept`` refuses it: stale).
    ``build(folder)`` writes the entry's files into an empty temporary folder. If it raises, or the
    process dies, nothing is left that a later call would accept."""
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


class _NotKept(Exception):
    """A build's result that is right for this process but must not be kept (see :func:`cached_json`)."""

    def __init__(self, value: Any) -> None:
        super().__init__("not kept")
        self.value = value


def cached_json(kind: str, spec: dict[str, Any], compute: Callable[[], Any], root: Path | None = None, *,
                still_valid: Callable[[], bool] | None = None) -> Any:
    """``compute()``'s JSON-able result, cached under ``spec``.

    ``still_valid()`` is asked once ``compute()`` has run: when it says no (what the spec names changed
    meanwhile, e.g. the code under a long-lived process), the result is returned and not kept.
    """
    return _cached(kind, spec, compute, root, still_valid, None, "result.json",
                   lambda value: json.dumps(value, indent=1).encode(), json.loads)


def cached_pickle(kind: str, spec: dict[str, Any], compute: Callable[[], Any], *,
                  still_valid: Callable[[], bool] | None = None, keep: int | None = None) -> Any:
    """``compute()``'s result (objects of this package), pickled under ``spec`` (as :func:`cached_json`);
    after a build, only the ``keep`` newest entries of ``kind`` are kept (:func:`prune`)."""
    return _cached(kind, spec, compute, None, still_valid, keep, "result.pickle",
                   lambda value: pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), pickle.loads)


def _cached(kind: str, spec: dict[str, Any], compute: Callable[[], Any], root: Path | None,
            still_valid: Callable[[], bool] | None, keep: int | None, name: str,
            dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]) -> Any:
    def build(folder: Path) -> None:
        value = compute()
        if still_valid is not None and not still_valid():
            raise _NotKept(value)
        (folder / name).write_bytes(dumps(value))

    for _ in range(3):
        try:
            entry, built = get_or_build(kind, spec, build, root)
        except _NotKept as result:
            return result.value
        if built and keep is not None:
            prune(entry.parent, keep)
        try:
            with FileLock(f"{entry}.lock"):  # read where no prune removes it
                return loads((entry / name).read_bytes())
        except FileNotFoundError:  # pruned by another process between the build and the read: again
            continue
    raise RuntimeError(f"cache: the entry of {kind} {key_of(spec)} was removed three times while being read")


def prune(folder: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently built entries in ``folder`` (one kind). Each goes under its
    lock, taken without waiting: an entry another process is building or reading stays for a later prune."""
    def built(entry: Path) -> float:
        try:
            return entry.stat().st_mtime
        except OSError:  # removed meanwhile
            return 0.0

    found = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=built,
                   reverse=True)
    for old in found[keep:]:
        try:
            with FileLock(f"{old}.lock", timeout=0):
                shutil.rmtree(old, ignore_errors=True)
        except Timeout:
            continue
