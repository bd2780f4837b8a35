"""Every page answers with a Content-Security-Policy that allows scripts only from the
portal's own files, and no template has an inline script the policy would refuse (the
browser tests also fail on any refusal the console reports)."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

TEMPLATES = Path(settings.BASE_DIR) / "templates"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {
        name: values
        for name, *values in (part.split() for part in policy.split(";") if part.strip())
    }


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/", "/api/docs/",
                                  "/api/redoc/", "/"])  # fmt: skip
def test_pages_allow_scripts_only_from_the_portal(client, db, path):
    response = client.get(path)

    assert response.status_code == 200
    policy = directives(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["default-src"] == ["'self'"]


def test_the_billing_pages_carry_the_policy(client, django_user_model):
    from apps.customers.models import Membership, Organization

    organization = Organization.objects.create(name="Policy Labs", slug="policy-labs")
    user = django_user_model.objects.create_user("policy", password="pw")
    Membership.objects.create(user=user, organization=organization, role="owner")
    client.force_login(user)

    response = client.get(reverse("billing:overview"))

    assert response.status_code == 200
    assert directives(response)["script-src"] == ["'self'"]


def test_a_page_is_sent_on_only_to_stripes_hosted_pages():
    policy = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]

    assert policy["form-action"] == [
        "'self'",
        "https://checkout.stripe.com",
        "https://billing.stripe.com",
    ]


@pytest.mark.parametrize(
    "template", sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.html"))
)
def test_no_template_has_an_inline_script_or_event_handler(template):
    text = (TEMPLATES / template).read_text()

    assert not INLINE_SCRIPT.findall(text)
    assert not EVENT_HANDLER.findall(text)
