import contextlib
import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")

application = get_wsgi_application()

# Load every view now (the URLconf imports them) and the cache's client (Redis) rather
# than on the first request, then move all that lives as long as the process out of the
# garbage collector's way: a full collection, which a 1,000-event batch's allocations set
# off, then scans only what requests created. And collect the young less often: a batch
# allocates a hundred thousand objects, nearly all freed by reference counting when it is
# answered; at the default threshold (700) that is over a hundred collections of each
# batch, a tenth of its time. At 50,000 a batch sees one or two, and the garbage in
# cycles waiting for them stays a few megabytes.
from django.core.cache import cache  # noqa: E402
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018
with contextlib.suppress(Exception):  # Redis not up yet: the client connects on first use
    cache.get("wsgi:warm-up")
gc.freeze()
gc.set_threshold(50_000, 20, 20)
