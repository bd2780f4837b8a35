"""Demo usage: four weeks of model calls, agent runs and tool calls for the demo
organisation, recorded through the real ingestion path (priced, paid, rolled up, counted
against budgets) so every page has real figures, and a few OpenMeter-style
``agent_invocation`` events through the events API's path. Deterministic, and written
once."""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta
from decimal import Decimal

from django.utils import timezone

from apps.core.progress import progress
from apps.customers.models import Organization
from apps.pricing.models import Product
from apps.usage import ingestion
from apps.usage.models import Meter, UsageEvent

DAYS = 27  # inside the 30 days ingestion accepts
USERS = ["user123", "alice", "bob", "carol", "dave", "eve", "frank"]
AGENTS = [("research-agent", "claude-sonnet-4"), ("support-agent", "gpt-4o-mini"),
          ("coding-agent", "claude-sonnet-4"), ("coding-agent", "gpt-4o")]  # fmt: skip
AGENT_INVOCATIONS = 12


def seed_meters() -> Meter:
    """The ``agent_invocation`` meter (seed 001's OpenMeter event): input and output tokens
    of the agent-tokens product, grouped by agent and model. Idempotent."""
    meter, _ = Meter.objects.update_or_create(
        slug="agent_invocation",
        defaults={
            "name": "Agent invocations",
            "description": "Tokens of each agent invocation, by agent and model.",
            "event_type": "agent_invocation",
            "product": Product.objects.get(code="agent-tokens"),
            "value_properties": {"input_tokens": "$.tokens_input",
                                 "output_tokens": "$.tokens_output"},
            "group_by": {"agent_id": "$.agent_id", "model": "$.model"},
            "aggregation": Meter.Aggregation.SUM,
            "is_active": True,
        },
    )  # fmt: skip
    return meter


def seed_agent_invocations(organization: Organization, *, now=None) -> int:
    """A handful of agent invocations over the last hours, sent as CloudEvents through the
    events API's path (parsed, metered, then ingested like any usage). Returns how many
    were accepted."""
    from apps.usage.api.cloudevents import record_cloud_events

    now = now or timezone.now()
    rng = random.Random(20261124)
    events = []
    for n in range(AGENT_INVOCATIONS):
        agent, model = AGENTS[n % len(AGENTS)]
        at = now - timedelta(minutes=17 + 41 * n)
        events.append(
            {"specversion": "1.0", "id": f"demo-agent-invocation-{n}", "source": "demo-agents",
             "type": "agent_invocation", "subject": organization.slug,
             "time": at.isoformat(),
             "data": {"agent_id": agent, "model": model,
                      "tokens_input": rng.randint(500, 12_000),
                      "tokens_output": rng.randint(100, 3_000),
                      "duration_ms": rng.randint(800, 45_000)}}
        )  # fmt: skip
    results = record_cloud_events(events, api_key=None, now=now, actor="demo")
    return sum(result.status == ingestion.Outcome.ACCEPTED for result in results)


def _event(rng: random.Random, day, n: int, tz) -> ingestion.EventInput:
    roll = rng.random()
    user = rng.choice(USERS[: 3 + n % 5])
    if roll < 0.45:
        product = rng.choice(["gpt-4o-mini", "gpt-4o", "claude-sonnet-4"])
        content = {"dimensions": {"input_tokens": Decimal(rng.randint(2_000, 60_000)),
                                  "output_tokens": Decimal(rng.randint(300, 8_000))}}  # fmt: skip
    elif roll < 0.75:
        product, content = "agent-run", {"usage_amount": Decimal(rng.randint(1, 6))}
    elif roll < 0.9:
        product, content = "mcp-tool-call", {"usage_amount": Decimal(rng.randint(1, 40))}
    else:
        product = "text-embedding-3"
        content = {"usage_amount": Decimal(rng.randint(10_000, 400_000))}
    at = datetime.combine(day, time(8), tzinfo=tz) + timedelta(minutes=rng.randint(0, 14 * 60))
    key = f"demo-{day:%Y%m%d}-{n}"
    return ingestion.EventInput(
        idempotency_key=key,
        product_id=product,
        fingerprint=ingestion.fingerprint({"key": key, "product": product, **content}),
        usage_amount=content.get("usage_amount"),
        dimensions=content.get("dimensions"),
        user_id=user,
        session_id=f"session-{day:%m%d}-{n % 9}",
        occurred_at=at,
    )


def seed_usage(
    organization: Organization, *, days: int = DAYS, per_day: int = 60, write=None
) -> int:
    """Records ``days`` days of usage up to now, once: nothing if the organisation already
    has usage. Returns the number of events accepted."""
    if UsageEvent.objects.filter(organization=organization).exists():
        return 0
    rng = random.Random(20261123)
    tz = organization.tz
    now = timezone.now()
    today = now.astimezone(tz).date()
    accepted = 0
    offsets = range(days, -1, -1)
    if write is not None:
        offsets = progress(offsets, days + 1, write, "days of usage")
    for offset in offsets:
        day = today - timedelta(days=offset)
        # Busier on weekdays, and growing over the month: a forecast worth drawing.
        count = int(per_day * (1 + (days - offset) / days) * (0.5 if day.weekday() >= 5 else 1))
        events = [_event(rng, day, n, tz) for n in range(count)]
        events = [e for e in events if e.occurred_at <= now]
        outcomes = ingestion.ingest(organization=organization, events=events, actor="demo")
        accepted += sum(o.status == o.ACCEPTED for o in outcomes)
    return accepted + seed_agent_invocations(organization, now=now)


def close_last_month(organization: Organization):
    """The statement of the month before this one (the demo's usage reaches into it),
    final but not emailed: the demo has a statement to show."""
    from datetime import timedelta

    from apps.pricing.periods import MONTH, period_bounds
    from apps.usage import statements

    this_month, _ = period_bounds(timezone.now(), MONTH, organization.tz)
    start, end = period_bounds(this_month - timedelta(days=1), MONTH, organization.tz)
    return statements.close_period(
        organization=organization, period_start=start, period_end=end, until="finalize"
    )
