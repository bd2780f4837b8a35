"""CSV downloads streamed row by row (a million rows never sit in memory), with cells a
spreadsheet will not run as formulas."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from django.http import StreamingHttpResponse

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    """The value as text; text that starts like a formula (and is not a number, such as a
    negative amount) is prefixed with an apostrophe."""
    text = "" if value is None else str(value)
    if text[:1] not in FORMULA_STARTS:
        return text
    try:
        Decimal(text)
    except InvalidOperation:
        return f"'{text}"
    return text


class _Echo:
    def write(self, value):
        return value


def streaming_csv(
    header: list[str], rows: Iterable[Iterable], filename: str
) -> StreamingHttpResponse:
    """A CSV attachment: ``header``, then every row of ``rows`` (consumed lazily), each
    cell made safe."""
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow([safe_cell(value) for value in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
