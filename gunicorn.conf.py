"""gunicorn's settings for the portal (read from the working directory by default).

With ``PROMETHEUS_MULTIPROC_DIR`` set (an empty directory, wiped at each start), every
worker writes its metrics there and ``/metrics`` adds them up; a worker that exits has its
live gauges removed."""

import os
import shutil


def on_starting(server):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
