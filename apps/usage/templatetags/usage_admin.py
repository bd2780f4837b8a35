"""The usage events list's date drill-down, read from the daily rollup.

Django's date hierarchy finds the years, months and days that have rows with DISTINCT
queries over the listed table: over a million usage events that is a scan per page view.
The rollup has a row for every day with usage (per organisation), so the same choices
come from a table a thousand times smaller. Links and filtering are Django's own.
"""

import datetime

from django import template
from django.contrib.admin.templatetags.admin_list import date_hierarchy
from django.db.models import Max, Min
from django.utils import formats
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from apps.usage.models import DailyUsage

register = template.Library()


@register.inclusion_tag("admin/date_hierarchy.html")
def rollup_date_hierarchy(cl):
    if not cl.date_hierarchy:
        return date_hierarchy(cl)
    field = cl.date_hierarchy
    year_field, month_field, day_field = f"{field}__year", f"{field}__month", f"{field}__day"
    year, month, day = (cl.params.get(f) for f in (year_field, month_field, day_field))
    days = DailyUsage.objects.all()
    organization = cl.params.get("organization__id__exact")
    if organization:
        days = days.filter(organization_id=organization)

    def link(filters):
        return cl.get_query_string(filters, [f"{field}__"])

    if not (year or month or day):
        span = days.aggregate(first=Min("day"), last=Max("day"))
        if span["first"] and span["first"].year == span["last"].year:
            year = span["first"].year
            if span["first"].month == span["last"].month:
                month = span["first"].month
    if year and month and day:
        chosen = datetime.date(int(year), int(month), int(day))
        return {
            "show": True,
            "back": {"link": link({year_field: year, month_field: month}),
                     "title": capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT"))},
            "choices": [{"title": capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))}],
        }  # fmt: skip
    if year and month:
        found = days.filter(day__year=year, day__month=month).dates("day", "day")
        return {
            "show": True,
            "back": {"link": link({year_field: year}), "title": str(year)},
            "choices": [
                {"link": link({year_field: year, month_field: month, day_field: d.day}),
                 "title": capfirst(formats.date_format(d, "MONTH_DAY_FORMAT"))}
                for d in found
            ],
        }  # fmt: skip
    if year:
        found = days.filter(day__year=year).dates("day", "month")
        return {
            "show": True,
            "back": {"link": link({}), "title": _("All dates")},
            "choices": [
                {"link": link({year_field: year, month_field: m.month}),
                 "title": capfirst(formats.date_format(m, "YEAR_MONTH_FORMAT"))}
                for m in found
            ],
        }  # fmt: skip
    return {
        "show": True,
        "back": None,
        "choices": [
            {"link": link({year_field: str(y.year)}), "title": str(y.year)}
            for y in days.dates("day", "year")
        ],
    }
