"""Arrays sent as their text form: PostgreSQL reads back exactly the values given, whatever
the text holds (quotes, backslashes, commas, braces, the word NULL), and None as NULL."""

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.core import pg_array
from apps.pricing.models import BillingMethod

HOSTILE = ['plain', 'a "quoted" word', "back\\slash\\", "{braces}", "a,b", "NULL", "", " x ",
           "naïve ✓", "'single'"]  # fmt: skip

# Text PostgreSQL can store: no NUL, no lone surrogate (the API refuses both).
TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


def test_the_text_form_quotes_every_text_and_leaves_numbers_bare():
    assert pg_array.text([1, Decimal("-0.00036"), None]) == "{1,-0.00036,NULL}"
    assert pg_array.text(['a"b', "c\\d"]) == '{"a\\"b","c\\\\d"}'
    assert pg_array.text([date(2026, 12, 1)]) == '{"2026-12-01"}'
    assert pg_array.text([BillingMethod.WALLET_DEDUCTION]) == '{"wallet_deduction"}'
    assert pg_array.text([]) == "{}"
    with pytest.raises(TypeError):
        pg_array.text([1.5])  # money is never a float


def read_back(values, kind: str) -> list:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT %s::{kind}[]", [pg_array.text(values)])
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgresql_reads_back_what_was_given():
    assert read_back(HOSTILE, "text") == HOSTILE
    assert read_back([None, "x"], "text") == [None, "x"]
    assert read_back([7, 2**40], "bigint") == [7, 2**40]
    assert read_back([Decimal("1E+3"), Decimal("-0.000000000001")], "numeric") == [
        Decimal("1E+3"),
        Decimal("-0.000000000001"),
    ]
    berlin = datetime(2026, 12, 1, 0, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert read_back([berlin], "timestamptz") == [berlin.astimezone(UTC)]
    assert read_back([date(2026, 2, 28)], "date") == [date(2026, 2, 28)]


@pytest.mark.postgres
@pytest.mark.django_db
@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=TEXT)))
def test_any_text_without_nul_comes_back_as_it_was(values):
    assert read_back(values, "text") == values
