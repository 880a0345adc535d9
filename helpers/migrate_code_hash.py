"""The one migration of the ledger's code hashes from the text hash to the normalised hash, with its proof.

Until this migration :func:`helpers.runs.code_hash` hashed the text of the training core
(``inspect.getsource``, comments and docstrings included; :func:`legacy_code_hash`), so one
sentence added to a docstring made every ledger entry stale. It now hashes the code's syntax tree
without docstrings (:mod:`helpers.codehash`). The entries were trained by the same code, so they
are not retrained: for every entry, :func:`migrate` computes the text hash of the current code for
the entry's configuration and requires it to equal the hash the entry stores (the proof that the
entry is current), then writes the new hash in its place (``record.json``'s ``code``, the one
field that staleness, ``make results`` and ``make retrain`` read), the entry's own manifest and
``results/MANIFEST.json`` as :mod:`helpers.runs` writes them. Nothing is written unless every
entry's hash matched; an entry that already holds the new hash is counted and left alone.

    USPS_DATA_DIR=... .venv/bin/python -m helpers.migrate_code_hash          # migrate and check
    USPS_DATA_DIR=... .venv/bin/python -m helpers.migrate_code_hash --dry-run

:func:`legacy_code_hash` proves this one migration and is used by nothing else.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from helpers import cache, ledger, runs
from helpers.config import Config


def legacy_code_hash(config: Config) -> str:
    """The code hash as it was before the migration: the source text of the training core, the
    serialised network, then the source text of the book's own code that ``config`` uses."""
    objects = runs.hashed_code(config)
    core, own = objects[:len(runs.TRAINING_CORE)], objects[len(runs.TRAINING_CORE):]
    assert core == runs.TRAINING_CORE
    text = ("".join(inspect.getsource(obj) for obj in core) + runs.serialised_network(config)
            + "".join(inspect.getsource(obj) for obj in own))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _record_text(rec: dict) -> str:
    return json.dumps(rec, indent=1)  # as runs.entry_files writes record.json


def _manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=1, sort_keys=True, default=str)  # as cache.get_or_build writes it


@dataclass
class Outcome:
    """What :func:`migrate` found and did."""

    entries: int = 0
    matched: int = 0  # the stored hash equals the text hash of the current code
    already: int = 0  # the stored hash is already the new one
    written: int = 0
    hashes: dict[str, str] = field(default_factory=dict)  # old hash -> new hash
    problems: list[str] = field(default_factory=list)


def migrate(folder: Path | None = None, *, write: bool = True) -> Outcome:
    """Check every entry's stored hash against :func:`legacy_code_hash` and write :func:`runs.code_hash`
    in its place (nothing is written when any entry fails the check, or with ``write=False``)."""
    folder = folder or runs.root()
    out = Outcome()
    problems = ledger.verify_manifest(folder)
    plan: list[tuple[Path, dict, str]] = []
    for entry in runs.entries(folder):
        out.entries += 1
        text = (entry / "record.json").read_text()
        rec = json.loads(text)
        job = runs._job_of(rec)
        if (why := cache.problem(entry)) is not None:
            problems.append(f"{entry.name}: {why}")
        if job.key() != entry.name:
            problems.append(f"{entry.name}: its record names another run ({job.key()})")
        if _record_text(rec) != text or _manifest_text(json.loads((entry / cache.MANIFEST).read_text())) \
                != (entry / cache.MANIFEST).read_text():
            problems.append(f"{entry.name}: its files are not written as this migration would rewrite them")
        new = runs.code_hash(job.config)
        if rec["code"] == new:
            out.already += 1
            continue
        old = legacy_code_hash(job.config)
        if rec["code"] != old:
            problems.append(f"{entry.name}: stores code {rec['code']}, the current code's text hash is {old}")
            continue
        if out.hashes.setdefault(old, new) != new:
            problems.append(f"{entry.name}: text hash {old} gives two new hashes ({out.hashes[old]}, {new})")
            continue
        out.matched += 1
        plan.append((entry, rec, new))
    out.problems = problems
    if problems or not write:
        return out
    for entry, rec, new in plan:
        (entry / "record.json").write_text(_record_text({**rec, "code": new}))
        manifest = json.loads((entry / cache.MANIFEST).read_text())
        manifest["files"]["record.json"] = cache.sha256_of(entry / "record.json")
        (entry / cache.MANIFEST).write_text(_manifest_text(manifest))
        out.written += 1
    if plan:
        runs.write_manifest(folder)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="check every entry, write nothing")
    args = parser.parse_args(argv)
    out = migrate(write=not args.dry_run)
    print(f"{out.entries} entries: {out.matched} stored hashes equal the text hash of the current code "
          f"({len(out.hashes)} distinct), {out.already} already hold the new hash, "
          f"{len(out.problems)} problems; {out.written} new hashes written.")
    for old, new in sorted(out.hashes.items()):
        print(f"  {old} -> {new}")
    for problem in out.problems:
        print(f"error: {problem}", file=sys.stderr)
    if out.problems:
        return 1
    if out.written or out.already:
        problems = ledger.check()
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"after the migration: {len(runs.entries())} entries, {len(problems)} problems "
              f"({len(ledger.stale_entries())} stale).")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
