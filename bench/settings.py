"""The portal's settings, plus the benchmark's own URLs (``bench/urls.py``): used only by the
gunicorn that ``bench/ingest.py`` starts, never in production."""

from billing_portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
