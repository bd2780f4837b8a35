"""Writes of the budgets app: opening periods (the reset), raising and delivering alerts.

Every job here is safe to run twice, or twice at once: periods are unique per budget and
start, alerts per period and threshold, deliveries per alert and channel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from celery import current_app
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from apps.budgets import selectors
from apps.budgets.enforcement import bounds
from apps.budgets.models import Alert, AlertDelivery, Budget, BudgetPeriod, NotificationChannel
from apps.core import metrics, period_lock
from apps.core.errors import PortalError
from apps.pricing.cost_engine import format_amount

logger = logging.getLogger(__name__)
DELIVER_ALERT = "apps.budgets.tasks.deliver_alert"  # (its registered name)

# What an organisation already spent in a period under a budget's scope, read from the
# daily rollup: given by the floor that records usage, which registers it when ready
# (``apps.usage.apps``). Without it a budget opens at nothing spent.
SpentReader = Callable[[Budget, datetime, datetime | None], Decimal]
_spent_in: SpentReader | None = None


def read_spent_with(reader: SpentReader) -> None:
    global _spent_in
    _spent_in = reader


# What, changed, makes a budget count its current period again.
SCOPE_FIELDS = ("scope", "service_type_id", "product_id", "api_key_id", "period")


class BudgetBusy(PortalError):
    code = "service_unavailable"
    status_code = 503
    message = "Usage was being recorded for too long to open the budget; retry shortly."


def save_budget(budget: Budget) -> Budget:
    """Saves ``budget``. A new one, one whose scope or period changed, or one made active
    again opens its current period with what that period already spent under its scope
    (a monthly budget is about the month: created on the 20th, it counts from the 1st).
    That sum is taken under the organisation's period lock, once no usage is being
    written, and every event recorded after it sees the budget: none is missed or
    counted twice. Raises BudgetBusy if usage kept the lock past the freeze's wait. Any
    other change (a name, a limit) is saved without the lock: usage never waits for it."""
    before = Budget.objects.filter(pk=budget.pk).first() if budget.pk else None
    counts_again = budget.is_active and (
        before is None
        or not before.is_active
        or any(getattr(before, name) != getattr(budget, name) for name in SCOPE_FIELDS)
    )
    with transaction.atomic():
        if counts_again:
            try:
                period_lock.exclusive(budget.organization_id)
            except period_lock.Busy:
                raise BudgetBusy from None
        budget.save()
        if counts_again:
            _open_with_what_was_spent(budget, timezone.now())
    return budget


def _open_with_what_was_spent(budget: Budget, at: datetime) -> BudgetPeriod:
    start, end = bounds(budget, at, budget.organization.tz)
    spent = _spent_in(budget, start, end) if _spent_in else Decimal(0)
    period, _ = BudgetPeriod.objects.update_or_create(
        budget=budget, starts_at=start,
        defaults={"ends_at": end, "spent": spent, "spent_before_budget": spent},
    )  # fmt: skip
    return period


def open_current_periods(*, at: datetime | None = None) -> int:
    """Opens the period holding ``at`` for every active budget (the reset at a period
    boundary); returns how many this run opened (a run overlapping another counts only
    its own). A missed run is made good by the next one; periods nobody used in between
    need no row."""
    at = at or timezone.now()
    budgets = list(Budget.objects.filter(is_active=True).select_related("organization"))
    if not budgets:
        return 0
    adapt = connection.ops.adapt_datetimefield_value
    created_at = adapt(timezone.now())
    params = []
    for budget in budgets:
        start, end = bounds(budget, at, budget.organization.tz)
        params += [budget.pk, adapt(start), adapt(end), Decimal(0), Decimal(0), created_at]
    table = connection.ops.quote_name(BudgetPeriod._meta.db_table)
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(budgets))
    with connection.cursor() as cursor:
        # bulk_create(ignore_conflicts=True) cannot tell which rows it inserted; RETURNING
        # answers only this run's, not those another run (or ingestion) opened meanwhile.
        cursor.execute(
            f"INSERT INTO {table} (budget_id, starts_at, ends_at, spent, spent_before_budget, "
            "created_at) "
            f"VALUES {values} ON CONFLICT (budget_id, starts_at) DO NOTHING RETURNING id",
            params,
        )
        return len(cursor.fetchall())


def raise_alerts(*, at: datetime | None = None, budget_ids=None) -> list[int]:
    """The sweep: an alert for every threshold the current period of an active budget has
    crossed, once, with a delivery per active channel of its organisation. Returns the ids of
    deliveries to send (new ones, and earlier ones still pending)."""
    at = at or timezone.now()
    budgets = Budget.objects.filter(is_active=True).select_related("organization")
    if budget_ids is not None:
        budgets = budgets.filter(pk__in=budget_ids)
    statuses = [s for s in selectors.budget_statuses(budgets, at=at) if s.crossed_thresholds]
    if not statuses:
        return []
    periods = {
        (period.budget_id, period.starts_at): period
        for period in BudgetPeriod.objects.filter(
            budget__in=[s.budget for s in statuses],
            starts_at__in={s.period_start for s in statuses},
        )
    }
    with transaction.atomic():
        Alert.objects.bulk_create(
            [
                Alert(
                    period=periods[(status.budget.pk, status.period_start)],
                    threshold=threshold,
                    spent=status.spent,
                    limit=status.budget.limit,
                    created_at=at,
                )
                for status in statuses
                for threshold in status.crossed_thresholds
            ],
            ignore_conflicts=True,
        )
        # Conflicting rows kept their first creation time: only this sweep's alerts are new.
        new_alerts = list(
            Alert.objects.filter(created_at=at, period__in=periods.values()).select_related(
                "period__budget"
            )
        )
        channels = {}
        for channel in NotificationChannel.objects.filter(
            organization__in={s.budget.organization_id for s in statuses}, is_active=True
        ):
            channels.setdefault(channel.organization_id, []).append(channel)
        AlertDelivery.objects.bulk_create(
            [
                AlertDelivery(alert=alert, channel=channel)
                for alert in new_alerts
                for channel in channels.get(alert.period.budget.organization_id, [])
            ],
            ignore_conflicts=True,
        )
    return list(
        AlertDelivery.objects.filter(
            status__in=[AlertDelivery.Status.PENDING, AlertDelivery.Status.FAILED],
            alert__period__in=periods.values(),
        ).values_list("pk", flat=True)
    )


def alert_message(alert: Alert) -> tuple[str, str]:
    budget = alert.period.budget
    currency = budget.currency
    percent = (alert.spent / alert.limit * 100).quantize(1) if alert.limit else 100
    title = f"Budget '{budget.name}' of {budget.organization.name} reached {alert.threshold}%"
    end = alert.period.ends_at.isoformat() if alert.period.ends_at else "no end"
    body = (
        f"{format_amount(alert.spent, currency)} of {format_amount(alert.limit, currency)} "
        f"{currency} spent ({percent}%) in the period from {alert.period.starts_at.isoformat()} "
        f"to {end}. The budget is {'hard: usage past it is refused' if budget.is_hard else 'soft'}."
    )
    return title, body


class DeliveryFailed(Exception):
    pass


def _send(channel: NotificationChannel, title: str, body: str) -> str:
    """Sends one message to ``channel``; the error ("" when sent). A failing channel is
    reported, never raised."""
    try:
        if channel.kind == NotificationChannel.Kind.EMAIL:
            send_mail(title, body, settings.DEFAULT_FROM_EMAIL, [channel.target])
            return ""
        import apprise

        notifier = apprise.Apprise()
        if not notifier.add(channel.target) or not notifier.notify(title=title, body=body):
            return "the Apprise target refused or could not be reached"
        return ""
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"[:2000]


def send_test_alert(*, channel: NotificationChannel) -> str:
    """Sends a test message to ``channel`` now and records the outcome on it; the error
    ("" when it was sent)."""
    organization = channel.organization
    title = f"Test alert for {organization.name}"
    body = (
        "This is a test from the billing portal: budget alerts for "
        f"{organization.name} will arrive here."
    )
    error = _send(channel, title, body)
    if error:
        # The details stay in the log: a customer learns only that it failed.
        logger.warning("Test alert to channel %s failed: %s", channel.pk, error)
        error = (
            "the mail server refused it"
            if channel.kind == NotificationChannel.Kind.EMAIL
            else "the service refused it or could not be reached"
        )
    channel.last_tested_at = timezone.now()
    channel.last_test_error = error
    channel.save(update_fields=["last_tested_at", "last_test_error"])
    return error


def deliver(*, delivery_id: int) -> str:
    """Sends one alert to one channel, at most once; raises DeliveryFailed (after recording
    the attempt) so the task retries with backoff. Other channels are separate deliveries."""
    with transaction.atomic():
        delivery = (
            AlertDelivery.objects.select_for_update()
            .select_related("alert__period__budget__organization", "channel")
            .get(pk=delivery_id)
        )
        if delivery.status == AlertDelivery.Status.SENT:
            return delivery.status
        title, body = alert_message(delivery.alert)
        error = _send(delivery.channel, title, body)
        delivery.attempts += 1
        if error:
            delivery.status, delivery.last_error = AlertDelivery.Status.FAILED, error[:2000]
        else:
            delivery.status, delivery.sent_at = AlertDelivery.Status.SENT, timezone.now()
        delivery.save(update_fields=["status", "attempts", "last_error", "sent_at"])
        kind = delivery.channel.kind if delivery.channel_id else "none"
    metrics.ALERTS.labels(kind, "failed" if error else "sent").inc()
    if error:
        logger.warning("Alert delivery %s failed: %s", delivery_id, error)
        raise DeliveryFailed(error)
    return delivery.status


def reset_period(*, period: BudgetPeriod) -> Decimal:
    """Sets what the period spent back to zero (a staff correction, e.g. after a refund
    outside the portal); returns what it had spent. Locked like ingestion's reservations."""
    with transaction.atomic():
        locked = BudgetPeriod.objects.select_for_update().get(pk=period.pk)
        spent = locked.spent
        locked.spent = Decimal(0)
        locked.save(update_fields=["spent"])
    period.spent = Decimal(0)
    return spent


def resend_alert(*, alert: Alert) -> int:
    """Sends ``alert`` again to every active channel of its organisation (those added
    since included); returns how many deliveries were queued."""
    organization = alert.period.budget.organization
    ids = []
    with transaction.atomic():
        for channel in NotificationChannel.objects.filter(
            organization=organization, is_active=True
        ):
            delivery, _ = AlertDelivery.objects.get_or_create(alert=alert, channel=channel)
            delivery.status, delivery.last_error = AlertDelivery.Status.PENDING, ""
            delivery.save(update_fields=["status", "last_error"])
            ids.append(delivery.pk)
    for delivery_id in ids:
        try:
            # By the task's name: tasks call services, never the reverse.
            current_app.tasks[DELIVER_ALERT].delay(delivery_id)
        except DeliveryFailed:  # run in-process (eager): recorded, retried by the sweep
            logger.warning("Alert delivery %s failed; it stays pending for a retry", delivery_id)
    return len(ids)
