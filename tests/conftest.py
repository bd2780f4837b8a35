import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from billing_portal.celery import app as celery_app

# Everything the run logs, as the portal's own handler writes it (request ids, secrets
# masked); at the end of the session it is searched for any secret that got through.
RUN_LOG = Path(__file__).resolve().parent.parent / "artifacts" / "test-logs" / "run.log"


def pytest_addoption(parser):
    parser.addoption(
        "--clock-at", metavar="INSTANT",
        help="run the session with this process's clock (threads included) at INSTANT, "
        "ISO 8601, UTC unless it names an offset, ticking on from there (time-machine)",
    )  # fmt: skip


def pytest_configure(config):
    at = config.getoption("--clock-at")
    if at:
        import time_machine

        instant = datetime.fromisoformat(at)
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=UTC)
        traveller = time_machine.travel(instant, tick=True)
        traveller.start()
        config.add_cleanup(traveller.stop)


def pytest_report_header(config):
    at = config.getoption("--clock-at")
    return [f"clock: travelled to {at}"] if at else []


def pytest_sessionstart(session):
    from apps.core import logs

    RUN_LOG.parent.mkdir(parents=True, exist_ok=True)
    RUN_LOG.write_text("", encoding="utf-8")
    # Appending: a logging reconfiguration closes the handler, and it reopens on next use.
    handler = logging.FileHandler(RUN_LOG, mode="a", encoding="utf-8")
    handler.addFilter(logs.RequestIdFilter())
    handler.addFilter(logs.RedactFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s "
                                           "[%(request_id)s] %(message)s"))  # fmt: skip
    handler.set_name("test-run-log")
    _RUN_HANDLER.append(handler)
    logging.getLogger().addHandler(handler)


_RUN_HANDLER: list[logging.Handler] = []


@pytest.fixture(autouse=True)
def _run_log():
    """Keeps the run's log handler on the root logger: Django's setup (which pytest-django
    may run after the session starts) configures logging afresh and drops it."""
    root = logging.getLogger()
    for handler in _RUN_HANDLER:
        if handler not in root.handlers:
            root.addHandler(handler)
    yield


def pytest_sessionfinish(session, exitstatus):
    from apps.core import logs

    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "test-run-log"]:
        handler.close()
        root.removeHandler(handler)
    if not RUN_LOG.exists():
        return
    text = RUN_LOG.read_text(encoding="utf-8")
    from apps.customers.demo import DEMO_ORGANIZATION_KEY, DEMO_SERVICE_KEY

    leaked = logs.leaks(text) + [
        line for line in text.splitlines()
        if DEMO_ORGANIZATION_KEY in line or DEMO_SERVICE_KEY in line
    ]  # fmt: skip
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"logs of the run: {len(text.splitlines())} lines in {RUN_LOG.name}, "
            f"{len(leaked)} with a secret (API key, Stripe key, token or card number)"
        )
        for line in leaked[:20]:
            reporter.write_line(f"  secret logged: {line[:200]}")
    if leaked:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    _write_metrics(reporter)


def _write_metrics(reporter) -> None:
    """The run's own metrics, as /metrics would serve them, next to its log."""
    from prometheus_client import REGISTRY, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    logging.disable(logging.WARNING)  # the state gauges need the test database, gone now
    try:
        text = generate_latest(REGISTRY).decode()
    finally:
        logging.disable(logging.NOTSET)
    (RUN_LOG.parent / "metrics.txt").write_text(text, encoding="utf-8")
    events: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "billing_usage_events_total":
                outcome = sample.labels["outcome"]
                events[outcome] = events.get(outcome, 0) + sample.value
    if reporter is not None:
        reporter.write_line(
            "metrics of the run (metrics.txt): usage events "
            + ", ".join(f"{outcome} {int(count)}" for outcome, count in sorted(events.items()))
        )


@pytest.fixture(autouse=True)
def _postgres_only(request):
    """Tests marked ``postgres`` need real row locks and concurrent connections."""
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL (CI does) to run it")


@pytest.fixture(autouse=True)
def _quick_password_hashing(settings):
    """Users are made by the dozen; a production-strength hash would cost 0.2 s each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _eager_celery():
    """Tasks run in-process in tests; the real worker is exercised by its own tests."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Every test starts with empty caches (the database of the last one is gone)."""
    from django.core.cache import cache

    from apps.customers.selectors import ACCESS
    from apps.pricing.selectors import CATALOG

    cache.clear()
    CATALOG.forget_local()
    ACCESS.forget_local()
    yield
    cache.clear()
    CATALOG.forget_local()
    ACCESS.forget_local()


@pytest.fixture
def organization(db):
    from tests.customers.factories import OrganizationFactory

    return OrganizationFactory()


@pytest.fixture
def org_key(organization):
    """An organisation key (raw string) of ``organization``."""
    from apps.customers.services import issue_api_key

    return issue_api_key(name="test key", organization=organization).raw_key


@pytest.fixture
def service_key(db):
    from apps.customers.services import issue_api_key

    return issue_api_key(name="test service key", service=True).raw_key


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


# --- an organisation on a plan, with products (usage and budget tests) -----------------


@pytest.fixture
def plan(db):
    from tests.pricing.factories import PlanFactory

    return PlanFactory(code="usage-plan")


@pytest.fixture
def org(plan):
    from tests.customers.factories import OrganizationFactory

    return OrganizationFactory(slug="acme", plan=plan, time_zone="Europe/Berlin")


@pytest.fixture
def key(org):
    from apps.customers.services import issue_api_key

    return issue_api_key(name="svc", organization=org).raw_key


@pytest.fixture
def calls(plan):
    """A product at $0.01 per call."""
    from tests.pricing.factories import ProductFactory, price

    product = ProductFactory(code="calls")
    price(product, unit_price="0.01")
    return product


@pytest.fixture
def llm(plan):
    """Input tokens $2/M and output tokens $8/M; the plan includes 1,000 tokens a month."""
    from tests.pricing.factories import IncludedQuotaFactory, ProductFactory, price

    product = ProductFactory(code="llm", dimensions=["input_tokens", "output_tokens"])
    price(product, dimension="input_tokens", unit_price="0.000002")
    price(product, dimension="output_tokens", unit_price="0.000008")
    IncludedQuotaFactory(plan=plan, product=product, quantity=Decimal(1000))
    return product


@pytest.fixture
def fake_stripe(settings):
    """Stripe on 127.0.0.1 (``tests/fake_stripe.py``), with the portal's keys pointed at it."""
    import stripe

    from tests.fake_stripe import FakeStripe

    fake = FakeStripe(secret_key="sk_test_51PortalFakeKey000000000000000000000000")
    base = fake.start()
    settings.STRIPE_TEST_SECRET_KEY = fake.secret_key
    settings.STRIPE_ENABLED = True
    previous = stripe.api_base, stripe.meter_events_api_base
    stripe.api_base = stripe.meter_events_api_base = base
    yield fake
    stripe.api_base, stripe.meter_events_api_base = previous
    fake.stop()


@pytest.fixture
def webhook_endpoint(db):
    """dj-stripe's endpoint row: its uuid is in the URL, its secret signs the events."""
    from djstripe.models import WebhookEndpoint

    from tests.fake_stripe import API_VERSION
    from tests.stripe_webhooks import WEBHOOK_SECRET

    return WebhookEndpoint.objects.create(
        id="we_test_portal",
        livemode=False,
        secret=WEBHOOK_SECRET,
        url="https://billing.example.com/stripe/webhook/",
        api_version=API_VERSION,
        enabled_events=["*"],
        status="enabled",
        stripe_data={"id": "we_test_portal", "object": "webhook_endpoint"},
    )
