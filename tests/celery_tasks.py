"""A task for the worker-crash test, imported by the test's workers (``celery worker -I``):
taken the first time, it holds its worker (which the test kills meanwhile); delivered
again, it finishes at once and says so in the worker's log."""

import logging
import time

from billing_portal.celery import app

logger = logging.getLogger("billing_portal.tasks")


@app.task(bind=True, acks_late=True, name="tests.hold_the_worker")
def hold_the_worker(self, label: str, seconds: float) -> str:
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    logger.info("hold_the_worker %s taken (redelivered=%s)", label, redelivered)
    if not redelivered:
        time.sleep(seconds)
    logger.info("hold_the_worker %s done at %.3f", label, time.time())
    return label
