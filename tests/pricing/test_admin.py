from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
import tablib
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from apps.pricing.models import IncludedQuota, PriceRule
from apps.pricing.resources import PriceRuleResource
from apps.pricing.services import TierSpec
from tests.pricing.factories import PlanFactory, ProductFactory, ServiceTypeFactory, price

pytestmark = pytest.mark.django_db

ADD = "/admin/pricing/pricerule/add/"


@pytest.fixture
def staff(client):
    client.force_login(
        get_user_model().objects.create_superuser("fin", "fin@example.com", "pw-fin-12345")
    )
    return client


def rule_form(product, **overrides):
    data = {
        "product": product.pk,
        "plan": "",
        "dimension": "units",
        "pricing_model": "per_unit",
        "unit_price": "0.01",
        "package_price": "0",
        "free_allowance": "0",
        "minimum_charge": "0",
        "effective_from_0": "2026-01-01",
        "effective_from_1": "00:00:00",
        "tiers-TOTAL_FORMS": "0",
        "tiers-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


def tiers(*rows):
    data = {"tiers-TOTAL_FORMS": str(len(rows)), "tiers-INITIAL_FORMS": "0"}
    for index, (up_to, unit_price) in enumerate(rows):
        data[f"tiers-{index}-up_to"] = up_to
        data[f"tiers-{index}-unit_price"] = unit_price
        data[f"tiers-{index}-flat_fee"] = "0"
    return data


def test_adding_a_new_version_in_the_admin_ends_the_one_in_force(staff):
    product = ProductFactory()
    first = price(product, unit_price="0.02")

    response = staff.post(ADD, rule_form(product, unit_price="0.01", effective_from_0="2026-06-01"))

    assert response.status_code == 302, response.content.decode()[:2000]
    first.refresh_from_db()
    assert first.effective_to == datetime(2026, 6, 1, tzinfo=UTC)
    assert PriceRule.objects.get(effective_from__month=6).unit_price == D("0.01")


def test_graduated_tiers_are_saved_with_their_rule(staff):
    product = ProductFactory()

    response = staff.post(
        ADD,
        rule_form(product, pricing_model="graduated") | tiers(("1000", "0.002"), ("", "0.001")),
    )

    assert response.status_code == 302
    rule = PriceRule.objects.get()
    assert [(t.up_to, t.unit_price) for t in rule.tiers.all()] == [
        (D(1000), D("0.002")),
        (None, D("0.001")),
    ]


def test_tiers_out_of_order_are_refused_with_nothing_saved(staff):
    product = ProductFactory()

    response = staff.post(
        ADD,
        rule_form(product, pricing_model="graduated") | tiers(("1000", "0.002"), ("1000", "0.001")),
    )

    assert response.status_code == 200
    assert not PriceRule.objects.exists()


def test_a_tiered_rule_without_an_open_last_tier_is_refused(staff):
    product = ProductFactory()

    response = staff.post(
        ADD, rule_form(product, pricing_model="volume") | tiers(("1000", "0.002"))
    )

    assert response.status_code == 200
    assert "last tier must be without an upper bound" in response.content.decode()
    assert not PriceRule.objects.exists()


def test_an_overlapping_version_is_refused_in_the_admin(staff):
    product = ProductFactory()
    price(product, since=datetime(2026, 1, 1, tzinfo=UTC))
    price(product, since=datetime(2026, 6, 1, tzinfo=UTC))

    response = staff.post(ADD, rule_form(product, effective_from_0="2026-03-01"))

    assert response.status_code == 200
    assert "Another version covers part of this time" in response.content.decode()
    assert PriceRule.objects.count() == 2


def test_a_price_in_force_is_read_only(staff):
    rule = price(ProductFactory(), unit_price="0.02")

    page = staff.get(f"/admin/pricing/pricerule/{rule.pk}/change/").content.decode()
    staff.post(
        f"/admin/pricing/pricerule/{rule.pk}/change/", rule_form(rule.product, unit_price="9")
    )

    assert 'name="unit_price"' not in page
    rule.refresh_from_db()
    assert rule.unit_price == D("0.02")


def test_a_scheduled_price_can_still_be_edited(staff):
    product = ProductFactory()
    start = timezone.now() + timedelta(days=30)
    rule = price(product, unit_price="0.02", since=start)

    response = staff.post(
        f"/admin/pricing/pricerule/{rule.pk}/change/",
        rule_form(
            product,
            unit_price="0.03",
            effective_from_0=start.strftime("%Y-%m-%d"),
            effective_from_1=start.strftime("%H:%M:%S"),
        ),
    )

    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.unit_price == D("0.03")


def test_what_would_this_cost_runs_the_engine_and_changes_nothing(staff):
    product = ProductFactory(code="llm", dimensions=["input_tokens", "output_tokens"])
    price(product, dimension="input_tokens", unit_price="0.000003")
    price(product, dimension="output_tokens", unit_price="0.000015")
    before = PriceRule.objects.count()

    response = staff.get(
        "/admin/pricing/pricerule/what-would-it-cost/",
        {"product": product.pk, "quantities": "input_tokens=1000, output_tokens=500"},
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert "0.0105" in page and 'id="cost-breakdown"' in page
    assert PriceRule.objects.count() == before


def test_what_would_this_cost_explains_a_missing_price(staff):
    product = ProductFactory()

    response = staff.get(
        "/admin/pricing/pricerule/what-would-it-cost/",
        {"product": product.pk, "quantities": "10"},
    )

    assert "No price for" in response.content.decode()


def test_a_plan_is_edited_with_its_included_quotas(staff):
    plan = PlanFactory()
    service_type = ServiceTypeFactory()

    response = staff.post(
        f"/admin/pricing/plan/{plan.pk}/change/",
        {
            "code": plan.code,
            "name": plan.name,
            "tier": "pro",
            "billing_interval": "month",
            "base_fee": "49",
            "currency": "USD",
            "trial_days": "14",
            "is_public": "on",
            "is_active": "on",
            "sort_order": "0",
            "stripe_price_id": "",
            "included_quotas-TOTAL_FORMS": "1",
            "included_quotas-INITIAL_FORMS": "0",
            "included_quotas-0-service_type": service_type.pk,
            "included_quotas-0-quantity": "1000000",
            "included_quotas-0-period": "month",
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    assert IncludedQuota.objects.get(plan=plan).quantity == D(1_000_000)


# --- price sheets as files ---------------------------------------------------------------


def sheet(*rows):
    dataset = tablib.Dataset(
        headers=[
            "plan",
            "product",
            "dimension",
            "pricing_model",
            "unit_price",
            "tiers",
            "package_size",
            "package_price",
            "free_allowance",
            "minimum_charge",
            "effective_from",
            "effective_to",
        ]  # fmt: skip
    )
    for row in rows:
        dataset.append(row)
    return dataset


def row(product, plan="", unit_price="0.01", since="2026-01-01T00:00:00+00:00", **over):
    values = {
        "pricing_model": "per_unit", "tiers": "", "package_size": "", "package_price": "0",
        "free_allowance": "0", "minimum_charge": "0", "effective_to": "",
    }  # fmt: skip
    values.update(over)
    return (
        plan, product, "units", values["pricing_model"], unit_price, values["tiers"],
        values["package_size"], values["package_price"], values["free_allowance"],
        values["minimum_charge"], since, values["effective_to"],
    )  # fmt: skip


def test_an_import_preview_saves_nothing_and_the_confirmed_import_saves_versions():
    ProductFactory(code="calls")
    dataset = sheet(
        row("calls", unit_price="0.02"),
        row("calls", unit_price="0.01", since="2026-06-01T00:00:00+00:00"),
        row("calls", pricing_model="graduated", tiers="100:0.5|inf:0.25",
            since="2026-09-01T00:00:00+00:00"),
    )  # fmt: skip

    preview = PriceRuleResource().import_data(dataset, dry_run=True)
    assert not preview.has_errors() and not preview.has_validation_errors()
    assert [r.import_type for r in preview.rows] == ["new", "new", "new"]
    assert not PriceRule.objects.exists()

    PriceRuleResource().import_data(dataset, dry_run=False)
    versions = list(PriceRule.objects.order_by("effective_from"))
    assert [v.unit_price for v in versions[:2]] == [D("0.02"), D("0.01")]
    assert versions[0].effective_to == versions[1].effective_from
    assert versions[2].tiers.count() == 2


def test_importing_the_same_sheet_twice_changes_nothing():
    ProductFactory(code="calls")
    dataset = sheet(row("calls", unit_price="0.02"))
    PriceRuleResource().import_data(dataset, dry_run=False)

    again = PriceRuleResource().import_data(dataset, dry_run=False)

    assert [r.import_type for r in again.rows] == ["skip"]
    assert PriceRule.objects.count() == 1


def test_an_import_that_would_rewrite_a_published_price_is_refused():
    ProductFactory(code="calls")
    PriceRuleResource().import_data(sheet(row("calls", unit_price="0.02")), dry_run=False)

    result = PriceRuleResource().import_data(sheet(row("calls", unit_price="0.99")), dry_run=True)

    assert result.has_validation_errors()
    assert PriceRule.objects.get().unit_price == D("0.02")


def test_import_rows_with_bad_tiers_or_unknown_products_are_reported():
    ProductFactory(code="calls")
    result = PriceRuleResource().import_data(
        sheet(
            row("calls", pricing_model="graduated", tiers="100:0.5|50:0.25|inf:0.1"),
            row("no-such-product"),
        ),
        dry_run=True,
    )

    assert result.has_validation_errors() or result.has_errors()
    assert not PriceRule.objects.exists()


def test_the_export_round_trips_through_import():
    product = ProductFactory(code="calls")
    price(
        product,
        pricing_model="graduated",
        unit_price="0",
        tiers=[TierSpec(D(100), D(1)), TierSpec(None, D("0.5"))],
    )

    exported = PriceRuleResource().export()
    assert exported.dict[0]["tiers"] == "100:1|inf:0.5"

    result = PriceRuleResource().import_data(exported, dry_run=True)
    assert [r.import_type for r in result.rows] == ["skip"]


def test_the_admin_import_page_previews_an_uploaded_csv(staff):
    ProductFactory(code="calls")
    csv = sheet(row("calls", unit_price="0.02")).export("csv").encode()

    response = staff.post(
        "/admin/pricing/pricerule/import/",
        {
            "resource": "0",
            "format": "0",
            "import_file": SimpleUploadedFile("prices.csv", csv, content_type="text/csv"),
        },
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert "process_import" in page  # the confirmation form of the preview
    assert "calls" in page
    assert not PriceRule.objects.exists()
