"""The portal's URLs and the three-write ceiling (``bench/ceiling.py``)."""

from django.urls import path

from bench.ceiling import CeilingApi
from billing_portal.urls import urlpatterns as portal

urlpatterns = [*portal, path("bench/ceiling", CeilingApi.as_view())]
