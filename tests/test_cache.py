"""helpers.cache: atomic entries, checksums, locks; faults are really injected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import cache
from tests.conftest import REPO

SPEC = {"what": "test", "n": 1}


def _writer(text: str):
    def build(folder: Path) -> None:
        (folder / "a.txt").write_text(text)
    return build


def test_builds_once_then_reads_back(tmp_path: Path) -> None:
    entry, built = cache.get_or_build("k", SPEC, _writer("hello"), tmp_path)
    assert built and (entry / "a.txt").read_text() == "hello"
    manifest = json.loads((entry / cache.MANIFEST).read_text())
    assert manifest["spec"] == SPEC and set(manifest["files"]) == {"a.txt"}
    again, built = cache.get_or_build("k", SPEC, _writer("other"), tmp_path)
    assert again == entry and not built and (entry / "a.txt").read_text() == "hello"
    assert cache.lookup("k", {"what": "test", "n": 2}, tmp_path) is None


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    def broken(folder: Path) -> None:
        (folder / "half.txt").write_text("half")
        raise RuntimeError("killed half-way")

    with pytest.raises(RuntimeError):
        cache.get_or_build("k", SPEC, broken, tmp_path)
    assert cache.lookup("k", SPEC, tmp_path) is None
    assert [p.name for p in (tmp_path / "k").iterdir() if not p.name.endswith(".lock")] == []


def test_altered_entry_is_reported_and_rebuilt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry, _ = cache.get_or_build("k", SPEC, _writer("hello"), tmp_path)
    (entry / "a.txt").write_text("tampered")
    assert cache.lookup("k", SPEC, tmp_path) is None
    entry, built = cache.get_or_build("k", SPEC, _writer("fresh"), tmp_path)
    assert built and (entry / "a.txt").read_text() == "fresh"
    assert "a.txt was altered" in capsys.readouterr().err


def test_entry_without_manifest_is_never_read(tmp_path: Path) -> None:
    entry = cache.entry_path("k", SPEC, tmp_path)
    entry.mkdir(parents=True)
    (entry / "a.txt").write_text("from a run that died before its manifest")
    assert cache.lookup("k", SPEC, tmp_path) is None
    entry, built = cache.get_or_build("k", SPEC, _writer("ok"), tmp_path)
    assert built and (entry / "a.txt").read_text() == "ok"


CHILD = """
import sys, time
from pathlib import Path
from helpers import cache
def build(folder):
    (folder / "a.txt").write_text("partial")
    Path(sys.argv[2]).write_text("started")
    time.sleep(float(sys.argv[3]))
    (folder / "b.txt").write_text("done")
cache.get_or_build("k", {"what": "test", "n": 1}, build, Path(sys.argv[1]))
"""


def _child(tmp_path: Path, flag: Path, sleep: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(flag), str(sleep)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def _wait_for(flag: Path, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not flag.exists():
        assert time.time() < deadline, "child did not start"
        time.sleep(0.05)


def test_sigkill_mid_build_is_never_read_back(tmp_path: Path) -> None:
    flag = tmp_path / "started"
    child = _child(tmp_path, flag, 60)
    _wait_for(flag)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert cache.lookup("k", SPEC, tmp_path) is None
    assert list((tmp_path / "k").glob(".*.tmp-*")), "the killed build's temporary folder exists"
    entry, built = cache.get_or_build("k", SPEC, _writer("rebuilt"), tmp_path)
    assert built and (entry / "a.txt").read_text() == "rebuilt"
    assert not list((tmp_path / "k").glob(".*.tmp-*")), "stale temporary folders are cleaned"


def test_two_processes_build_an_entry_once(tmp_path: Path) -> None:
    flag = tmp_path / "started"
    child = _child(tmp_path, flag, 2)
    _wait_for(flag)
    calls = []
    entry, built = cache.get_or_build("k", SPEC, lambda f: calls.append(f), tmp_path)
    assert child.wait() == 0
    assert not built and not calls, "the second builder waited on the lock and reused the entry"
    assert (entry / "b.txt").read_text() == "done"


def test_cached_json_computes_once(tmp_path: Path) -> None:
    calls = []

    def compute() -> dict[str, int]:
        calls.append(1)
        return {"x": 1}

    assert cache.cached_json("j", SPEC, compute, tmp_path) == {"x": 1}
    assert cache.cached_json("j", SPEC, compute, tmp_path) == {"x": 1}
    assert len(calls) == 1


def test_key_is_stable_and_order_free() -> None:
    assert cache.key_of({"a": 1, "b": [1, 2]}) == cache.key_of({"b": [1, 2], "a": 1})
    assert cache.key_of({"a": 1}) != cache.key_of({"a": 2})
