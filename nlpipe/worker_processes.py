"""spaCy's worker processes (`nlp.pipe(..., n_process=N)`) die with the process that started them.

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
_spacy_worker = spacy.language._apply_pipes


def worker(*args) -> None:
    """spaCy's worker loop, tied to the parent's life first."""
    die_with_parent()
    _spacy_worker(*args)


def install() -> None:
    """Make `nlp.pipe(..., n_process=N)` start its workers through `worker` (spaCy looks the
    function up when it starts them, and a spawned worker imports it by name)."""
    spacy.language._apply_pipes = worker


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
