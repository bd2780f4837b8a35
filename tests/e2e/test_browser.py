"""The customer pages in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``; ``.ci/run`` installs them). Each page is saved as a screenshot in
``E2E_SCREENSHOT_DIR`` (default ``artifacts/e2e``)."""

import os
import shutil
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from apps.budgets.models import Budget
from apps.customers.models import ApiKey
from tests.clock import MID_MONTH, travel

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = os.environ.get("CHROMIUM_BINARY") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = (
    os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
)
SCREENSHOTS = Path(os.environ.get("E2E_SCREENSHOT_DIR", "artifacts/e2e"))

PAGES = [
    ("overview", "/billing/", "Overview"),
    ("usage", "/billing/usage/?split=product", "Usage"),
    ("budgets", "/billing/budgets/", "Budgets"),
    ("wallet", "/billing/wallet/", "Wallet and credits"),
    ("plans", "/billing/plans/", "Plans"),
    ("invoices", "/billing/invoices/", "Invoices"),
    ("statements", "/billing/statements/", "Statements"),
    ("api-keys", "/billing/keys/", "API keys"),
    ("alerts", "/billing/alerts/", "Alert channels"),
    ("members", "/billing/members/", "Members"),
]


@pytest.fixture
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("E2E_REQUIRED"):
            pytest.fail(f"E2E_REQUIRED is set but {CHROMIUM} or {CHROMEDRIVER} is missing")
        pytest.skip(
            "no Chromium here: `apt-get install -y chromium chromium-driver` "
            "(.ci/run does) or set CHROMIUM_BINARY and CHROMEDRIVER"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1400"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    violations = policy_violations(driver)
    driver.quit()
    assert not violations, violations  # every page ran under its Content-Security-Policy


def policy_violations(driver) -> list[str]:
    """What the browser's console said the Content-Security-Policy refused."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]


@pytest.fixture
def demo(transactional_db):
    """The demo, seeded and browsed in the middle of a month (the live server's thread
    shares the clock): its charts have a point for each of twenty days."""
    with travel(MID_MONTH):
        call_command("seed_demo", stdout=StringIO())
        yield


def click_and_wait(driver, element) -> None:
    """Clicks what submits a form or follows a link, and waits for the next page."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    element.click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(element))
    WebDriverWait(driver, 15).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def sign_in(driver, base: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/accounts/login/")
    driver.find_element(By.ID, "id_username").send_keys("customer")
    driver.find_element(By.ID, "id_password").send_keys("customer-demo-password")
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    assert driver.current_url.endswith("/billing/"), driver.current_url


def shot(driver, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    return path


def test_the_demo_customer_walks_every_page(browser, demo, live_server):
    from selenium.webdriver.common.by import By

    sign_in(browser, live_server.url)
    for name, path, heading in PAGES:
        browser.get(live_server.url + path)
        assert browser.find_element(By.TAG_NAME, "h1").text == heading
        assert "Server Error" not in browser.page_source
        assert "Demo Labs" in browser.title
        shot(browser, name)

    browser.get(live_server.url + "/billing/")
    points = browser.find_elements(By.CSS_SELECTOR, "svg.chart circle")
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.chart rect")
    assert len(points) >= 10 and not bars
    assert len(browser.find_elements(By.CSS_SELECTOR, "[role=progressbar]")) == 3
    browser.get(live_server.url + "/billing/usage/")
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.chart rect")) >= 20

    # The chart's box is sized before anything is drawn: no layout shift.
    browser.get(live_server.url + "/billing/")
    box = browser.find_element(By.CSS_SELECTOR, ".chart-box")
    assert abs(box.size["width"] / box.size["height"] - 720 / 260) < 0.05

    # On a phone: no horizontal scrolling of the page itself.
    browser.set_window_size(390, 1200)
    browser.get(live_server.url + "/billing/")
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, width
    shot(browser, "overview-phone")


def test_changing_a_budget_in_the_browser(browser, demo, live_server):
    from selenium.webdriver.common.by import By

    sign_in(browser, live_server.url)
    budget = Budget.objects.get(name="Monthly spend")
    browser.get(f"{live_server.url}/billing/budgets/{budget.pk}/")
    click_and_wait(browser, browser.find_element(By.LINK_TEXT, "Edit"))
    limit = browser.find_element(By.ID, "id_limit")
    limit.clear()
    limit.send_keys("275")
    thresholds = browser.find_element(By.ID, "id_thresholds")
    thresholds.clear()
    thresholds.send_keys("25, 50, 90, 100")
    shot(browser, "budget-edit")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]"))
    assert "is saved" in browser.find_element(By.CSS_SELECTOR, ".messages").text
    assert "$275.00" in browser.page_source
    shot(browser, "budget-detail")
    budget.refresh_from_db()
    assert budget.limit == Decimal(275) and budget.thresholds == [25, 50, 90, 100]

    # Pause it from its page.
    click_and_wait(browser, browser.find_element(By.XPATH, "//button[normalize-space()='Pause']"))
    assert "paused" in browser.find_element(By.CSS_SELECTOR, ".messages").text
    budget.refresh_from_db()
    assert not budget.is_active


def test_creating_and_revoking_a_key_in_the_browser(browser, demo, live_server):
    from selenium.webdriver.common.by import By

    sign_in(browser, live_server.url)
    browser.get(live_server.url + "/billing/keys/")
    browser.find_element(By.ID, "id_name").send_keys("e2e worker")
    click_and_wait(
        browser, browser.find_element(By.XPATH, "//button[normalize-space()='Create key']")
    )
    secret = browser.find_element(By.ID, "new-key").text
    assert secret.startswith("bp_org_")
    shot(browser, "api-key-created")
    key = ApiKey.objects.get(name="e2e worker")
    assert key.hash_key(secret) == key.secret_hash

    browser.get(live_server.url + "/billing/keys/")
    assert secret not in browser.page_source  # shown once
    revoke = browser.find_element(By.CSS_SELECTOR, "button[aria-label='Revoke e2e worker']")
    click_and_wait(browser, revoke)
    assert "is revoked" in browser.find_element(By.CSS_SELECTOR, ".messages").text
    shot(browser, "api-key-revoked")
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_the_keyboard_reaches_the_skip_link_first_and_the_pages_by_tab(browser, demo, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    sign_in(browser, live_server.url)
    browser.get(live_server.url + "/billing/")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    active = browser.switch_to.active_element
    assert active.text == "Skip to content"
    for _ in range(12):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        if browser.switch_to.active_element.text == "Usage":
            break
    else:
        pytest.fail("the Usage link is not reachable by Tab")
    link = browser.switch_to.active_element
    link.send_keys(Keys.ENTER)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 15).until(lambda d: d.current_url.endswith("/billing/usage/"))


def test_the_finance_dashboard_and_an_organization_page(browser, demo, live_server):
    from selenium.webdriver.common.by import By

    from apps.customers.models import Organization

    browser.get(live_server.url + "/admin/login/")
    browser.find_element(By.ID, "id_username").send_keys("admin")
    browser.find_element(By.ID, "id_password").send_keys("admin-demo-password")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
    dashboard = browser.find_element(By.ID, "finance-dashboard")
    assert "usage revenue this month" in dashboard.text.lower()
    assert browser.find_elements(By.CSS_SELECTOR, "#finance-dashboard svg.chart rect")
    shot(browser, "admin-dashboard")

    organization = Organization.objects.get(slug="demo")
    browser.get(f"{live_server.url}/admin/customers/organization/{organization.pk}/change/")
    assert "Demo Labs" in browser.page_source
    shot(browser, "admin-organization")


def test_the_api_reference_renders_under_the_content_security_policy(browser, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live_server.url + "/api/docs/")
    WebDriverWait(browser, 20).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock")
    )
    assert "Billing portal API" in browser.find_element(By.CSS_SELECTOR, ".swagger-ui .title").text
    shot(browser, "api-docs")
    browser.get(live_server.url + "/api/redoc/")
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "h1"))
    assert "Billing portal API" in browser.find_element(By.CSS_SELECTOR, "h1").text
    shot(browser, "api-redoc")
