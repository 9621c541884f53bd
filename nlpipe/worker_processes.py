"""spaCy's worker processes (`nlp.pipe(..., n_process=N)`) die with the process that started them,
and a parent stopped by Ctrl-C (or SIGTERM) exits at once.

spaCy starts them as plain multiprocessing children, which a parent killed by SIGKILL or the
out-of-memory killer leaves waiting on their queues forever. On Linux the kernel kills each
worker when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere a thread in the worker watches
its parent's pid.
"""

import ctypes
import multiprocessing
import os
import signal
import threading
import time

import spacy.language

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCH_SECONDS = 1.0
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}  # Ctrl-C, and a scheduler stopping the job
_spacy_worker = spacy.language._apply_pipes


def worker(*args) -> None:
    """spaCy's worker loop, tied to the parent's life first."""
    die_with_parent()
    leave_when_the_job_stops()
    _spacy_worker(*args)


class _PipeMultiprocessing:
    """`multiprocessing` as spaCy's `Language.pipe` uses it (spacy.language's `mp`), but for the
    queues and processes, which must not keep a parent stopped by Ctrl-C from exiting."""

    def __getattr__(self, name: str):
        return getattr(multiprocessing, name)

    @staticmethod
    def Queue() -> multiprocessing.Queue:
        """The texts for one worker. At exit Python waits until every queue has written what it
        holds into its pipe; after Ctrl-C the worker that reads that pipe is gone, and the wait
        never ended. Not waiting loses nothing: a worker reads its queue to the end (spaCy's
        end-of-work sentinel) before spaCy's join of it returns."""
        queue = multiprocessing.Queue()
        queue.cancel_join_thread()
        return queue

    @staticmethod
    def Process(**kwargs) -> multiprocessing.Process:
        """Daemonic, so that Python ends it at exit instead of waiting for it: a Ctrl-C while
        spaCy starts its workers stops the parent before spaCy's own clean-up could join them."""
        return _Worker(daemon=True, **kwargs)


class _Worker(multiprocessing.Process):
    """A spaCy worker that its parent stops before waiting for it.

    spaCy joins its workers once it reads no more of their results. A worker that still has a
    batch to send then blocks on its full result pipe for ever: it never sees the pipe break, as
    every worker holds the read ends of all the result pipes it inherited. That is how a signal
    to the parent alone (`kill -INT <pid>`, `docker stop`) left the run hanging.
    """

    def start(self) -> None:
        # The child starts with the parent's handlers (a SIGTERM raises KeyboardInterrupt, and
        # prints its traceback) until `leave_when_the_job_stops` sets its own; signals that come
        # before then wait for them.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def join(self, timeout: float | None = None) -> None:
        # Whatever the worker has left to do is not wanted: spaCy has read all it will read.
        self.terminate()
        super().join(timeout)


def install() -> None:
    """Make `nlp.pipe(..., n_process=N)` start its workers through `worker` and `_PipeMultiprocessing`
    (spaCy looks both up when it starts them; a spawned worker imports `worker` by name)."""
    spacy.language._apply_pipes = worker
    spacy.language.mp = _PipeMultiprocessing()


def leave_when_the_job_stops() -> None:
    """Ctrl-C (and a scheduler's SIGTERM) reaches every process of the job: the parent writes what
    is done and says so. A worker has nothing to save (its documents are redone on resume), so it
    leaves at once: no KeyboardInterrupt traceback, and status 0, as spaCy's parent warns (W127)
    of a worker that ended otherwise."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _leave)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by _Worker.start until now


def _leave(signum, frame) -> None:
    os._exit(0)


def die_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    if not _kernel_kills_us():
        threading.Thread(target=_watch, args=(parent.pid,), daemon=True).start()
    if os.getppid() != parent.pid:  # the parent died before the request above took effect
        os._exit(1)


def _kernel_kills_us() -> bool:
    # The signal comes when the *thread* that started the worker ends; spaCy starts workers in
    # the thread that iterates nlp.pipe, which lives as long as the workers are used.
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    except (OSError, AttributeError):  # not Linux: no prctl
        return False


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCH_SECONDS)
    os._exit(1)
