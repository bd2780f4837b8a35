import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_portal.settings")

application = get_wsgi_application()

# Load every view now (the URLconf imports them) rather than on the first request, then
# move all that lives as long as the process out of the garbage collector's way: a full
# collection, which a 1,000-event batch's allocations set off, then scans only what
# requests created (tens of milliseconds less, now and again, in the middle of a request).
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018
gc.freeze()
