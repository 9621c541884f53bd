"""Ends the agents of a local Ray with the driver that started it, however the driver ends.

Ray ties its GCS and raylet to the driver (the kernel kills them when it dies), and the
raylet's agents (ray::DashboardAgent, ray::RuntimeEnvAgent) notice the raylet's death at once;
but after a kill -9 they first report that unexpected death to the GCS, dead too, and wait
60 s (a timeout Ray hard-codes) before exiting. Run as `python watchdog.py PID...` with stdin a
pipe that only the driver writes to: when the pipe closes, the driver has ended, and the
processes PID... still running are killed.

This file is run by its path, importing nothing of nlpipe: it works wherever the driver's
nlpipe came from, and starts in a fraction of a second.
"""

import sys

import psutil


def main(pids: list[int]) -> None:
    # Taken now, while they run: psutil then refuses to signal a PID reused by another process.
    processes = []
    for pid in pids:
        try:
            processes.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    sys.stdin.buffer.read()  # returns at end of file: the driver closed the pipe or died
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:  # ended by itself (Ray's own shutdown)
            continue


if __name__ == "__main__":
    main([int(pid) for pid in sys.argv[1:]])
