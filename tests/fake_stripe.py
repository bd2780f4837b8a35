"""A small, stateful Stripe on 127.0.0.1 for the tests: the stripe SDK and dj-stripe talk to
it over HTTP exactly as they talk to api.stripe.com.

It keeps customers, products, prices, meters, Checkout sessions, subscriptions, invoices,
payment intents, charges and events in memory, answers with objects shaped as Stripe's
API version 2026-08-26.dahlia sends them (checked against Stripe's published samples),
honours ``Idempotency-Key`` (a retried request gets the first answer), and records the
events a real account would emit. ``tests/stripe_webhooks.py`` signs and delivers those
events to the portal's webhook endpoint.

Things a customer does on Stripe's pages (completing Checkout, paying or failing an
invoice, a refund in the dashboard, time passing to the end of a trial) are methods here,
called by the tests.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_VERSION = "2026-08-26.dahlia"
ACCOUNT_ID = "acct_1FakeBillingPortal"
MONTH = 30 * 86400


def decode_form(body: str) -> dict:
    """Stripe's form encoding (``a[b][0][c]=v``) to nested dicts and lists."""
    root: dict = {}
    for key, value in urllib.parse.parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+|\[\]", key)
        node = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "[]":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _listify(root)


def _listify(node):
    if isinstance(node, dict):
        if node and all(key.isdigit() for key in node):
            return [_listify(node[key]) for key in sorted(node, key=int)]
        return {key: _listify(value) for key, value in node.items()}
    return node


class StripeError(Exception):
    def __init__(self, status: int, message: str, code: str = "", param: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


class FakeStripe:
    def __init__(self, secret_key: str = "sk_test_fake") -> None:
        self.secret_key = secret_key
        self.objects: dict[str, dict] = {}
        self.events: list[dict] = []
        self.requests: list[tuple[str, str]] = []
        self.idempotent: dict[str, tuple[int, dict]] = {}
        self.meter_event_identifiers: set[str] = set()
        self.meter_events: list[dict] = []
        self._pending: dict[str, dict] = {}  # Checkout session -> what completing it sells
        self.lock = threading.RLock()
        self.clock = int(time.time())
        self._ids = itertools.count(1)
        self.server: ThreadingHTTPServer | None = None

    # --- server --------------------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                status, payload = fake.handle(method, self.path, body, dict(self.headers))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{secrets.token_hex(7)}")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_DELETE(self):
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def handle(self, method: str, raw_path: str, body: str, headers: dict) -> tuple[int, dict]:
        headers = {key.lower(): value for key, value in headers.items()}
        path, _, query = raw_path.partition("?")
        with self.lock:
            self.requests.append((method, path))
            if headers.get("authorization") != f"Bearer {self.secret_key}":
                return 401, _error("invalid_request_error", "Invalid API Key provided.")
            params = decode_form(query if method != "POST" else body)
            key = headers.get("idempotency-key")
            if method == "POST" and key and key in self.idempotent:
                return self.idempotent[key]
            try:
                result = (200, self.route(method, path, params))
            except StripeError as error:
                kind = "invalid_request_error"
                result = (error.status, _error(kind, error.message, error.code, error.param))
            if method == "POST" and key:
                self.idempotent[key] = result
            return result

    # --- helpers -------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}{secrets.token_hex(6)}"

    def now(self) -> int:
        return self.clock

    def get(self, object_id: str, kind: str | None = None) -> dict:
        obj = self.objects.get(object_id)
        if obj is None or (kind and obj["object"] != kind):
            raise StripeError(
                404, f"No such {kind or 'object'}: '{object_id}'", "resource_missing", "id"
            )
        return obj

    def emit(self, event_type: str, obj: dict, previous: dict | None = None) -> dict:
        event = {
            "id": self.new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now(),
            "data": {"object": json.loads(json.dumps(obj)), "previous_attributes": previous or {}},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        self.objects[event["id"]] = event
        self.events.append(event)
        return event

    def events_of(self, event_type: str) -> list[dict]:
        return [event for event in self.events if event["type"] == event_type]

    def _list(self, url: str, items: list[dict], params: dict) -> dict:
        limit = int(params.get("limit", 100))
        after = params.get("starting_after")
        if after:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        return {"object": "list", "url": url, "has_more": len(items) > limit, "data": items[:limit]}

    # --- routes --------------------------------------------------------------------------

    def route(self, method: str, path: str, params: dict) -> dict:
        parts = path.strip("/").split("/")[1:]  # drop "v1"
        match (method, parts):
            case ("GET", ["account"]):
                return self.account()
            case ("POST", ["customers"]):
                return self.create_customer(params)
            case ("GET", ["customers", cid]):
                return self.get(cid, "customer")
            case ("POST", ["customers", cid]):
                return self.update(cid, "customer", params, "customer.updated")
            case ("POST", ["products"]):
                return self.create_product(params)
            case ("GET", ["products", pid, "features"]):
                return self._list(f"/v1/products/{pid}/features", [], params)
            case ("GET", ["products", pid]):
                return self.get(pid, "product")
            case ("POST", ["products", pid]):
                return self.update(pid, "product", params, "product.updated")
            case ("POST", ["prices"]):
                return self.create_price(params)
            case ("GET", ["prices"]):
                return self._list("/v1/prices", self._prices(params), params)
            case ("GET", ["prices", pid]):
                return self.get(pid, "price")
            case ("POST", ["billing", "meters"]):
                return self.create_meter(params)
            case ("GET", ["billing", "meters"]):
                return self._list("/v1/billing/meters", self._all("billing.meter"), params)
            case ("POST", ["billing", "meter_events"]):
                return self.create_meter_event(params)
            case ("POST", ["invoiceitems"]):
                return self.create_invoice_item(params)
            case ("GET", ["invoiceitems"]):
                items = [
                    i
                    for i in self._all("invoiceitem")
                    if not params.get("customer") or i["customer"] == params["customer"]
                ]
                return self._list("/v1/invoiceitems", items, params)
            case ("POST", ["checkout", "sessions"]):
                return self.create_checkout_session(params)
            case ("GET", ["checkout", "sessions", sid]):
                return self.get(sid, "checkout.session")
            case ("POST", ["billing_portal", "sessions"]):
                return self.create_portal_session(params)
            case ("GET", ["subscriptions"]):
                return self._list("/v1/subscriptions", self._subscriptions(params), params)
            case ("GET", ["subscriptions", sid]):
                return self.get(sid, "subscription")
            case ("POST", ["subscriptions", sid]):
                return self.update_subscription(sid, params)
            case ("DELETE", ["subscriptions", sid]):
                return self.cancel_subscription_now(sid)
            case ("GET", ["invoices"]):
                return self._list("/v1/invoices", self._all("invoice"), params)
            case ("GET", ["invoices", iid]):
                return self.get(iid, "invoice")
            case ("GET", ["payment_intents", pid]):
                return self.get(pid, "payment_intent")
            case ("GET", ["charges", cid]):
                return self.get(cid, "charge")
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")

    def _all(self, kind: str) -> list[dict]:
        return [obj for obj in self.objects.values() if obj["object"] == kind]

    def update(self, object_id: str, kind: str, params: dict, event_type: str) -> dict:
        obj = self.get(object_id, kind)
        previous = {}
        for key, value in params.items():
            if key == "expand":
                continue
            if key == "metadata":
                previous["metadata"] = dict(obj.get("metadata") or {})
                obj["metadata"] = {**(obj.get("metadata") or {}), **value}
                continue
            previous[key] = obj.get(key)
            obj[key] = _typed(value)
        self.emit(event_type, obj, previous)
        return obj

    # --- account, customers, catalog ---------------------------------------------------------

    def account(self) -> dict:
        return {
            "id": ACCOUNT_ID,
            "object": "account",
            "business_profile": {"name": "Billing Portal (test)", "url": None},
            "business_type": "company",
            "capabilities": {},
            "charges_enabled": True,
            "controller": {"type": "account"},
            "country": "US",
            "created": 1700000000,
            "default_currency": "usd",
            "details_submitted": True,
            "email": "owner@example.com",
            "metadata": {},
            "payouts_enabled": True,
            "settings": {
                "branding": {"icon": None, "logo": None, "primary_color": None},
                "dashboard": {"display_name": "Billing Portal", "timezone": "Etc/UTC"},
            },
            "type": "standard",
        }

    def create_customer(self, params: dict) -> dict:
        customer = {
            "id": self.new_id("cus"),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": self.now(),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": params.get("description"),
            "discount": None,
            "email": params.get("email"),
            "invoice_prefix": secrets.token_hex(4).upper(),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "name": params.get("name"),
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        self.objects[customer["id"]] = customer
        self.emit("customer.created", customer)
        return customer

    def create_product(self, params: dict) -> dict:
        product = {
            "id": params.get("id") or self.new_id("prod"),
            "object": "product",
            "active": params.get("active", "true") == "true",
            "created": self.now(),
            "default_price": None,
            "description": params.get("description"),
            "images": [],
            "livemode": False,
            "marketing_features": [],
            "metadata": params.get("metadata") or {},
            "name": params["name"],
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "type": "service",
            "unit_label": params.get("unit_label"),
            "updated": self.now(),
            "url": None,
        }
        if product["id"] in self.objects:
            raise StripeError(400, "Product already exists.", "resource_already_exists", "id")
        self.objects[product["id"]] = product
        self.emit("product.created", product)
        return product

    def create_price(self, params: dict) -> dict:
        product = params.get("product")
        if product is None and "product_data" in params:
            product = self.create_product(params["product_data"])["id"]
        self.get(product, "product")
        recurring = params.get("recurring")
        if recurring:
            recurring = {
                "interval": recurring.get("interval", "month"),
                "interval_count": int(recurring.get("interval_count", 1)),
                "meter": recurring.get("meter"),
                "trial_period_days": None,
                "usage_type": recurring.get("usage_type", "licensed"),
            }
        lookup_key = params.get("lookup_key")
        taken = any(p.get("lookup_key") == lookup_key for p in self._all("price"))
        if lookup_key and taken and params.get("transfer_lookup_key") != "true":
            raise StripeError(400, "A price with this lookup_key exists.", "lookup_key")
        unit_amount_decimal = params.get("unit_amount_decimal") or params.get("unit_amount")
        price = {
            "id": self.new_id("price"),
            "object": "price",
            "active": True,
            "billing_scheme": "per_unit",
            "created": self.now(),
            "currency": params["currency"],
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": lookup_key,
            "metadata": params.get("metadata") or {},
            "nickname": params.get("nickname"),
            "product": product,
            "recurring": recurring,
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if recurring else "one_time",
            "unit_amount": int(float(unit_amount_decimal)) if unit_amount_decimal else None,
            "unit_amount_decimal": unit_amount_decimal,
        }
        self.objects[price["id"]] = price
        self.emit("price.created", price)
        return price

    def _prices(self, params: dict) -> list[dict]:
        prices = self._all("price")
        if "lookup_keys" in params:
            prices = [p for p in prices if p.get("lookup_key") in params["lookup_keys"]]
        if "product" in params:
            prices = [p for p in prices if p["product"] == params["product"]]
        if "active" in params:
            prices = [p for p in prices if p["active"] == (params["active"] == "true")]
        return prices

    def create_meter(self, params: dict) -> dict:
        meter = {
            "id": self.new_id("mtr"),
            "object": "billing.meter",
            "created": self.now(),
            "customer_mapping": params.get("customer_mapping")
            or {"event_payload_key": "stripe_customer_id", "type": "by_id"},
            "default_aggregation": params.get("default_aggregation") or {"formula": "sum"},
            "display_name": params["display_name"],
            "event_name": params["event_name"],
            "event_time_window": None,
            "livemode": False,
            "status": "active",
            "status_transitions": {"deactivated_at": None},
            "updated": self.now(),
            "value_settings": params.get("value_settings") or {"event_payload_key": "value"},
        }
        if any(m["event_name"] == meter["event_name"] for m in self._all("billing.meter")):
            raise StripeError(400, "A meter with this event_name exists.", "", "event_name")
        self.objects[meter["id"]] = meter
        return meter

    def create_meter_event(self, params: dict) -> dict:
        identifier = params.get("identifier") or self.new_id("mev")
        if identifier in self.meter_event_identifiers:
            raise StripeError(
                400, "An event with this identifier already exists.", "", "identifier"
            )
        if not any(m["event_name"] == params["event_name"] for m in self._all("billing.meter")):
            raise StripeError(400, "No active meter for this event_name.", "", "event_name")
        payload = params.get("payload") or {}
        self.get(payload.get("stripe_customer_id", ""), "customer")
        int(payload["value"])  # Stripe takes whole numbers
        event = {
            "object": "billing.meter_event",
            "created": self.now(),
            "event_name": params["event_name"],
            "identifier": identifier,
            "livemode": False,
            "payload": payload,
            "timestamp": int(params.get("timestamp") or self.now()),
        }
        self.meter_event_identifiers.add(identifier)
        self.meter_events.append(event)
        return event

    def create_invoice_item(self, params: dict) -> dict:
        """A pending invoice item: the customer's next invoice bills it."""
        self.get(params["customer"], "customer")
        item = {
            "id": self.new_id("ii"),
            "object": "invoiceitem",
            "amount": int(params["amount"]),
            "currency": params["currency"],
            "customer": params["customer"],
            "date": self.now(),
            "description": params.get("description"),
            "discountable": True,
            "invoice": None,
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "period": {"start": self.now(), "end": self.now()},
            "proration": False,
            "quantity": 1,
        }
        self.objects[item["id"]] = item
        return item

    def invoice_items(self, customer_id: str) -> list[dict]:
        return [o for o in self._all("invoiceitem") if o["customer"] == customer_id]

    def metered_total(self, event_name: str, customer_id: str) -> int:
        return sum(
            int(e["payload"]["value"])
            for e in self.meter_events
            if e["event_name"] == event_name and e["payload"]["stripe_customer_id"] == customer_id
        )

    # --- Checkout and the portal ---------------------------------------------------------------

    def create_checkout_session(self, params: dict) -> dict:
        mode = params["mode"]
        line_items = params.get("line_items") or []
        for item in line_items:
            if "price" in item:
                price = self.get(item["price"], "price")
                if mode == "payment" and price["recurring"]:
                    raise StripeError(400, "Recurring prices need mode=subscription.")
        amount_total = None
        currency = None
        if mode == "payment":
            amount_total = sum(
                int(item["price_data"]["unit_amount"]) * int(item.get("quantity", 1))
                for item in line_items
            )
            currency = line_items[0]["price_data"]["currency"]
        session_id = "cs_test_" + secrets.token_hex(24)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": amount_total,
            "amount_total": amount_total,
            "automatic_tax": {"enabled": False, "liability": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": self.now(),
            "currency": currency,
            "customer": params.get("customer"),
            "customer_creation": None,
            "customer_details": None,
            "customer_email": params.get("customer_email"),
            "expires_at": self.now() + 86400,
            "invoice": None,
            "livemode": False,
            "locale": None,
            "metadata": params.get("metadata") or {},
            "mode": mode,
            "payment_intent": None,
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "subscription": None,
            "success_url": params.get("success_url"),
            "ui_mode": "hosted",
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        }
        self._pending[session_id] = params
        self.objects[session_id] = session
        return session

    def complete_checkout(self, session_id: str) -> dict:
        """The customer pays on Stripe's page: creates what the session sells and emits
        the events Stripe would."""
        with self.lock:
            session = self.get(session_id, "checkout.session")
            params = self._pending[session_id]
            if session["mode"] == "subscription":
                sub_data = params.get("subscription_data") or {}
                subscription = self._create_subscription(
                    customer=session["customer"],
                    prices=[item["price"] for item in params["line_items"]],
                    trial_days=int(sub_data.get("trial_period_days") or 0),
                    metadata=sub_data.get("metadata") or {},
                )
                session["subscription"] = subscription["id"]
            else:
                intent, _charge = self._pay(
                    session["customer"],
                    session["amount_total"],
                    session["currency"],
                    (params.get("payment_intent_data") or {}).get("metadata") or {},
                )
                session["payment_intent"] = intent["id"]
            session["status"] = "complete"
            session["payment_status"] = "paid"
            self.emit("checkout.session.completed", session)
            return session

    def create_portal_session(self, params: dict) -> dict:
        self.get(params["customer"], "customer")
        session_id = self.new_id("bps")
        return {
            "id": session_id,
            "object": "billing_portal.session",
            "configuration": "bpc_fake",
            "created": self.now(),
            "customer": params["customer"],
            "flow": None,
            "livemode": False,
            "locale": None,
            "on_behalf_of": None,
            "return_url": params.get("return_url"),
            "url": f"https://billing.stripe.com/p/session/{session_id}",
        }

    # --- payments ----------------------------------------------------------------------------

    def _pay(self, customer: str, amount: int, currency: str, metadata: dict):
        intent_id = self.new_id("pi")
        charge_id = self.new_id("ch")
        charge = {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "balance_transaction": None,
            "billing_details": {"address": None, "email": None, "name": None, "phone": None},
            "captured": True,
            "created": self.now(),
            "currency": currency,
            "customer": customer,
            "description": None,
            "disputed": False,
            "failure_code": None,
            "failure_message": None,
            "livemode": False,
            "metadata": {},
            "outcome": {"network_status": "approved_by_network", "type": "authorized"},
            "paid": True,
            "payment_intent": intent_id,
            "payment_method": None,
            "payment_method_details": None,
            "receipt_url": None,
            "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False, "url": ""},
            "status": "succeeded",
        }
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": amount,
            "capture_method": "automatic",
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}",
            "confirmation_method": "automatic",
            "created": self.now(),
            "currency": currency,
            "customer": customer,
            "description": None,
            "last_payment_error": None,
            "latest_charge": charge_id,
            "livemode": False,
            "metadata": metadata,
            "payment_method": None,
            "payment_method_types": ["card"],
            "status": "succeeded",
        }
        self.objects[intent_id] = intent
        self.objects[charge_id] = charge
        self.emit("payment_intent.succeeded", intent)
        self.emit("charge.succeeded", charge)
        return intent, charge

    def refund(self, charge_id: str, amount: int | None = None) -> dict:
        with self.lock:
            charge = self.get(charge_id, "charge")
            amount = amount or charge["amount"] - charge["amount_refunded"]
            refund = {
                "id": self.new_id("re"),
                "object": "refund",
                "amount": amount,
                "charge": charge_id,
                "created": self.now(),
                "currency": charge["currency"],
                "metadata": {},
                "payment_intent": charge["payment_intent"],
                "reason": None,
                "status": "succeeded",
            }
            charge["refunds"]["data"].append(refund)
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
            self.emit("charge.refunded", charge)
            return refund

    # --- subscriptions and invoices ---------------------------------------------------------

    def _item(self, subscription_id: str, price_id: str, start: int, end: int) -> dict:
        price = self.get(price_id, "price")
        usage_type = (price["recurring"] or {}).get("usage_type")
        item = {
            "id": self.new_id("si"),
            "object": "subscription_item",
            "created": self.now(),
            "current_period_end": end,
            "current_period_start": start,
            "discounts": [],
            "metadata": {},
            "price": price,
            "subscription": subscription_id,
            "tax_rates": [],
        }
        if usage_type != "metered":
            item["quantity"] = 1
        return item

    def create_subscription(self, customer, prices, trial_days=0, metadata=None) -> dict:
        """A subscription made outside the portal (the dashboard, another integration)."""
        with self.lock:
            return self._create_subscription(customer, prices, trial_days, metadata or {})

    def _create_subscription(self, customer, prices, trial_days, metadata) -> dict:
        now = self.now()
        trial_end = now + trial_days * 86400 if trial_days else None
        start, end = now, trial_end or now + MONTH
        subscription_id = self.new_id("sub")
        items = [self._item(subscription_id, price, start, end) for price in prices]
        subscription = {
            "id": subscription_id,
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": end if trial_end else now,
            "billing_cycle_anchor_config": None,
            "billing_thresholds": None,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically",
            "created": now,
            "currency": items[0]["price"]["currency"],
            "customer": customer,
            "days_until_due": None,
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": [],
            "ended_at": None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "url": f"/v1/subscription_items?subscription={subscription_id}",
            },
            "latest_invoice": None,
            "livemode": False,
            "metadata": metadata,
            "next_pending_invoice_item_invoice": None,
            "on_behalf_of": None,
            "pause_collection": None,
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": None,
            "start_date": now,
            "status": "trialing" if trial_end else "active",
            "test_clock": None,
            "transfer_data": None,
            "trial_end": trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": now if trial_end else None,
        }
        self.objects[subscription_id] = subscription
        self.emit("customer.subscription.created", subscription)
        return subscription

    def _subscriptions(self, params: dict) -> list[dict]:
        subscriptions = self._all("subscription")
        if "customer" in params:
            subscriptions = [s for s in subscriptions if s["customer"] == params["customer"]]
        if params.get("status", "all") not in ("all",):
            subscriptions = [s for s in subscriptions if s["status"] == params["status"]]
        elif "status" not in params:
            subscriptions = [s for s in subscriptions if s["status"] != "canceled"]
        return subscriptions

    def update_subscription(self, subscription_id: str, params: dict) -> dict:
        subscription = self.get(subscription_id, "subscription")
        if subscription["status"] == "canceled":
            raise StripeError(400, "A canceled subscription can only update its metadata.")
        previous: dict = {}
        if "cancel_at_period_end" in params:
            previous["cancel_at_period_end"] = subscription["cancel_at_period_end"]
            at_end = params["cancel_at_period_end"] == "true"
            subscription["cancel_at_period_end"] = at_end
            period_end = subscription["items"]["data"][0]["current_period_end"]
            subscription["cancel_at"] = period_end if at_end else None
            subscription["canceled_at"] = self.now() if at_end else None
        if "items" in params:
            previous["items"] = json.loads(json.dumps(subscription["items"]))
            items = subscription["items"]["data"]
            for change in params["items"]:
                if "id" in change:
                    item = next(i for i in items if i["id"] == change["id"])
                    if change.get("deleted") == "true":
                        items.remove(item)
                    elif "price" in change:
                        item["price"] = self.get(change["price"], "price")
                else:
                    first = items[0]
                    items.append(
                        self._item(
                            subscription_id,
                            change["price"],
                            first["current_period_start"],
                            first["current_period_end"],
                        )
                    )
        if "metadata" in params:
            previous["metadata"] = dict(subscription["metadata"])
            subscription["metadata"] = {**subscription["metadata"], **params["metadata"]}
        self.emit("customer.subscription.updated", subscription, previous)
        return subscription

    def cancel_subscription_now(self, subscription_id: str) -> dict:
        subscription = self.get(subscription_id, "subscription")
        previous = {"status": subscription["status"]}
        subscription.update(status="canceled", canceled_at=self.now(), ended_at=self.now())
        self.emit("customer.subscription.deleted", subscription, previous)
        return subscription

    def end_trial(self, subscription_id: str) -> dict:
        """Time passes to the trial's end; the subscription becomes active."""
        with self.lock:
            subscription = self.get(subscription_id, "subscription")
            self.emit("customer.subscription.trial_will_end", subscription)
            previous = {"status": subscription["status"]}
            subscription["status"] = "active"
            self.emit("customer.subscription.updated", subscription, previous)
            return subscription

    def end_period(self, subscription_id: str) -> dict:
        """Time passes to the period's end: a subscription set to cancel there ends."""
        with self.lock:
            subscription = self.get(subscription_id, "subscription")
            if subscription["cancel_at_period_end"]:
                return self.cancel_subscription_now(subscription_id)
            for item in subscription["items"]["data"]:
                item["current_period_start"] = item["current_period_end"]
                item["current_period_end"] += MONTH
            self.emit("customer.subscription.updated", subscription)
            return subscription

    def fail_payment(self, subscription_id: str) -> dict:
        with self.lock:
            subscription = self.get(subscription_id, "subscription")
            previous = {"status": subscription["status"]}
            subscription["status"] = "past_due"
            self.emit("customer.subscription.updated", subscription, previous)
            return subscription


def invoice(fake: FakeStripe, subscription_id: str, *, paid: bool) -> dict:
    """Stripe closes the subscription's current period: an invoice for it (the base fee and
    the meters' usage), then paid or a failed payment."""
    with fake.lock:
        subscription = fake.get(subscription_id, "subscription")
        item = subscription["items"]["data"][0]
        start, end = item["current_period_start"], item["current_period_end"]
        customer = subscription["customer"]
        metered_items = [
            i for i in subscription["items"]["data"]
            if (i["price"]["recurring"] or {}).get("usage_type") == "metered"
        ]  # only the meters the subscription has a price on are billed  # fmt: skip
        invoice_id = fake.new_id("in")
        lines = []
        for i in metered_items:  # one line per metered price, in cents
            units = fake.metered_total(
                fake.objects[i["price"]["recurring"]["meter"]]["event_name"], customer
            )
            lines.append({
                "id": fake.new_id("il"), "object": "line_item", "amount": round(units / 10**4),
                "currency": subscription["currency"], "description": None, "discountable": True,
                "discounts": [], "invoice": invoice_id, "livemode": False, "metadata": {},
                "period": {"start": start, "end": end}, "quantity": units,
                "parent": {"type": "subscription_item_details", "subscription_item_details": {
                    "invoice_item": None, "proration": False, "proration_details": None,
                    "subscription": subscription_id, "subscription_item": i["id"]}},
                "pricing": {"type": "price_details", "unit_amount_decimal": "0.0001",
                            "price_details": {"price": i["price"]["id"],
                                              "product": i["price"]["product"]}},
            })  # fmt: skip
        base = sum(i["price"]["unit_amount"] or 0 for i in subscription["items"]["data"]
                   if (i["price"]["recurring"] or {}).get("usage_type") != "metered")  # fmt: skip
        total = base + sum(line["amount"] for line in lines)
        number = f"BP-{len(fake._all('invoice')) + 1:04d}"
        obj = {
            "id": invoice_id, "object": "invoice", "account_country": "US",
            "account_name": "Billing Portal (test)", "amount_due": total,
            "amount_paid": total if paid else 0, "amount_remaining": 0 if paid else total,
            "attempt_count": 1, "attempted": True, "auto_advance": True,
            "billing_reason": "subscription_cycle", "collection_method": "charge_automatically",
            "created": fake.now(), "currency": subscription["currency"], "customer": customer,
            "customer_email": None, "default_payment_method": None, "description": None,
            "discounts": [], "due_date": None, "ending_balance": 0,
            "hosted_invoice_url": f"https://invoice.stripe.com/i/{invoice_id}",
            "invoice_pdf": f"https://pay.stripe.com/invoice/{invoice_id}/pdf",
            "lines": {"object": "list", "data": lines, "has_more": False,
                      "url": f"/v1/invoices/{invoice_id}/lines"},
            "livemode": False, "metadata": {}, "number": number,
            "parent": {"type": "subscription_details",
                       "subscription_details": {"subscription": subscription_id}},
            "period_end": end, "period_start": start, "starting_balance": 0,
            "status": "paid" if paid else "open",
            "status_transitions": {
                "finalized_at": fake.now(), "paid_at": fake.now() if paid else None,
            },
            "subtotal": total, "total": total, "webhooks_delivered_at": None,
        }  # fmt: skip
        fake.objects[invoice_id] = obj
        fake.emit("invoice.created", obj)
        fake.emit("invoice.finalized", obj)
        fake.emit("invoice.paid" if paid else "invoice.payment_failed", obj)
        return obj


def _typed(value):
    if value in ("true", "false"):
        return value == "true"
    if value == "":
        return None
    return value


def _error(kind: str, message: str, code: str = "", param: str = "") -> dict:
    error = {"type": kind, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return {"error": error}
