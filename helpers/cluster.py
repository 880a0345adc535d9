"""Training runs on Dask distributed: an embedded cluster on this machine, or any scheduler.

:func:`helpers.runs.run_many` (``make results``, ``make retrain``) hands the runs it lacks to :func:`train`,
for the scheduler named by ``USPS_CLUSTER`` (``make results CLUSTER=tcp://host:8786``), else for an embedded
``LocalCluster`` of one-thread worker processes on this machine, started on first need (nothing starts it
when every run is stored) and kept until the process ends.

The client sends each run its :class:`~helpers.job.Job`, its key, the data's checksums, the client's
code hash and the run's arrays (about 2.5 MB compressed), so a worker needs the project's environment
and nothing else: no data folder, no shared filesystem, and it writes no file. It refuses a run when its
own code hash differs from the client's (:class:`CodeMismatch`), trains it, and returns the entry's files
as bytes. Only the client writes them, atomically, into the ledger or the per-user cache. The arrays are
part of the task, so when a worker dies in the middle of a run the scheduler gives the run to another.

Progress: one line per finished run, with the elapsed time and an estimate of the time left, and the
dashboard's address when there is one (it needs ``bokeh``, which the project does not install).
"""

from __future__ import annotations

import atexit
import copy
import importlib.util
import io
import json
import logging
import os
import platform
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from helpers import data

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

ENV_CLUSTER = "USPS_CLUSTER"
CONNECT_TIMEOUT = 5.0  # seconds

_CLIENT: "Client | None" = None
_CLUSTER: Any = None  # the embedded LocalCluster, when the client is its
_TARGET: str | None = None  # what the client is connected to: an address, or "embedded:<workers>"


#: What a Dask nanny sets in its worker processes by default. The workers here start with the
#: environment of the process that starts them instead, as the ledger's runs were trained:
#: MALLOC_TRIM_THRESHOLD_ alone made a run of the paper's model take 10 to 15 % more CPU time
#: (glibc then maps and unmaps TensorFlow's large buffers at every step).
NANNY_ENVIRON = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


#: Dask settings of the workers (and of the embedded scheduler and nannies): no statistical profiler
#: (it samples the training thread's stack every 10 ms) and slower health checks. Measured idle on
#: two cores: each worker process took 2.5 % of a core with Dask's defaults and 0.3 % with these,
#: the process running the embedded scheduler 2.4 % and 0.7 %: CPU time taken from the runs.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "500ms",
                 "distributed.worker.memory.monitor-interval": "1s",
                 "distributed.admin.system-monitor.interval": "2s"}


def dask_setup(service: Any) -> None:
    """``dask worker ... --preload-nanny helpers.cluster``: the nanny starts its worker processes as the
    embedded cluster does, without :data:`NANNY_ENVIRON` and with :data:`WORKER_CONFIG`."""
    import dask

    for name in NANNY_ENVIRON:
        for env in (getattr(service, "pre_spawn_env", None), getattr(service, "env", None)):
            if isinstance(env, dict):
                env.pop(name, None)
    if isinstance(getattr(service, "config", None), dict):  # what the nanny hands its worker process
        for key, value in WORKER_CONFIG.items():
            dask.config.set({key: value}, config=service.config)


class ClusterUnavailable(RuntimeError):
    """The scheduler named by ``USPS_CLUSTER`` does not answer."""


class WorkerRefused(RuntimeError):
    """A worker cannot train the ledger's runs as they were trained."""


class CodeMismatch(WorkerRefused):
    """A worker's code hash differs from the client's: its runs would not be the ledger's runs."""


def address() -> str | None:
    """The scheduler named by ``USPS_CLUSTER``, or ``None`` for the embedded cluster."""
    value = os.environ.get(ENV_CLUSTER, "").strip()
    return value or None


def how_to_start(addr: str) -> str:
    return (f"start one with `dask scheduler` (it listens on port 8786), then on each machine "
            f"`dask worker {addr} --nworkers <cores> --nthreads 1` in this project's environment "
            f"(`pip install -r requirements.txt`)")


def client(workers: int = 2) -> "Client":
    """The client of the scheduler named by ``USPS_CLUSTER``, else of an embedded cluster of ``workers``
    one-thread worker processes on this machine (kept for later calls)."""
    global _CLIENT, _CLUSTER, _TARGET
    addr = address()
    target = addr or f"embedded:{workers}"
    if _CLIENT is not None and _TARGET == target and _CLIENT.status == "running":
        return _CLIENT
    close()
    from distributed import Client, LocalCluster

    if addr:
        start = time.perf_counter()
        try:
            _CLIENT = Client(addr, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise ClusterUnavailable(
                f"No Dask scheduler answers at {addr} ({ENV_CLUSTER}, or CLUSTER= for make) after "
                f"{time.perf_counter() - start:.0f} s ({type(exc).__name__}: {first}). "
                f"Check the address, or {how_to_start(addr)}. Leave {ENV_CLUSTER} empty to train on this machine."
            ) from None
    else:
        import dask

        # One-thread worker processes: the fastest layout measured on two cores, and the thread
        # settings every run of the ledger was trained with. The scheduler listens on loopback only.
        dashboard = ":8787" if importlib.util.find_spec("bokeh") else ":0"  # the HTTP server starts anyway
        config = copy.deepcopy(dask.config.config)  # what the nannies hand their worker processes
        dask.config.set(WORKER_CONFIG, config=config)
        with dask.config.set({**WORKER_CONFIG,  # the scheduler and the nannies run in this process
                              **{f"distributed.nanny.pre-spawn-environ.{name}": None for name in NANNY_ENVIRON}}):
            _CLUSTER = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=dashboard, silence_logs=logging.ERROR, config=config)
        _CLIENT = Client(_CLUSTER, set_as_default=False)
    _TARGET = target
    return _CLIENT


def close() -> None:
    global _CLIENT, _CLUSTER, _TARGET
    if _CLIENT is not None:
        _CLIENT.close()
    if _CLUSTER is not None:
        _CLUSTER.close()
    _CLIENT, _CLUSTER, _TARGET = None, None, None


atexit.register(close)


# ------------------------------------------------------------------ what travels


def pack(xs: Sequence[np.ndarray]) -> bytes:
    """A run's arrays as compressed bytes (lossless: the worker gets them bit for bit)."""
    buffer = io.BytesIO()
    np.savez(buffer, *xs)
    return zlib.compress(buffer.getvalue(), 1)


def unpack(payload: bytes) -> tuple[np.ndarray, ...]:
    with np.load(io.BytesIO(zlib.decompress(payload))) as stored:
        return tuple(stored[f"arr_{i}"] for i in range(len(stored.files)))


_TRAINER: list[int] = []  # the thread that trains on this worker


def _own_random() -> None:
    """Give the training thread Python's global random generator to itself (on a worker, once).

    ``keras.utils.set_random_seed`` seeds the global generator of :mod:`random`, and Keras then draws the
    seeds of the model's initializers and dropout from it. On a Dask worker the event loop runs in another
    thread and draws from it too (``dask.sizeof`` samples with ``random.sample``): a draw between seeding
    and building the model changes the model, and the run is no longer bit-identical to the same run trained
    alone. From here on, every other thread draws from its own generator.
    """
    import random
    import threading

    if getattr(random, "_usps_own", False):
        return
    shared, others = random._inst, random.Random()  # type: ignore[attr-defined]

    def route(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            mine = _TRAINER and threading.get_ident() == _TRAINER[0]
            return getattr(shared if mine else others, name)(*args, **kwargs)
        return call

    for name in dir(random):  # random.random and getrandbits are builtin methods, the others Python ones
        if callable(value := getattr(random, name)) and getattr(value, "__self__", None) is shared:
            setattr(random, name, route(name))
    random._usps_own = True  # type: ignore[attr-defined]


def train_on_worker(build: Callable[..., dict[str, bytes]], code_of: Callable[[Any], str], job: Any,
                    payload: bytes, code: str, key: str, checksums: dict[str, str]) -> dict[str, Any]:
    """On a worker: check the code hash, train ``job`` on the sent arrays with ``build``
    (:func:`helpers.trainer.entry_files`) and return the entry's files as bytes."""
    import threading

    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not on a Dask worker
        worker = None
    where = worker.address if worker is not None else platform.node()
    threads = worker.state.nthreads if worker is not None else 1
    if threads != 1:
        raise WorkerRefused(f"The Dask worker {where} runs {threads} threads: runs train bit-identically only "
                            f"one per process. Start workers with `--nthreads 1` (and `--nworkers` per core).")
    _TRAINER[:] = [threading.get_ident()]
    _own_random()
    here = code_of(job.config)
    if here != code:
        raise CodeMismatch(
            f"The Dask worker {where} (host {platform.node()}) runs other code than the client: its code "
            f"hash for this configuration is {here}, the client's is {code}, so it refuses {job.describe()} "
            f"(key {key}): its run would not be the ledger's run. Install the client's commit of the project "
            f"and its requirements on that machine (`pip install -r requirements.txt`) and restart its worker.")
    files = build(job, unpack(payload), key=key, checksums=checksums)
    return {"files": files, "worker": where}


# ----------------------------------------------------------------- the client side


def duration(seconds: float) -> str:
    """``"45 s"``, ``"12 min"`` or ``"3.4 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def train(missing: Sequence[Any], *, arrays: Callable[[Any], Sequence[np.ndarray]],
          code_of: Callable[[Any], str], build: Callable[..., dict[str, bytes]],
          store: Callable[[Any, dict[str, bytes]], Path], estimate: Callable[[Any], float],
          total: int, workers: int, describe: Callable[[Any], str]) -> None:
    """Train ``missing`` on the cluster (see the module) and ``store`` each run as it finishes.
    :func:`helpers.runs.run_many` says how: ``arrays(job)`` the images a run trains on and predicts,
    ``code_of(config)`` the code hash, ``build`` the worker-side training, ``estimate(job)`` its seconds."""
    from distributed import as_completed

    estimates = {job: estimate(job) for job in missing}
    queue = sorted(missing, key=lambda j: -estimates[j])  # longest first: the last round is the shortest
    c = client(workers)
    threads = max(1, sum(c.nthreads().values()))
    try:  # the dashboard, when the scheduler can serve one
        has_bokeh = c.run_on_scheduler(lambda: __import__("importlib.util").util.find_spec("bokeh") is not None)
        link = c.dashboard_link if has_bokeh else None
    except Exception:  # noqa: BLE001 - a missing dashboard is not an error
        link = None
    print(f"Training {len(missing)} of {total} runs on the Dask cluster at {address() or 'this machine'} "
          f"({threads} one-thread workers{', dashboard ' + link if link else ''}), about "
          f"{duration(sum(estimates.values()) / min(threads, len(missing)))}; the others are stored.", flush=True)
    if not c.nthreads():
        print(f"  The scheduler has no workers yet; the runs wait for them. To add some: "
              f"{how_to_start(address() or 'tcp://<scheduler>:8786').split(', then ', 1)[1]}.", flush=True)
    checksums = data.checksums()
    start = time.perf_counter()
    running: dict[Any, Any] = {}
    finished = as_completed(loop=c.loop)
    done, took, guessed = 0, 0.0, 0.0

    def submit_more() -> None:  # every worker busy and two runs waiting; the rest stays here
        while queue and len(running) < max(1, sum(c.nthreads().values())) + 2:
            job = queue.pop(0)
            future = c.submit(train_on_worker, build, code_of, job, pack(arrays(job)), code_of(job.config),
                              job.key(), checksums, key=f"train-{job.key()}", pure=False)
            running[future] = job
            finished.add(future)

    try:
        submit_more()
        for future in finished:
            job = running.pop(future)
            result = future.result()  # a worker's error (e.g. CodeMismatch) stops here
            store(job, result["files"])
            seconds = json.loads(result["files"]["record.json"])["seconds"]
            done, took, guessed = done + 1, took + seconds, guessed + estimates[job]
            left = [*running.values(), *queue]
            rate = took / guessed if guessed else 1.0
            remaining = sum(estimates[j] for j in left) * rate / max(1, sum(c.nthreads().values()))
            print(f"  [{done:2d}/{len(missing)}] {describe(job):<50s} {seconds:5.0f} s on {result['worker']}  "
                  f"elapsed {duration(time.perf_counter() - start)}"
                  + (f", about {duration(remaining)} left" if left else ""), flush=True)
            submit_more()
    finally:
        if running:
            c.cancel(list(running))
