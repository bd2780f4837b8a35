"""The Celery application, configured from Django settings (``CELERY_*``)."""

import logging
import os
import time

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")

app = Celery("billing_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
logger = logging.getLogger("billing_portal.tasks")


# --- request ids and metrics of tasks ---------------------------------------------------------
# A task enqueued while serving a request carries the request's id in its message headers;
# the worker binds it while the task runs, so the task's log lines carry it too.

_running: dict[str, tuple[float, object]] = {}


@signals.setup_logging.connect
def _keep_the_portals_logging(**kwargs):
    """Celery leaves logging alone when this signal has a receiver: workers and beat log
    through Django's ``LOGGING`` (request ids, masking), configured at Django's setup."""


@signals.before_task_publish.connect
def _carry_request_id(headers=None, **kwargs):
    from apps.core import request_id

    rid = request_id.current()
    if headers is not None and rid != request_id.NONE:
        headers.setdefault(request_id.TASK_HEADER, rid)


@signals.task_prerun.connect
def _task_started(task_id=None, task=None, **kwargs):
    from apps.core import request_id

    carried = getattr(task.request, request_id.TASK_HEADER, None) or (
        (task.request.headers or {}).get(request_id.TASK_HEADER)
        if isinstance(task.request.headers, dict) else None
    )  # fmt: skip
    token = request_id.bind(request_id.accept(carried) if carried else request_id.current())
    _running[task_id] = (time.perf_counter(), token)
    logger.info("Task %s[%s] started", task.name, task_id)


@signals.task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **kwargs):
    from apps.core import metrics, request_id

    started, token = _running.pop(task_id, (None, None))
    try:
        metrics.TASKS.labels(task.name, (state or "unknown").lower()).inc()
        if started is not None:
            metrics.TASK_DURATION.labels(task.name).observe(time.perf_counter() - started)
    finally:
        if token is not None:
            request_id.reset(token)
