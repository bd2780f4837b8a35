"""Closes one billing period of one organisation by hand (the daily job does it for every
ended period): ``manage.py close_period --organization demo --month 2026-10``, the period
that begins in that month (the calendar month, or the month of its subscription's billing
cycle). Refuses an unknown organisation, a period that has not ended and a period already
closed."""

from datetime import date, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from apps.customers.models import Organization
from apps.pricing.periods import MONTH, period_bounds
from apps.usage import statements
from apps.usage.models import Statement


class Command(BaseCommand):
    help = __doc__.split("\n")[0]

    def add_arguments(self, parser):
        parser.add_argument("--organization", required=True, help="The organisation's slug.")
        parser.add_argument("--month", required=True, help="YYYY-MM, in its time zone.")

    def handle(self, *args, organization, month, **options):
        found = Organization.objects.filter(slug=organization).first()
        if found is None:
            raise CommandError(f"No organisation {organization!r}.")
        try:
            year, number = (int(part) for part in month.split("-"))
            first = date(year, number, 1)
        except ValueError:
            raise CommandError("--month is YYYY-MM.") from None
        # The billing period that begins in that month: the calendar month, or the month of
        # the subscription's billing cycle that starts in it.
        _, month_end = period_bounds(datetime(first.year, first.month, 15, tzinfo=found.tz),
                                     MONTH, found.tz)  # fmt: skip
        start, _ = found.period_bounds(month_end - timedelta(microseconds=1))
        start, end = statements.statement_period(found, start)
        if Statement.objects.filter(organization=found, period_start=start,
                                    status=Statement.Status.FINAL).exists():  # fmt: skip
            raise CommandError(statements.PeriodAlreadyClosed.message)
        try:
            statement = statements.close_period(organization=found, period_start=start,
                                                period_end=end)  # fmt: skip
        except statements.PeriodNotEnded as error:
            raise CommandError(error.message) from None
        self.stdout.write(f"statement {statement.pk}: {statement.get_status_display()}, "
                          f"total due {statement.total_due} {statement.currency}")  # fmt: skip
        if statement.status != Statement.Status.FINAL:
            raise CommandError(f"The close stopped: {statement.mismatch}")
