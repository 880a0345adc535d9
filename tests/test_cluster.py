"""helpers.cluster: runs trained on Dask distributed, with real processes on loopback.

A real ``dask scheduler`` and two ``dask worker`` processes (one thread each) are started on
127.0.0.1; the same two short runs are trained in this process, on the embedded cluster and on
those workers, and must be identical bit for bit, even with another thread of each worker drawing
random numbers all the time. A worker is killed with SIGKILL in the middle of
a run; a closed port must fail fast. Every process a test starts, the test stops.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import helpers.job
from helpers import cache, cluster, ledger, ledger_cli, runs, store, trainer

from helpers.job import Job, arrays, environment
from helpers.config import BASELINE
from tests.conftest import REPO, need_real_data

SHORT = BASELINE.with_(epochs=1)  # the paper's network, one epoch: a few seconds a run
#: All training images (with the test set as validation data, for the curves) and a cross-validation fold: the two
#: paths of training on a worker (a holdout run takes the fold's: the client sends a worker its images).
JOBS = [Job(SHORT, 0, "test"), Job(SHORT, 1, "cv5-2")]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _env() -> dict[str, str]:
    # this checkout's helpers first, whatever an editable install elsewhere points at
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


class Cluster:
    """A scheduler and two one-thread workers (no nanny: a killed worker stays dead)."""

    def __init__(self, folder: Path) -> None:
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.processes: list[subprocess.Popen] = []
        self.workers: dict[str, subprocess.Popen] = {}
        self.folder = folder

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen([str(BIN / "dask"), *args], stdout=log, stderr=subprocess.STDOUT,
                                   env=_env(), cwd=self.folder)
        log.close()
        self.processes.append(process)
        return process

    def start(self, workers: int = 2, *options: str) -> None:
        self._start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", self.address.rsplit(":", 1)[1],
                    "--no-dashboard", "--dashboard-address", "127.0.0.1:0")
        for i in range(1, workers + 1):
            address = f"tcp://127.0.0.1:{_free_port()}"
            self.workers[address] = self._start(
                f"worker{i}", "worker", self.address, "--nworkers", "1", "--nthreads", "1",
                *(options or ("--no-nanny",)), "--host", "127.0.0.1", "--worker-port", address.rsplit(":", 1)[1],
                "--no-dashboard", "--name", f"worker{i}")
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:  # the scheduler takes a moment to listen
            try:
                with Client(self.address, timeout=5, set_as_default=False) as c:
                    c.wait_for_workers(workers, timeout=60)
                    assert set(c.scheduler_info()["workers"]) == set(self.workers)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop(process)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One scheduler and two workers for the module (starting them costs seconds); the test that kills a
    worker comes last."""
    need_real_data()
    started = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        started.start()
        yield started
    finally:
        cluster.close()
        started.stop()
    assert all(p.poll() is not None for p in started.processes)


@pytest.fixture
def ledger_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    need_real_data()
    monkeypatch.setenv("USPS_TRAINING", "ledger")
    monkeypatch.setenv("USPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(cluster.ENV_CLUSTER, raising=False)
    yield tmp_path
    cluster.close()


def _train_into(folder: Path, monkeypatch: pytest.MonkeyPatch, *, workers: int, address: str | None = None) -> None:
    monkeypatch.setenv(store.ENV_LEDGER, str(folder))
    if address:
        monkeypatch.setenv(cluster.ENV_CLUSTER, address)
    else:
        monkeypatch.delenv(cluster.ENV_CLUSTER, raising=False)
    results = runs.run_many(JOBS, workers=workers)
    assert [r.source for r in results] == ["ledger"] * len(JOBS)


def _complete(folder: Path) -> None:
    """One complete, intact entry per job, listed in the manifest, and nothing half-written."""
    assert sorted(e.name for e in store.entries(folder)) == sorted(j.key() for j in JOBS)
    assert all(cache.problem(e) is None for e in store.entries(folder))
    assert ledger.verify_manifest(folder) == []
    assert not [p for p in folder.rglob(".*tmp*")], "temporary folders left in the ledger"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs of JOBS trained in this process, one after the other (the path that made the ledger)."""
    need_real_data()
    folder = tmp_path_factory.mktemp("in-process")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("USPS_TRAINING", "ledger")
        mp.setenv("USPS_CACHE_DIR", str(folder / "cache"))
        _train_into(folder / "ledger", mp, workers=1)
    return folder / "ledger"


def _identical(a: Path, b: Path) -> None:
    rows = ledger.compare(a, b)
    assert len(rows) == len(JOBS)
    assert all(r.identical and r.same_environment for r in rows), rows


def _stir(c: Any) -> None:
    """A thread on every worker that draws from Python's global random generator all the time, as
    Dask's event loop does now and then (``dask.sizeof``): runs must not notice."""
    def start() -> str:  # nested, so that it travels by value: workers need not import the tests
        import random
        import threading

        def draw() -> None:
            while True:
                random.random()
                random.randint(1, 10)
                time.sleep(0.0005)

        threading.Thread(target=draw, daemon=True).start()
        return "stirring"

    assert set(c.run(start).values()) == {"stirring"}


def test_embedded_and_remote_clusters_train_the_same_bits(reference: Path, dask_cluster: Cluster, ledger_mode: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from distributed import Client

    _stir(cluster.client(2))
    _train_into(ledger_mode / "embedded", monkeypatch, workers=2)
    out = capsys.readouterr().out
    assert f"Training {len(JOBS)} of {len(JOBS)} runs on the Dask cluster at this machine (2 one-thread workers" in out
    cluster.close()
    with Client(dask_cluster.address, timeout=10, set_as_default=False) as other:
        _stir(other)
    _train_into(ledger_mode / "remote", monkeypatch, workers=2, address=dask_cluster.address)
    out = capsys.readouterr().out
    assert f"on the Dask cluster at {dask_cluster.address} (2 one-thread workers" in out
    lines = [line for line in out.splitlines() if re.match(rf"\s+\[\s*\d+/{len(JOBS)}\]", line)]
    assert len(lines) == len(JOBS) and all("elapsed" in line for line in lines) and "left" in lines[0]
    assert {re.search(r" on (\S+)", line)[1] for line in lines} <= set(dask_cluster.workers)
    for folder in (ledger_mode / "embedded", ledger_mode / "remote"):
        _complete(folder)
        _identical(reference, folder)
        for entry in store.entries(folder):
            rec = store.record(entry)
            assert rec["key"] == entry.name and rec["data"] == runs.data.checksums()
            assert rec["code"] == helpers.job.code_hash(SHORT) and rec["environment"] == environment()
            assert rec["host"] == store.record(reference / store.KIND / entry.name)["host"]
    assert not list((dask_cluster.folder).glob("**/*.npz")), "workers write no files"


def test_a_worker_killed_mid_run_leaves_one_complete_entry(reference: Path, dask_cluster: Cluster, ledger_mode: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from distributed import Client

    killed: list[str] = []
    seen: list[str] = []

    def executing(dask_worker: Any) -> int:
        return dask_worker.state.executing_count

    def kill_a_busy_worker() -> None:
        try:
            with Client(dask_cluster.address, timeout=10, set_as_default=False) as watch:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    busy = [w for w, n in watch.run(executing).items() if n]
                    if busy:
                        time.sleep(2)  # well inside the run: one epoch and the predictions take several seconds
                        dask_cluster.workers[busy[0]].send_signal(signal.SIGKILL)
                        killed.append(busy[0])
                        return
                    time.sleep(0.1)
                seen.append("no worker was ever executing a run")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            seen.append(repr(exc))

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    try:
        _train_into(ledger_mode / "ledger", monkeypatch, workers=2, address=dask_cluster.address)
    finally:
        killer.join()
    assert killed, seen
    assert dask_cluster.workers[killed[0]].wait(5) == -signal.SIGKILL
    survivor = (set(dask_cluster.workers) - set(killed)).pop()
    lines = [line for line in capsys.readouterr().out.splitlines() if re.match(rf"\s+\[\s*\d+/{len(JOBS)}\]", line)]
    assert len(lines) == len(JOBS) and all(f" on {survivor} " in line for line in lines), lines
    _complete(ledger_mode / "ledger")
    _identical(reference, ledger_mode / "ledger")


def test_a_scheduler_that_does_not_answer_is_named_within_ten_seconds(ledger_mode: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv(store.ENV_LEDGER, str(ledger_mode / "ledger"))
    monkeypatch.setenv(cluster.ENV_CLUSTER, address)
    start = time.monotonic()
    with pytest.raises(cluster.ClusterUnavailable) as caught:
        runs.run_many(JOBS[:1])
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert address in message and "dask scheduler" in message and f"dask worker {address}" in message
    assert store.entries(ledger_mode / "ledger") == []


def test_a_nanny_preloading_helpers_cluster_starts_lean_workers(tmp_path: Path) -> None:
    """`dask worker --preload-nanny helpers.cluster` gives remote workers the embedded cluster's settings."""
    from distributed import Client

    started = Cluster(tmp_path)
    try:
        started.start(1, "--nanny", "--preload-nanny", "helpers.cluster")

        def settings() -> dict[str, object]:
            import dask

            return {"env": [os.environ.get(name) for name in cluster.NANNY_ENVIRON],
                    "config": {key: dask.config.get(key) for key in cluster.WORKER_CONFIG}}

        with Client(started.address, timeout=10, set_as_default=False) as c:
            (found,) = c.run(settings).values()
    finally:
        started.stop()
    assert found == {"env": [None] * len(cluster.NANNY_ENVIRON), "config": cluster.WORKER_CONFIG}


def test_a_worker_with_other_code_is_refused(ledger_mode: Path) -> None:
    job = JOBS[1]
    with pytest.raises(cluster.CodeMismatch, match="runs other code than the client.*code hash"):
        cluster.train_on_worker(trainer.entry_files, helpers.job.code_hash, job, cluster.pack(arrays(job)), "0" * 16,
                                job.key(), runs.data.checksums())


def test_nothing_missing_starts_no_cluster(reference: Path, ledger_mode: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(store.ENV_LEDGER, str(reference))
    monkeypatch.setenv("USPS_TRAINING", "forbid")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cluster was started although every run is stored")

    monkeypatch.setattr(cluster, "client", refuse)
    assert [r.source for r in runs.run_many(JOBS)] == ["ledger"] * len(JOBS)
    again = ledger_cli._ledger_jobs(reference)  # what `make retrain` submits first, in one batch
    assert sorted(j.key() for j in again) == sorted(j.key() for j in JOBS)


def test_a_stale_entry_is_missing_for_make_results_and_stops_the_book(reference: Path, ledger_mode: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import shutil

    folder = ledger_mode / "ledger"
    shutil.copytree(reference, folder, ignore=shutil.ignore_patterns("*.lock"))
    monkeypatch.setenv(store.ENV_LEDGER, str(folder))
    entry = folder / store.KIND / JOBS[-1].key()
    rec = store.record(entry)
    rec["code"] = "0" * 16  # trained by other code; checksums kept consistent
    (entry / "record.json").write_text(json.dumps(rec))
    manifest = json.loads((entry / cache.MANIFEST).read_text())
    manifest["files"]["record.json"] = cache.sha256_of(entry / "record.json")
    (entry / cache.MANIFEST).write_text(json.dumps(manifest))
    monkeypatch.setenv("USPS_TRAINING", "forbid")
    with pytest.raises(store.LedgerError, match="stale"):
        runs.run_many(JOBS)
    monkeypatch.setenv("USPS_TRAINING", "ledger")
    assert [runs.available(j) for j in JOBS] == [True, False]
    runs.run_many(JOBS, workers=1)  # retrains the stale run only, here
    assert ledger.stale_entries(folder) == [] and ledger.verify_manifest(folder) == []
    _identical(reference, folder)


def test_pack_is_lossless() -> None:
    import numpy as np

    xs = (np.random.default_rng(0).normal(size=(5, 16, 16, 1)).astype(np.float32), np.arange(5, dtype=np.int64))
    back = cluster.unpack(cluster.pack(xs))
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(xs, back))


def test_durations_read_in_their_unit() -> None:
    assert cluster.duration(45) == "45 s" and cluster.duration(600) == "10 min" and cluster.duration(7200) == "2.0 h"
