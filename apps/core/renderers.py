"""The API's JSON renderers.

``PortalJSONRenderer``, the default: UTF-8, as DRF's own, but never a server error for a
string with no UTF-8 form (a lone surrogate echoed from a request): such an answer is
written with every non-ASCII character escaped instead.

``ExactJSONRenderer``: JSON whose Decimals are exact numbers.

The API writes amounts and quantities as strings (``COERCE_DECIMAL_TO_STRING``), which no
JSON library can round. Where a contract we mirror wants numbers (OpenMeter's meter
query), this renderer writes each Decimal as its exact digits (``0.000123``, never
``0.00012299999``): a float never holds the value on the way.
"""

from __future__ import annotations

import json
from decimal import Decimal

from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder


def exact_number(value: Decimal) -> str:
    """A finite Decimal as a JSON number: plain digits, no exponent, no trailing zeros."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a JSON number.")
    text = format(value, "f")  # exact: no context, so no rounding
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def dumps(value) -> str:
    if isinstance(value, Decimal):
        return exact_number(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_text(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    return json.dumps(value, cls=JSONEncoder, ensure_ascii=False, allow_nan=False)


def _text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


class ExactJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        return dumps(data).encode()


class PortalJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            return _EscapedJSONRenderer().render(data, accepted_media_type, renderer_context)


class _EscapedJSONRenderer(JSONRenderer):
    ensure_ascii = True
