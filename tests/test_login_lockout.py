"""Repeated wrong passwords lock the sign-in, per username and per address, on the
billing pages' sign-in and the admin's; the lock lifts after its cool-off or by command."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from tests.clock import travel

PASSWORD = "correct horse battery"
SIGN_INS = {"pages": "login", "admin": "admin:login"}


@pytest.fixture
def person(django_user_model):
    return django_user_model.objects.create_user("ada", "ada@example.com", PASSWORD, is_staff=True)


@pytest.fixture
def other(django_user_model):
    return django_user_model.objects.create_user("grace", "grace@example.com", PASSWORD)


def sign_in(client, username, password, where="pages", address="198.51.100.7", **headers):
    return client.post(
        reverse(SIGN_INS[where]),
        {"username": username, "password": password},
        REMOTE_ADDR=address,
        **headers,
    )


def signed_in(response) -> bool:
    return response.status_code == 302


@pytest.mark.parametrize("where", SIGN_INS)
def test_fifty_wrong_passwords_lock_the_sign_in_and_the_right_one_then_waits(person, where):
    client = Client()
    answers = [sign_in(client, "ada", f"guess {n}", where).status_code for n in range(50)]

    assert answers == [200] * 4 + [429] * 46  # the fifth failure is told of the lock
    locked = sign_in(client, "ada", PASSWORD, where)
    assert locked.status_code == 429
    text = locked.content.decode()
    assert "Too many failed sign-ins" in text and "locked for 15 minutes" in text
    assert "ask an administrator to unlock" in text
    assert client.get(reverse("billing:overview")).status_code == 302  # not signed in


def test_the_username_is_locked_from_every_address(person):
    for n in range(5):
        sign_in(Client(), "ada", f"guess {n}", address=f"203.0.113.{n}")

    assert sign_in(Client(), "ada", PASSWORD, address="192.0.2.50").status_code == 429


def test_the_address_is_locked_for_every_username(person, other):
    for n in range(5):
        sign_in(Client(), f"nobody-{n}", "guess", address="203.0.113.9")

    assert sign_in(Client(), "grace", PASSWORD, address="203.0.113.9").status_code == 429
    assert signed_in(sign_in(Client(), "grace", PASSWORD, address="203.0.113.10"))


def test_a_right_password_clears_the_failures_before_the_limit(person):
    client = Client()
    for n in range(4):
        assert sign_in(client, "ada", f"guess {n}").status_code == 200
    assert signed_in(sign_in(client, "ada", PASSWORD))
    client = Client()
    for n in range(4):
        assert sign_in(client, "ada", f"guess again {n}").status_code == 200

    assert signed_in(sign_in(client, "ada", PASSWORD))


def test_the_lock_lifts_after_its_cool_off(person):
    with travel("2026-12-02 10:00", tick=False) as clock:
        for n in range(5):
            sign_in(Client(), "ada", f"guess {n}")
        clock.move_to("2026-12-02 10:14:30+00:00")
        assert sign_in(Client(), "ada", PASSWORD).status_code == 429
        clock.move_to("2026-12-02 10:16:00+00:00")
        assert signed_in(sign_in(Client(), "ada", PASSWORD))


def test_a_command_unlocks_a_username_and_an_address(person, other):
    for n in range(5):
        sign_in(Client(), "ada", f"guess {n}", address="203.0.113.1")
    for n in range(5):
        sign_in(Client(), f"nobody-{n}", "guess", address="203.0.113.2")
    assert sign_in(Client(), "ada", PASSWORD, address="192.0.2.1").status_code == 429
    assert sign_in(Client(), "grace", PASSWORD, address="203.0.113.2").status_code == 429

    out = StringIO()
    call_command("axes_reset_username", "ada", stdout=out)
    call_command("axes_reset_ip", "203.0.113.2", stdout=out)

    assert out.getvalue().splitlines() == ["1 attempts removed.", "5 attempts removed."]
    assert signed_in(sign_in(Client(), "ada", PASSWORD, address="192.0.2.1"))
    assert signed_in(sign_in(Client(), "grace", PASSWORD, address="203.0.113.2"))


def test_the_admin_lists_the_lock_outs_and_deleting_one_unlocks(person, admin_client):
    from axes.models import AccessAttempt

    for n in range(5):
        sign_in(Client(), "ada", f"guess {n}", where="admin", address="203.0.113.3")

    listing = admin_client.get(reverse("admin:axes_accessattempt_changelist"))
    assert listing.status_code == 200
    assert "ada" in listing.content.decode() and "203.0.113.3" in listing.content.decode()
    attempt = AccessAttempt.objects.get(username="ada")
    assert attempt.failures_since_start == 5
    admin_client.post(
        reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"}
    )
    assert signed_in(sign_in(Client(), "ada", PASSWORD, where="admin", address="192.0.2.9"))


def test_behind_a_trusted_proxy_the_forwarded_client_address_is_counted(person, other, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.2"
    for n in range(5):
        sign_in(Client(), f"nobody-{n}", "guess", address=proxy,
                HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.20")  # fmt: skip

    # The forged left-most entry is not the address; the proxy's own entry is.
    assert sign_in(Client(), "grace", PASSWORD, address=proxy,
                   HTTP_X_FORWARDED_FOR="203.0.113.20").status_code == 429  # fmt: skip
    assert signed_in(sign_in(Client(), "grace", PASSWORD, address=proxy,
                             HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.21"))  # fmt: skip
