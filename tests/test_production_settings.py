"""Production settings pass Django's deployment checks and refuse to start half-configured."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))
    }
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "DJANGO_ENV": "production",
    "DJANGO_SECRET_KEY": "a-long-random-production-secret-" + "k3Y9" * 12,
    "DJANGO_ALLOWED_HOSTS": "billing.example.com",
    "DATABASE_URL": "sqlite:////tmp/billing-portal-deploy-check.sqlite3",
    "METRICS_TOKEN": "a-production-scrape-token",
}


@pytest.mark.slow
def test_check_deploy_reports_nothing_under_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    settings = {key: value for key, value in PRODUCTION.items() if key != "DJANGO_SECRET_KEY"}

    result = manage("check", **settings)

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_refuses_to_start_without_a_metrics_token():
    settings = {key: value for key, value in PRODUCTION.items() if key != "METRICS_TOKEN"}

    result = manage("check", **settings)

    assert result.returncode != 0
    assert "METRICS_TOKEN" in result.stderr


def test_production_refuses_to_seed_demo_data():
    result = manage("seed_demo", **PRODUCTION)

    assert result.returncode != 0
    assert "refuses to run under production settings" in result.stderr


@pytest.mark.slow
def test_production_logs_are_json_lines_with_the_request_id_and_no_secrets():
    import json

    raw = "bp_org_AbCdEf12_" + "q" * 40
    result = manage(
        "shell", "-c",
        "import logging; from apps.core import request_id; request_id.bind('rid-7'); "
        f"logging.getLogger('billing_portal.x').warning('key %s used', '{raw}')",
        **PRODUCTION,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "billing_portal.x" in line]
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "billing_portal.x"
    assert entry["request_id"] == "rid-7"
    assert entry["message"] == "key bp_org_AbCdEf12_[redacted] used"
    assert raw not in result.stderr
