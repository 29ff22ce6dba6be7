"""A local Stripe-compatible HTTP server for the tests: the real ``stripe`` library talks to it over HTTP on
127.0.0.1 (``STRIPE_API_BASE``), so the adapter is tested down to the form-encoded wire.

It implements only the endpoints ``payments/providers/stripe_provider.py`` calls, answers with Stripe's own
example objects (``tests/fixtures/stripe/fixtures3.subset.json``) with ids, amounts and statuses overwritten
from the request, and behaves as Stripe does where the adapter depends on it:

- ``Idempotency-Key``: the same key (per API key) answers the first response again; the same key with other
  parameters is a 400 ``idempotency_error``; the same key while its first request is still being answered is
  a 409 ``idempotency_key_in_use`` (the library retries a 409). ``latency`` (seconds, default 0) holds each
  POST that long before it is answered, so tests can make two requests overlap.
- Stripe's test payment methods, as Stripe's testing docs describe them: ``pm_card_visa`` and
  ``pm_card_mastercard`` succeed; ``pm_card_chargeDeclined`` is declined whatever it is used for (402
  ``card_error``/``card_declined`` with the SetupIntent or PaymentIntent in the error);
  ``pm_card_chargeCustomerFail`` is saved but every charge on it is declined;
  ``pm_card_authenticationRequired`` needs 3-D Secure on every use: a SetupIntent answers ``requires_action``,
  an off-session charge is declined with ``authentication_required``, an on-session one answers
  ``requires_action``. A method whose behaviour a test sets to ``process`` charges as a bank debit does:
  ``processing``, the outcome left to an event. (A card saved on the hosted page, ``customer_completes_setup``, was authenticated there.)
- A missing object is a 404 ``resource_missing``; a request without a ``sk_``/``rk_`` key is a 401.

``customer_pays_session`` plays the customer paying a payment-mode Checkout Session (a succeeded PaymentIntent
with the session's ``payment_intent_data[metadata]``, the session ``complete``/``paid``); ``GET
/v1/checkout/sessions/{id}`` answers the session as it stands.

``before_reply`` (a test's hook) runs once a request is answered and before the answer is sent: a webhook
delivered while the caller still waits. Every request is recorded (``requests``: method, path, flat form
parameters, idempotency key, API key), so
tests assert on what was sent.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

FIXTURES = Path(__file__).parent / "fixtures" / "stripe" / "fixtures3.subset.json"

# Stripe's test payment methods (docs "Testing"): what each card is and how charges on it end.
TEST_CARDS = {
    "pm_card_visa": {"brand": "visa", "last4": "4242", "behaviour": "succeed"},
    "pm_card_mastercard": {"brand": "mastercard", "last4": "4444", "behaviour": "succeed"},
    "pm_card_chargeDeclined": {"brand": "visa", "last4": "0002", "behaviour": "decline"},
    "pm_card_chargeCustomerFail": {"brand": "visa", "last4": "0341", "behaviour": "decline_charges"},
    "pm_card_authenticationRequired": {"brand": "visa", "last4": "3184", "behaviour": "authenticate"},
}


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]
    idempotency_key: str | None
    api_key: str | None


class StripeError(Exception):
    def __init__(self, status: int, body: dict):
        self.status = status
        self.body = body


def _id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


def _missing(kind: str, ident: str) -> StripeError:
    return StripeError(
        404,
        {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": f"No such {kind}: '{ident}'",
            "param": "id",
        },
    )


@dataclass
class StripeState:
    fixtures: dict
    customers: dict[str, dict] = field(default_factory=dict)
    payment_methods: dict[str, dict] = field(default_factory=dict)
    # pm id → succeed / decline / decline_charges / authenticate
    behaviours: dict[str, str] = field(default_factory=dict)
    setup_intents: dict[str, dict] = field(default_factory=dict)
    payment_intents: dict[str, dict] = field(default_factory=dict)
    sessions: dict[str, dict] = field(default_factory=dict)
    # session id → what its payment_intent_data asked for (metadata, setup_future_usage)
    session_intent_data: dict[str, dict] = field(default_factory=dict)
    refunds: dict[str, dict] = field(default_factory=dict)

    def fixture(self, name: str) -> dict:
        return copy.deepcopy(self.fixtures[name])


def _nested(params: dict[str, str], prefix: str) -> dict[str, str]:
    """``metadata[a]=1`` → ``{"a": "1"}`` for one level of a form-encoded hash."""
    found = {}
    for key, value in params.items():
        match = re.fullmatch(re.escape(prefix) + r"\[([^\]]+)\]", key)
        if match:
            found[match.group(1)] = value
    return found


def _truthy(value: str | None) -> bool:
    return value == "true"


class StripeTestServer:
    def __init__(self):
        fixtures = json.loads(FIXTURES.read_text())["resources"]
        self.state = StripeState(fixtures=fixtures)
        self.requests: list[RecordedRequest] = []
        self._idempotent: dict[tuple[str, str], tuple[str, dict, int, dict]] = {}
        self._in_flight: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.latency = 0.0
        # Called with (method, path, status, answer) once a request is answered here and before the answer is
        # sent: what Stripe does meanwhile (an event delivered while the caller still waits for its answer).
        self.before_reply = None
        self.max_page_size = 100  # Stripe's largest page; tests lower it to exercise pagination
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server._handle(self, "GET")

            def do_POST(self):
                server._handle(self, "POST")

            def log_message(self, format, *args):  # quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StripeTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # What tests read

    def forget_idempotency_keys(self) -> None:
        """What Stripe does with a key 24 hours after its first use: a replay is then a new request."""
        with self._lock:
            self._idempotent.clear()

    def calls(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and re.fullmatch(path, r.path)]

    def customer_completes_setup(self, *, customer: str, card: str = "pm_card_visa", session: str = "") -> dict:
        """What Stripe Checkout does when the customer saves a card on the hosted page: a new method,
        attached to the customer; with ``session`` (a setup-mode ``cs_…``), also a succeeded SetupIntent holding
        it and the session ``complete`` with that ``setup_intent``, as Stripe's ``checkout.session.completed``
        carries it."""
        with self._lock:
            method = self._new_payment_method(card, customer=customer)
            if session:
                intent = self.state.fixture("setup_intent")
                intent.update(
                    id=_id("seti"),
                    created=int(time.time()),
                    customer=customer,
                    usage="off_session",
                    payment_method=method["id"],
                    status="succeeded",
                    last_setup_error=None,
                    next_action=None,
                    livemode=False,
                )
                self.state.setup_intents[intent["id"]] = intent
                self.state.sessions[session].update(status="complete", setup_intent=intent["id"])
            return method

    def customer_pays_session(self, session: str, *, card: str = "pm_card_visa") -> dict:
        """What Stripe Checkout does when the customer pays a payment-mode session with ``card``: a
        PaymentIntent for the session's amount (with the session's ``payment_intent_data[metadata]``),
        succeeded; the card saved to the customer when ``setup_future_usage`` asked for it; the session
        ``complete`` and ``paid``. Returns the session, as the ``checkout.session.completed`` event carries it."""
        with self._lock:
            found = self.state.sessions.get(session)
            if found is None or found["mode"] != "payment" or found["status"] != "open":
                raise ValueError(f"no open payment session {session}")
            method = self._new_payment_method(card, customer=found["customer"])
            intent_data = self.state.session_intent_data[session]
            if not intent_data["setup_future_usage"]:
                method["customer"] = None
            intent = self.state.fixture("payment_intent")
            intent.update(
                id=_id("pi"),
                created=int(time.time()),
                amount=found["amount_total"],
                amount_received=found["amount_total"],
                currency=found["currency"],
                customer=found["customer"],
                payment_method=method["id"],
                metadata=dict(intent_data["metadata"]),
                status="succeeded",
                latest_charge=_id("ch"),
                last_payment_error=None,
                next_action=None,
                canceled_at=None,
                livemode=False,
            )
            self.state.payment_intents[intent["id"]] = intent
            found.update(status="complete", payment_status="paid", payment_intent=intent["id"])
            return copy.deepcopy(found)

    # The wire

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        params = dict(parse_qsl(body if method == "POST" else parts.query, keep_blank_values=True))
        authorization = handler.headers.get("Authorization", "")
        api_key = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None
        idempotency_key = handler.headers.get("Idempotency-Key")
        with self._lock:
            self.requests.append(RecordedRequest(method, parts.path, params, idempotency_key, api_key))
        status, answer = self._answer(method, parts.path, params, api_key, idempotency_key)
        if self.before_reply is not None:
            self.before_reply(method, parts.path, status, answer)
        payload = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Request-Id", "req_" + secrets.token_hex(8))
        if idempotency_key and method == "POST":
            handler.send_header("Idempotency-Key", idempotency_key)
        handler.end_headers()
        handler.wfile.write(payload)

    def _answer(self, method, path, params, api_key, idempotency_key) -> tuple[int, dict]:
        if not api_key or not api_key.startswith(("sk_", "rk_")):
            return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
        key = (api_key, idempotency_key) if idempotency_key and method == "POST" else None
        with self._lock:
            remembered = self._idempotent.get(key) if key else None
            if remembered is not None:
                first_path, first_params, status, answer = remembered
                if (first_path, first_params) != (path, params):
                    return 400, {
                        "error": {
                            "type": "idempotency_error",
                            "message": "Keys for idempotent requests can only be used with the same parameters "
                            "they were first used with.",
                        }
                    }
                return status, answer
            if key in self._in_flight:
                return 409, {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "idempotency_key_in_use",
                        "message": "There is currently another in-progress request using this Idempotent Key "
                        "(that probably means you submitted twice, and the other request is still going "
                        "through). Please retry your request.",
                    }
                }
            if key:
                self._in_flight.add(key)
        try:
            if self.latency and method == "POST":
                time.sleep(self.latency)
            with self._lock:
                try:
                    status, answer = 200, self._route(method, path, params)
                except StripeError as error:
                    status, answer = error.status, {"error": error.body}
                if key:
                    self._idempotent[key] = (path, params, status, answer)
            return status, answer
        finally:
            if key:
                with self._lock:
                    self._in_flight.discard(key)

    def _route(self, method: str, path: str, params: dict[str, str]) -> dict:
        routes = [
            ("POST", r"/v1/customers", self._customer_create),
            ("POST", r"/v1/setup_intents", self._setup_intent_create),
            ("GET", r"/v1/setup_intents/(?P<ident>[^/]+)", self._setup_intent_retrieve),
            ("GET", r"/v1/payment_methods", self._payment_method_list),
            ("POST", r"/v1/payment_intents", self._payment_intent_create),
            ("GET", r"/v1/payment_intents", self._payment_intent_list),
            ("POST", r"/v1/checkout/sessions", self._session_create),
            ("GET", r"/v1/checkout/sessions/(?P<ident>[^/]+)", self._session_retrieve),
            ("POST", r"/v1/refunds", self._refund_create),
            ("GET", r"/v1/refunds", self._refund_list),
        ]
        for verb, pattern, view in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return view(params, **match.groupdict())
        raise StripeError(
            404, {"type": "invalid_request_error", "message": f"Unrecognized request URL ({method}: {path})."}
        )

    # Resources

    def _customer_create(self, params) -> dict:
        customer = self.state.fixture("customer")
        customer.update(
            id=_id("cus"),
            created=int(time.time()),
            email=params.get("email"),
            name=params.get("name"),
            metadata=_nested(params, "metadata"),
            livemode=False,
        )
        self.state.customers[customer["id"]] = customer
        return customer

    def _customer(self, ident: str | None) -> dict:
        if ident not in self.state.customers:
            raise _missing("customer", ident)
        return self.state.customers[ident]

    def _new_payment_method(self, token: str, *, customer: str) -> dict:
        if token not in TEST_CARDS:
            raise _missing("payment_method", token)
        card = TEST_CARDS[token]
        method = self.state.fixture("payment_method")
        method.update(id=_id("pm"), created=int(time.time()), customer=customer, type="card", livemode=False)
        method["card"].update(brand=card["brand"], display_brand=card["brand"], last4=card["last4"])
        self.state.payment_methods[method["id"]] = method
        self.state.behaviours[method["id"]] = card["behaviour"]
        return method

    def _usable_method(self, ident: str, customer: str) -> dict:
        if ident in TEST_CARDS:  # a test token: Stripe makes a new method from it
            return self._new_payment_method(ident, customer=customer)
        method = self.state.payment_methods.get(ident)
        if method is None:
            raise _missing("payment_method", ident)
        if method["customer"] != customer:
            raise StripeError(
                400,
                {
                    "type": "invalid_request_error",
                    "message": "The provided PaymentMethod does not belong to the customer.",
                    "param": "payment_method",
                },
            )
        return method

    def _setup_intent_retrieve(self, params, ident: str) -> dict:
        if ident not in self.state.setup_intents:
            raise _missing("setup_intent", ident)
        return self.state.setup_intents[ident]

    def _setup_intent_create(self, params) -> dict:
        customer = self._customer(params.get("customer"))["id"]
        intent = self.state.fixture("setup_intent")
        intent.update(
            id=_id("seti"),
            created=int(time.time()),
            customer=customer,
            usage=params.get("usage", "off_session"),
            metadata=_nested(params, "metadata"),
            last_setup_error=None,
            next_action=None,
            status="requires_payment_method",
            livemode=False,
        )
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
        method = None
        if params.get("payment_method"):
            method = self._usable_method(params["payment_method"], customer)
            intent["payment_method"] = method["id"]
            intent["status"] = "requires_confirmation"
            if _truthy(params.get("confirm")):
                self._confirm_setup(intent, method)
        self.state.setup_intents[intent["id"]] = intent
        answer = copy.deepcopy(intent)
        if method is not None and "payment_method" in _nested(params, "expand").values():
            answer["payment_method"] = copy.deepcopy(method)
        return answer

    def _confirm_setup(self, intent: dict, method: dict) -> None:
        behaviour = self.state.behaviours[method["id"]]
        if behaviour == "authenticate":
            intent.update(status="requires_action", next_action={"type": "use_stripe_sdk", "use_stripe_sdk": {}})
            return
        if behaviour == "decline":
            method["customer"] = None  # a declined setup attaches nothing
            error = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
                "doc_url": "https://stripe.com/docs/error-codes/card-declined",
            }
            intent.update(status="requires_payment_method", payment_method=None, last_setup_error=dict(error))
            self.state.setup_intents[intent["id"]] = intent
            raise StripeError(402, {**error, "setup_intent": copy.deepcopy(intent)})
        intent["status"] = "succeeded"

    def _payment_method_list(self, params) -> dict:
        customer = self._customer(params.get("customer"))["id"]
        found = [m for m in self.state.payment_methods.values() if m["customer"] == customer]
        found.sort(key=lambda m: (m["created"], m["id"]), reverse=True)  # Stripe lists newest first
        if params.get("starting_after"):
            ids = [m["id"] for m in found]
            found = found[ids.index(params["starting_after"]) + 1 :] if params["starting_after"] in ids else []
        limit = min(int(params.get("limit", "10")), self.max_page_size)
        return {"object": "list", "data": found[:limit], "has_more": len(found) > limit, "url": "/v1/payment_methods"}

    def _payment_intent_list(self, params) -> dict:
        customer = self._customer(params.get("customer"))["id"] if params.get("customer") else None
        found = [i for i in self.state.payment_intents.values() if customer is None or i["customer"] == customer]
        found.sort(key=lambda i: (i["created"], i["id"]), reverse=True)  # Stripe lists newest first
        if params.get("starting_after"):
            ids = [i["id"] for i in found]
            found = found[ids.index(params["starting_after"]) + 1 :] if params["starting_after"] in ids else []
        limit = min(int(params.get("limit", "10")), self.max_page_size)
        page = [copy.deepcopy(i) for i in found[:limit]]
        return {"object": "list", "data": page, "has_more": len(found) > limit, "url": "/v1/payment_intents"}

    def _payment_intent_create(self, params) -> dict:
        customer = self._customer(params["customer"])["id"] if params.get("customer") else None
        if not params.get("amount") or not params.get("currency"):
            raise StripeError(
                400, {"type": "invalid_request_error", "message": "Missing required param: amount.", "param": "amount"}
            )
        intent = self.state.fixture("payment_intent")
        intent.update(
            id=_id("pi"),
            created=int(time.time()),
            amount=int(params["amount"]),
            amount_received=0,
            currency=params["currency"],
            customer=customer,
            description=params.get("description"),
            metadata=_nested(params, "metadata"),
            canceled_at=None,
            last_payment_error=None,
            next_action=None,
            latest_charge=None,
            processing=None,
            transfer_data=None,
            status="requires_payment_method",
            livemode=False,
        )
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
        self.state.payment_intents[intent["id"]] = intent
        if params.get("payment_method"):
            method = self._usable_method(params["payment_method"], customer)
            intent["payment_method"] = method["id"]
            intent["status"] = "requires_confirmation"
            if _truthy(params.get("confirm")):
                self._confirm(intent, off_session=_truthy(params.get("off_session")))
        return copy.deepcopy(intent)

    def _confirm(self, intent: dict, *, off_session: bool) -> None:
        behaviour = self.state.behaviours[intent["payment_method"]]
        charge = _id("ch")
        if behaviour == "succeed":
            intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=charge)
            return
        if behaviour == "process":  # a bank debit: the outcome comes later, as an event
            intent.update(status="processing", latest_charge=charge)
            return
        if behaviour == "authenticate" and not off_session:
            intent.update(status="requires_action", next_action={"type": "use_stripe_sdk", "use_stripe_sdk": {}})
            return
        code, decline, message = (
            (
                "authentication_required",
                "authentication_required",
                "Your card was declined. This transaction requires authentication.",
            )
            if behaviour == "authenticate"
            else ("card_declined", "generic_decline", "Your card was declined.")
        )
        error = {
            "type": "card_error",
            "code": code,
            "decline_code": decline,
            "message": message,
            "charge": charge,
            "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
        }
        intent.update(status="requires_payment_method", latest_charge=charge, last_payment_error=dict(error))
        raise StripeError(402, {**error, "payment_intent": copy.deepcopy(intent)})

    def _session_create(self, params) -> dict:
        customer = self._customer(params.get("customer"))["id"]
        mode = params.get("mode")
        session = self.state.fixture("checkout.session")
        ident = "cs_test_" + secrets.token_hex(16)
        session.update(
            id=ident,
            created=int(time.time()),
            customer=customer,
            mode=mode,
            status="open",
            payment_status="unpaid" if mode == "payment" else "no_payment_required",
            success_url=params.get("success_url"),
            cancel_url=params.get("cancel_url"),
            expires_at=int(params["expires_at"]) if params.get("expires_at") else int(time.time()) + 86400,
            metadata=_nested(params, "metadata"),
            url=f"https://checkout.stripe.com/c/pay/{ident}",
            payment_intent=None,  # Stripe creates it when the customer pays
            livemode=False,
        )
        self.state.session_intent_data[ident] = {
            "metadata": _nested(params, "payment_intent_data[metadata]"),
            "setup_future_usage": params.get("payment_intent_data[setup_future_usage]"),
        }
        if mode == "payment":
            session.update(
                currency=params.get("line_items[0][price_data][currency]"),
                amount_total=int(params.get("line_items[0][price_data][unit_amount]", "0")),
                amount_subtotal=int(params.get("line_items[0][price_data][unit_amount]", "0")),
            )
        else:
            session.update(currency=params.get("currency"), amount_total=None, amount_subtotal=None)
        self.state.sessions[ident] = session
        return session

    def _session_retrieve(self, params, ident: str) -> dict:
        if ident not in self.state.sessions:
            raise _missing("checkout.session", ident)
        return self.state.sessions[ident]

    def _refund_list(self, params) -> dict:
        found = [r for r in self.state.refunds.values() if params.get("payment_intent") in (None, r["payment_intent"])]
        found.sort(key=lambda r: (r["created"], r["id"]), reverse=True)  # Stripe lists newest first
        if params.get("starting_after"):
            ids = [r["id"] for r in found]
            found = found[ids.index(params["starting_after"]) + 1 :] if params["starting_after"] in ids else []
        limit = min(int(params.get("limit", "10")), self.max_page_size)
        page = [copy.deepcopy(r) for r in found[:limit]]
        return {"object": "list", "data": page, "has_more": len(found) > limit, "url": "/v1/refunds"}

    def _refund_create(self, params) -> dict:
        intent = self.state.payment_intents.get(params.get("payment_intent"))
        if intent is None:
            raise _missing("payment_intent", params.get("payment_intent"))
        refunded = sum(r["amount"] for r in self.state.refunds.values() if r["payment_intent"] == intent["id"])
        amount = int(params.get("amount") or intent["amount_received"] - refunded)
        if intent["status"] != "succeeded" or amount > intent["amount_received"] - refunded:
            raise StripeError(
                400,
                {
                    "type": "invalid_request_error",
                    "code": "charge_already_refunded" if intent["status"] == "succeeded" else "charge_not_refundable",
                    "message": "The amount to refund exceeds what is left of the charge.",
                    "param": "amount",
                },
            )
        refund = self.state.fixture("refund")
        refund.update(
            id=_id("re"),
            created=int(time.time()),
            amount=amount,
            currency=intent["currency"],
            charge=intent["latest_charge"],
            payment_intent=intent["id"],
            customer=intent["customer"],
            payment_method=intent["payment_method"],
            metadata=_nested(params, "metadata"),
            status="succeeded",
        )
        self.state.refunds[refund["id"]] = refund
        return refund
