"""No task of the portal waits between retries as long as the broker keeps a message it
handed out: RabbitMQ's consumer timeout (30 min), Redis's visibility timeout (an hour)."""

import importlib

from django.conf import settings

from billing_portal.celery import app

CONSUMER_TIMEOUT_SECONDS = 30 * 60


def test_every_tasks_longest_retry_wait_is_under_the_brokers_limits():
    for module in ("apps.budgets.tasks", "apps.customers.tasks", "apps.customers.webhooks",
                   "apps.usage.tasks"):  # fmt: skip
        importlib.import_module(module)
    tasks = {name: task for name, task in app.tasks.items() if name.startswith("apps.")}
    assert len(tasks) >= 10, sorted(tasks)
    limit = min(CONSUMER_TIMEOUT_SECONDS,
                settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"])  # fmt: skip
    waits = {name: getattr(task, "retry_backoff_max", 600) for name, task in tasks.items()}
    assert all(wait < limit for wait in waits.values()), waits
