"""A text progress bar for management commands (one line per step, so logs keep it)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
WIDTH = 30


def progress(items: Iterable[T], total: int, write, label: str = "") -> Iterator[T]:
    """Yields ``items`` and writes ``[#####-----]  3/10 label`` after each."""
    for done, item in enumerate(items, start=1):
        yield item
        filled = WIDTH * done // max(total, 1)
        write(f"[{'#' * filled}{'-' * (WIDTH - filled)}] {done:>{len(str(total))}}/{total} {label}")
