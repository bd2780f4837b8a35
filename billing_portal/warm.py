"""What a serving process does once before its first request (``wsgi``; the benchmark's
in-process profile does the same, so that it measures what the server runs).

It loads every view now (the URLconf imports them) and the cache's client (Redis) rather
than on the first request, then moves all that lives as long as the process out of the
garbage collector's way: a full collection, which a 1,000-event batch's allocations set
off, then scans only what requests created. And it collects the young less often: a
batch allocates a hundred thousand objects, nearly all freed by reference counting when
it is answered; at the default threshold (700) that is over a hundred collections of each
batch, a tenth of its time. At 50,000 a batch sees one or two, and the garbage in cycles
waiting for them stays a few megabytes.
"""

from __future__ import annotations

import contextlib
import gc

YOUNG_THRESHOLD = 50_000


def serve() -> None:
    from django.core.cache import cache
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018
    with contextlib.suppress(Exception):  # Redis not up yet: the client connects on first use
        cache.get("warm:up")
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
