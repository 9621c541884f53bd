"""The Ray engine: documents → a Ray Dataset → read tasks → an actor pool, each actor holding one pipeline → records.

The runner still lists, resumes and writes; this module only replaces the step that turns
documents into records. A folder's files are read in Ray tasks (the runner hands them over
unread, named by their paths); each actor builds the pipeline from the config once (no `nlp`
object or model travels through Ray) and runs the local engine's code on its batches.
"""

import dataclasses
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from ..config import JobSettings, build_pipeline, config_file, load_config
from ..errors import EngineError, Errors, NlpipeError, NlpipeWarning, first_line
from ..io.readers import Document
from ..processing import load_models
from ..runner import LocalEngine, Pending, Tag
from .reading import read_files

# CPUs the actors leave to the read tasks (and the driver, which lists and writes). A pipeline
# whose actors claim every CPU waits forever: no read task can start, so no batch reaches the
# actors (2 actors at 1 CPU each on 2 cores never finish; tests/test_ray.py).
RESERVED_CPUS = 0.5
# CPUs one read task claims: two fit in the reserve. Reading is I/O and decoding, far lighter
# than a batch through the pipeline, so the reserve reads ahead of the actors.
READ_CPUS = RESERVED_CPUS / 2
# Serialised documents handed to Ray at a time: each window is a Dataset of its own, so the
# driver never holds the whole input; but the actors (and their model load) start once per
# window, so windows are as large as memory comfortably allows. A folder's files travel as
# paths (about 200 bytes), so a window holds about half a million of them.
WINDOW_BYTES = 128 * 2**20
# Seconds a Ray head's address has to accept a connection. Given an address where nothing
# listens, ray.init retries for minutes; a closed port refuses at once, and a host that drops
# the packets is given up on after this.
CONNECT_SECONDS = 10
WATCHDOG = Path(__file__).with_name("watchdog.py")  # run as a file: see there


def require_ray():
    """The `ray` module, or EngineError E070 (one line saying what to install)."""
    try:
        import ray
        import ray.data  # noqa: F401  the [data] extra: plain `pip install ray` lacks its dependencies
    except ImportError:
        raise EngineError(Errors.E070) from None
    return ray


class PoolShape(NamedTuple):
    workers: int
    cpus: float  # CPUs each actor reserves in Ray's accounting
    threads: int  # torch threads each actor runs


def pool_shape(settings: JobSettings, cluster: dict) -> PoolShape:
    """The actor pool for a cluster with `cluster` resources ({"CPU": n, "GPU": m}).

    CPU shares are sized so that RESERVED_CPUS always stay free, and at most 1 so that an
    actor fits on any node; the default pool is as many actors as the GPUs allow (GPU runs)
    or as whole CPUs remain after the reserve.
    """
    cpus, gpus_available = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    per_gpu = settings.gpus_per_worker
    if settings.workers is not None:
        workers = settings.workers
    elif per_gpu:
        workers = max(1, math.floor(gpus_available / per_gpu))
    else:
        workers = max(1, math.floor(cpus - RESERVED_CPUS))
    if per_gpu and workers * per_gpu > gpus_available:
        raise EngineError(Errors.E072.format(workers=workers, gpus=per_gpu, needed=workers * per_gpu,
                                             available=gpus_available))
    cpus_each = (cpus - RESERVED_CPUS) / workers
    # Rounded down to Ray's resource granularity, so the sum never exceeds what is free.
    share = max(math.floor(min(1.0, cpus_each) * 1000) / 1000, 0.001)
    # Ray would give an actor OMP_NUM_THREADS = its whole CPUs (1 for a share): a lone actor on
    # 2 cores would use half the machine. Threads follow the CPUs each actor really has.
    return PoolShape(workers, share, max(1, round(cpus_each)))


class PipelineWorker:
    """A Ray Data callable class: one actor, one pipeline, batches of JSON documents in, JSON records out."""

    def __init__(self, config_path: str, overrides: dict, settings: JobSettings, cwd: str, threads: int = 1):
        import torch

        if os.path.isdir(cwd):  # relative paths in the config (models/...) mean what they mean for the driver
            os.chdir(cwd)
        torch.set_num_threads(min(threads, os.cpu_count() or 1))
        warnings.simplefilter("ignore", NlpipeWarning)  # the driver built the same pipeline and showed them
        try:
            nlp = build_pipeline(load_config(config_path, overrides))
            load_models(nlp)  # now, not inside the first batch
        except NlpipeError as err:
            raise EngineError(Errors.E073.format(reason=err)) from None
        self.nlp = nlp
        # The spaCy stage runs in this actor: more actors, not more processes per actor.
        self.local = LocalEngine(nlp, dataclasses.replace(settings, n_process=1))

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        pending = [(Document(**document), questions, tuple(tag)) for document, questions, tag in
                   map(json.loads, batch["item"])]
        return {"result": np.array([json.dumps(result, ensure_ascii=False) for result in self._records(pending)],
                                   dtype=object)}

    def _records(self, pending: list) -> list[tuple[dict, tuple]]:
        try:
            return list(self.local.records(pending))
        except Exception:  # one document must not fail its batch: find it by running them one at a time
            return [self._record_alone(item) for item in pending]

    def _record_alone(self, item) -> tuple[dict, tuple]:
        try:
            return next(iter(self.local.records([item])))
        except Exception as err:
            document, _, tag = item
            return {"id": document.id, "error": {"type": "processing_failed",
                                                 "message": f"{type(err).__name__}: {err}"}}, tag


@contextmanager
def ray_session(address: str | None, num_cpus: int | None = None):
    """Join `address` (else $RAY_ADDRESS, else start a local Ray with `num_cpus`, default all)
    for the run; one already joined by the caller (a notebook, a test) is used and left running."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    # Ray's C++ core logs warnings (actor constructor arguments kept for restarts) to stderr.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    # A local Ray runs its workers at nice 15: the actors, which do all of the run's work,
    # would lose the CPU to any other process, the driver included. (Read when Ray starts.)
    os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        with _sigterm_kept():
            ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = address or os.environ.get("RAY_ADDRESS") or "a new local instance"
        raise EngineError(Errors.E071.format(address=where, reason=first_line(err))) from None
    with _agents_end_with_this_process():
        try:
            yield ray
        finally:
            ray.shutdown()


def check_ray_address(address: str | None) -> None:
    """E074 for a Ray head's address (`address`, else $RAY_ADDRESS) that is not HOST:PORT, E075
    where nothing accepts a connection at it. Addresses Ray resolves itself pass: none or "local"
    (a new local Ray), "auto" (the one `ray start` left running here), ray:// (a Ray client)."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # an IPv6 host: [::1]:6379
    if not host or not port.isdigit() or not 0 < int(port) < 2**16:
        raise EngineError(Errors.E074.format(address=address))
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as err:  # refused, timed out, or a host name that does not resolve
        raise EngineError(Errors.E075.format(address=address, reason=err.strerror or first_line(err))) from None


@contextmanager
def _sigterm_kept():
    """ray.init makes SIGTERM end the driver at once (sys.exit(15)); the handler it replaces (the
    CLI's, which ends a run as Ctrl-C does, saying how to resume) is put back."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        # Ray sets its handler only from the main thread, and None is a handler Python did not set.
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


@contextmanager
def _agents_end_with_this_process():
    """The agents of a Ray this process started (the raylet's children) are killed when this
    process ends, a kill -9 included, by a watchdog (see watchdog.py)."""
    import psutil  # installed with accelerate, which nlpipe requires; the watchdog needs it too

    try:
        raylets = [child for child in psutil.Process().children() if child.name() == "raylet"]
        agents = [agent.pid for raylet in raylets for agent in raylet.children()]
    except psutil.NoSuchProcess:  # a child ended while we looked: a clean-up must not fail the run
        agents = []
    if not agents:  # Ray runs elsewhere: a cluster joined
        yield
        return
    # Its own session: the Ctrl-C sent to the driver's process group must not end it first.
    guard = subprocess.Popen([sys.executable, str(WATCHDOG), *map(str, agents)], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield
    finally:
        guard.stdin.close()
        guard.wait()


def block_plan(documents: int, batch_size: int) -> tuple[int, int]:
    """(blocks, rows per batch) for a Dataset of `documents`: about one block per batch of at
    most `batch_size`, and batches of exactly a block's rows. A batch size above the block's
    rows makes Ray bundle two blocks into one task, whose records then reach the output only
    when both batches are done (and the actors share fewer, larger tasks)."""
    blocks = math.ceil(documents / batch_size)
    return blocks, math.ceil(documents / blocks)


def windows(items: Iterable[str], max_bytes: int) -> Iterator[list[str]]:
    """Consecutive runs of `items` (serialised documents) of at most `max_bytes` in all, or
    one item where a single item is larger."""
    window, size = [], 0
    for item in items:
        if window and size + len(item) > max_bytes:
            yield window
            window, size = [], 0
        window.append(item)
        size += len(item)
    if window:
        yield window


def worker_args(config_path: str, overrides: dict, settings: JobSettings) -> dict:
    """What each PipelineWorker is built with (all but its threads)."""
    return {"config_path": actor_config_path(config_path), "overrides": overrides, "settings": settings,
            "cwd": os.getcwd()}


def actor_config_path(config_path: str) -> str:
    """`config_path` as an actor loads it: a file by its absolute path (an actor on another node
    may not start in the driver's directory), a built-in pipeline by its name, which each
    actor's own nlpipe resolves (made a path, `qa` would be a file that does not exist)."""
    if Path(config_path).is_file():  # load_config's own order: a file first, then a built-in name
        return os.path.abspath(config_path)
    config_file(config_path)  # E001 here, once, rather than in every actor
    return config_path


class RayEngine:
    """An engine (runner.Engine) running the pipeline of `config_path` on a Ray actor pool: each
    actor builds it itself. Records arrive in the order batches finish, not in input order."""

    reads_files = True  # a folder's files come unread: read_files reads them in Ray tasks

    def __init__(self, config_path: str, overrides: dict, settings: JobSettings):
        require_ray()
        check_ray_address(settings.ray_address)  # now, not minutes into ray.init's retries
        self.settings = settings
        self.constructor_args = worker_args(config_path, overrides, settings)

    def start(self) -> None:
        """Nothing to load here: the actors load their own models."""

    def records(self, pending: Pending) -> Iterator[tuple[dict, Tag]]:
        settings = self.settings
        # Ray's driver prints the cluster's error messages to sys.stdout, log_to_driver or not: after
        # Ctrl-C, "(raylet) Task MapWorker(...).submit failed ... killed by `ray.kill`" landed among
        # the records of --output - (the runner's writer holds the stdout it started with).
        with redirect_stdout(sys.stderr), ray_session(settings.ray_address) as ray:
            _quiet(ray)
            shape = pool_shape(settings, ray.cluster_resources())
            serialised = (json.dumps([dataclasses.asdict(d), questions, tag]) for d, questions, tag in pending)
            for window in windows(serialised, WINDOW_BYTES):
                blocks, batch_size = block_plan(len(window), settings.batch_size)
                dataset = ray.data.from_items([{"item": item} for item in window], override_num_blocks=blocks)
                read = dataset.map_batches(read_files, batch_size=batch_size, num_cpus=READ_CPUS,
                                           fn_kwargs={"max_chars": settings.max_document_chars})
                mapped = read.map_batches(PipelineWorker, batch_size=batch_size,
                                          compute=ray.data.ActorPoolStrategy(size=shape.workers),
                                          num_cpus=shape.cpus, num_gpus=settings.gpus_per_worker or None,
                                          fn_constructor_kwargs={**self.constructor_args, "threads": shape.threads})
                try:
                    for row in mapped.iter_rows():
                        record, tag = json.loads(row["result"])
                        yield record, tuple(tag)
                except ray.exceptions.RayError as err:
                    raise _user_error(err) from None


def _user_error(err: Exception) -> Exception:
    """The NlpipeError an actor raised (a config or model problem), else the Ray error itself."""
    cause = err
    while cause is not None and not isinstance(cause, NlpipeError):
        cause = getattr(cause, "cause", None) or cause.__cause__
    if cause is not None:
        return cause
    # An actor whose constructor failed comes back as ActorDiedError, with only the text of its error.
    failed_build = re.search(rf"{EngineError.__name__}: (E073: .*)", str(err))
    return EngineError(failed_build.group(1)) if failed_build else err


def _quiet(ray) -> None:
    # The CLI shows one progress bar and one summary, as for a local run; Ray Data's own
    # bars and execution logs would interleave with them.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
