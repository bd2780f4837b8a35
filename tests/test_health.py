import pytest

from billing_portal import health
from billing_portal.celery import app as celery_app

pytestmark = pytest.mark.django_db

DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_health_answers_seed_003s_shape(client):
    response = client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "service", "port", "version", "dependencies"}
    assert body["status"] == "healthy"
    assert body["service"] == "billing_portal"
    assert isinstance(body["port"], int)
    assert body["dependencies"] == {"database": "healthy", "cache": "healthy", "broker": "healthy"}


def test_detailed_health_reports_each_dependency_with_its_latency(client):
    response = client.get("/health/detailed")

    assert response.status_code == 200
    dependencies = response.json()["dependencies"]
    assert {"database", "cache", "broker"} <= set(dependencies)  # and the operations'
    for result in dependencies.values():
        assert result["status"] == "healthy"
        assert result["latency_ms"] >= 0


def test_a_dead_cache_degrades_health_but_keeps_200(client, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": DEAD_REDIS,
            "OPTIONS": {"socket_connect_timeout": 0.5},
        }
    }

    response = client.get("/health/detailed")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["dependencies"]["cache"]["status"] == "unhealthy"
    assert "error" in body["dependencies"]["cache"]
    assert body["dependencies"]["database"]["status"] == "healthy"


def test_a_dead_broker_degrades_health(client):
    previous = celery_app.conf.broker_url
    celery_app.conf.task_always_eager = False
    previous_write = celery_app.conf.broker_write_url
    celery_app.conf.broker_url = celery_app.conf.broker_write_url = DEAD_REDIS
    try:
        response = client.get("/health")
    finally:
        celery_app.conf.broker_url, celery_app.conf.broker_write_url = previous, previous_write

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["dependencies"]["broker"] == "unhealthy"


def test_an_unreachable_database_makes_the_portal_unhealthy():
    results = {
        "database": health.CheckResult(health.UNHEALTHY, 1.0),
        "cache": health.CheckResult(health.HEALTHY, 1.0),
        "broker": health.CheckResult(health.HEALTHY, 1.0),
    }

    status = health.overall_status(results)

    assert status == health.UNHEALTHY
    assert health.HTTP_STATUS[status] == 503


def test_health_only_answers_get(client):
    response = client.post("/health")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
