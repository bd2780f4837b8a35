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
