"""Every model registered in the admin opens its list (and its add form where adding is
allowed) for a superuser, with the demo data loaded."""

from io import StringIO

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

pytestmark = pytest.mark.django_db

OURS = {"customers", "pricing", "usage", "budgets", "auth", "django_celery_beat"}


@pytest.fixture
def superuser_client(client):
    call_command("seed_demo", "--without-usage", stdout=StringIO())
    client.force_login(get_user_model().objects.get(username="admin"))
    return client


def test_every_changelist_and_add_form_opens(superuser_client):
    opened = 0
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        if meta.app_label not in OURS:
            continue
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        response = superuser_client.get(url)
        assert response.status_code == 200, url
        opened += 1
        if model_admin.has_add_permission(response.wsgi_request):
            add = reverse(f"admin:{meta.app_label}_{meta.model_name}_add")
            assert superuser_client.get(add).status_code == 200, add
    assert opened >= 20


def test_no_changelist_issues_a_query_per_row(client):
    """With the demo's four weeks of usage (thousands of events, records, ledger rows),
    each list's queries stay a handful: related rows come with select_related."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    call_command("seed_demo", stdout=StringIO())
    client.force_login(get_user_model().objects.get(username="admin"))
    busy = 0
    for model in admin.site._registry:
        meta = model._meta
        if meta.app_label not in {"customers", "pricing", "usage", "budgets"}:
            continue
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        rows = response.context["cl"].result_count
        busy += rows >= 50
        assert len(queries) <= 15, (url, rows, len(queries))
    assert busy >= 5  # several lists show a full page of rows
