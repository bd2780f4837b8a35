"""JSON parsing for money: numbers with a fraction become Decimal, never float, and the
non-standard constants NaN and Infinity are refused, and so is nesting deeper than the
interpreter can follow (a malformed request, never a server error)."""

import codecs
import json
from decimal import Decimal

from django.conf import settings
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant

from apps.core import text


class DecimalJSONParser(JSONParser):
    """Also refuses, as a validation error naming the field, a string the database cannot
    store (``apps.core.text``), unless the view checks each event of a batch itself
    (``checks_text_per_event``: one bad event must not sink its siblings)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            decoded = codecs.getreader(encoding)(stream)
            data = json.load(decoded, parse_float=Decimal, parse_constant=strict_constant)
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from None
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        if not getattr(parser_context.get("view"), "checks_text_per_event", False):
            unstorable = text.unstorable(data)
            if unstorable:
                raise ValidationError({name: [reason] for name, reason in unstorable.items()})
        return data


class CloudEventJSONParser(DecimalJSONParser):
    """CloudEvents 1.0 structured mode: one event as a JSON object."""

    media_type = "application/cloudevents+json"


class CloudEventBatchJSONParser(DecimalJSONParser):
    """CloudEvents 1.0 batched mode: a JSON array of events."""

    media_type = "application/cloudevents-batch+json"
