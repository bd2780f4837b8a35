"""Text the database can store: no NUL character (PostgreSQL refuses it in text and in
jsonb) and no lone surrogate (U+D800 to U+DFFF alone is not Unicode text: it has no UTF-8
form). Every surface checks what it is sent with ``unstorable`` before anything reads it,
and answers a validation error naming the field; ``shown`` makes a value safe to echo."""

from __future__ import annotations

NUL = "Must not contain the NUL character (U+0000)."
SURROGATE = "Must not contain a lone surrogate (U+D800 to U+DFFF)."
MAX_REPORTED = 20


def problem(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None."""
    if "\x00" in value:
        return NUL
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return SURROGATE
    return None


def shown(value: str) -> str:
    """``value`` with what cannot be stored replaced by U+FFFD, to name it in an answer."""
    if problem(value) is None:
        return value
    return "".join(
        "\ufffd" if char == "\x00" or "\ud800" <= char <= "\udfff" else char for char in value
    )


def unstorable(data, prefix: str = "") -> dict[str, str]:
    """{the field's dotted path: the problem} for each string in ``data`` (a value parsed
    from JSON: keys of objects included) that cannot be stored; at most MAX_REPORTED.
    Walks without recursion, so any nesting the JSON parser let through is fine."""
    found: dict[str, str] = {}
    stack = [(prefix, data)]
    while stack and len(found) < MAX_REPORTED:
        path, value = stack.pop()
        if isinstance(value, str):
            reason = problem(value)
            if reason:
                found[path or "body"] = reason
        elif isinstance(value, dict):
            for key, item in value.items():
                name = shown(str(key))
                where = f"{path}.{name}" if path else name
                reason = problem(key) if isinstance(key, str) else None
                if reason:
                    found[where] = f"Its name: {reason[0].lower()}{reason[1:]}"
                stack.append((where, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return found
