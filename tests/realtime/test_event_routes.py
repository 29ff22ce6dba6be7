"""The event routes' own WSGI entry (billing_site/event_routes.py) answers exactly as Django's handler.

Each request is sent through both WSGI applications — ``EventRoutes`` and the Django handler it wraps —
and the two answers compared: status, headers and body, with only the request id and new event ids
told apart. Requests the route must not answer (no key, another method, a query string, a host Django
refuses, plain HTTP under SECURE_SSL_REDIRECT) reach Django's handler. Transactional: both send Django's
request signals, whose receivers close old connections, which a test transaction would not survive.
"""

from __future__ import annotations

import io
import logging
import re
import sys
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.test import override_settings
from django.utils import timezone

from billing_site.event_routes import EventRoutes
from invoicing.api.events import RealtimeEventIngestApi
from metering.models import UsageEvent
from tests.factories import CustomerFactory, SubscriptionFactory

from .conftest import balance, event, fund

pytestmark = pytest.mark.django_db(transaction=True)

_EVENT_ID = re.compile(rb'"evt_[0-9]+"')
_KEY_PREFIX = re.compile(rb'"(dj|rt)-')
_CUSTOMER_ID = re.compile(rb'"cus_[A-Za-z0-9]+"')


@pytest.fixture
def django_app():
    return WSGIHandler()


@pytest.fixture
def routes(django_app):
    return EventRoutes(django_app)


def live_subscription(customer, real_time_plan):
    start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return SubscriptionFactory(
        plan=real_time_plan, merchant=customer.merchant, customer=customer, started_at=start, billing_anchor=start
    )


def call(app, body=b"", *, key=None, method="POST", path="/v0/events", query="", scheme="http", **headers):
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": headers.pop("host", "127.0.0.1"),
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "CONTENT_LENGTH": headers.pop("content_length", str(len(body))),
        "CONTENT_TYPE": "application/json",
        **{f"HTTP_{name.upper()}": value for name, value in headers.items()},
    }
    if key:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    started = {}

    def start_response(status, response_headers, exc_info=None):
        started.update(status=status, headers=response_headers)

    result = app(environ, start_response)
    content = b"".join(result)
    getattr(result, "close", lambda: None)()
    return started["status"], started["headers"], content


def comparable(answer):
    status, headers, content = answer
    # Django's handler leaves Content-Length to the server on some answers; where sent, it is exact
    assert dict(headers).get("Content-Length", str(len(content))) == str(len(content))
    # ids differ in length between the two answers: the length is checked above, the rest compared
    names = sorted(
        (name, "*" if name == "X-Request-ID" else value) for name, value in headers if name != "Content-Length"
    )
    for pattern, same in ((_EVENT_ID, b'"evt_*"'), (_KEY_PREFIX, b'"key-'), (_CUSTOMER_ID, b'"cus_*"')):
        content = pattern.sub(same, content)
    return status, names, content


def live_event(customer, tokens_used, key, at):
    return orjson.dumps(event(customer, tokens_used, key=key, at=at))


def test_the_request_signals_are_sent_around_a_served_request(routes, api_key_secret, customer, real_time_plan):
    sent = []

    def started(sender, environ, **kwargs):
        sent.append(("started", sender.__name__, environ["PATH_INFO"]))

    def finished(sender, **kwargs):
        sent.append(("finished", sender.__name__))

    request_started.connect(started)
    request_finished.connect(finished)
    try:
        status, _, _ = call(routes, orjson.dumps(event(customer, 1)), key=api_key_secret)
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)

    assert status == "202 Accepted"
    assert sent == [("started", "EventRoutes", "/v0/events"), ("finished", "EventRoutes")]


def test_the_gunicorn_application_is_the_route_in_front_of_django(monkeypatch):
    monkeypatch.setenv("GC_FREEZE", "0")
    import billing_site.wsgi

    assert isinstance(billing_site.wsgi.application, EventRoutes)
    assert isinstance(billing_site.wsgi.application.django, WSGIHandler)


def test_accepted_duplicate_and_refused_events_are_answered_as_django_answers(
    routes, django_app, api_key_secret, real_time_plan
):
    at = timezone.now() - timedelta(seconds=1)
    answers, customers = {}, {}
    for app, prefix in ((django_app, "dj"), (routes, "rt")):
        customer = customers[prefix] = CustomerFactory(merchant=real_time_plan.merchant, currency="USD")
        live_subscription(customer, real_time_plan)
        fund(customer, "5", policy="block", now=timezone.now())
        answers[prefix] = [
            call(app, live_event(customer, 100, f"{prefix}-1", at), key=api_key_secret),  # $1.00
            call(app, live_event(customer, 100, f"{prefix}-1", at), key=api_key_secret),  # duplicate
            call(app, live_event(customer, 500, f"{prefix}-2", at), key=api_key_secret),  # 402: $5 > what is left
            call(app, b'{"type": "tokens.used"', key=api_key_secret),  # malformed JSON
            call(app, b"[1, 2]", key=api_key_secret),  # not one event
            call(app, orjson.dumps({"source": "x"}), key=api_key_secret),  # fields missing
            call(app, b"{}", key=api_key_secret, content_length=str(2 * 1024 * 1024)),  # 413
            call(
                app,
                orjson.dumps({"events": [event(customer, 1, key=f"{prefix}-b1", at=at), {"type": "tokens.used"}]}),
                key=api_key_secret,
                path="/v0/events/batch",
            ),
        ]
    assert [comparable(answer) for answer in answers["rt"]] == [comparable(answer) for answer in answers["dj"]]
    statuses = [answer[0] for answer in answers["rt"]]
    assert statuses == [
        "202 Accepted",
        "202 Accepted",
        "402 Payment Required",
        "400 Bad Request",
        "400 Bad Request",
        "400 Bad Request",
        "413 Request Entity Too Large",
        "200 OK",
    ]
    assert dict(answers["rt"][1][1])["Idempotent-Replayed"] == "true"
    # each path stored two events (the single and the batch's good one) and debited $1.00 + $0.01
    assert UsageEvent.objects.filter(customer=customers["rt"]).count() == 2
    assert UsageEvent.objects.filter(customer=customers["dj"]).count() == 2
    assert balance(customers["rt"]) == balance(customers["dj"]) == Decimal("3.99")


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({}, id="no key: DRF's 401"),
        pytest.param({"key": "sk_not_a_key"}, id="unknown key: 401"),
        pytest.param({"method": "GET", "key": True}, id="GET: 405"),
        pytest.param({"query": "dryRun=", "key": True}, id="query string: the API's empty-value 400"),
        pytest.param({"host": "evil.example", "key": True}, id="disallowed host: 400"),
        pytest.param({"path": "/v0/events/", "key": True}, id="another path: 404"),
    ],
)
def test_requests_the_route_does_not_serve_get_djangos_answer(
    routes, django_app, api_key_secret, customer, request_kwargs
):
    kwargs = dict(request_kwargs)
    if kwargs.get("key") is True:
        kwargs["key"] = api_key_secret
    body = orjson.dumps(event(customer, 1, key="not-stored"))

    served, expected = call(routes, body, **kwargs), call(django_app, body, **kwargs)

    assert comparable(served) == comparable(expected)
    assert served[0].split()[0] in {"400", "401", "404", "405"}
    assert not UsageEvent.objects.exists()


def test_https_rules_are_djangos(api_key_secret, customer, real_time_plan):
    with override_settings(SECURE_SSL_REDIRECT=True, SECURE_HSTS_SECONDS=3600):
        django_app = WSGIHandler()  # middleware reads these settings once, when loaded
        routes = EventRoutes(django_app)
        plain = call(routes, orjson.dumps(event(customer, 1, key="plain")), key=api_key_secret)
        secure = call(routes, orjson.dumps(event(customer, 1, key="secure")), key=api_key_secret, scheme="https")
        via_django = call(
            django_app, orjson.dumps(event(customer, 1, key="securf")), key=api_key_secret, scheme="https"
        )

    assert plain[0].startswith("301")
    assert dict(plain[1])["Location"] == "https://127.0.0.1/v0/events"
    assert comparable(secure)[:2] == comparable(via_django)[:2]
    assert dict(secure[1])["Strict-Transport-Security"] == "max-age=3600"
    assert sorted(UsageEvent.objects.values_list("idempotency_key", flat=True)) == ["secure", "securf"]


def test_the_callers_request_id_is_echoed_and_a_new_one_made_otherwise(routes, api_key_secret, customer):
    given = call(routes, orjson.dumps(event(customer, 1)), key=api_key_secret, x_request_id="trace-42")
    made = call(routes, orjson.dumps(event(customer, 1)), key=api_key_secret)

    assert dict(given[1])["X-Request-ID"] == "trace-42"
    assert re.fullmatch(r"[0-9a-f]{32}", dict(made[1])["X-Request-ID"])


def test_an_unexpected_error_is_logged_and_answered_as_django_answers_it(
    routes, django_app, api_key_secret, customer, monkeypatch, caplog
):
    def broken(self, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(RealtimeEventIngestApi, "ingest", broken)
    body = orjson.dumps(event(customer, 1, key="boom"))

    with caplog.at_level(logging.ERROR, logger="django.request"):
        served = call(routes, body, key=api_key_secret)
    logged = [(record.getMessage(), record.exc_info[1]) for record in caplog.records if record.name == "django.request"]
    expected = call(django_app, body, key=api_key_secret)

    assert comparable(served) == comparable(expected)
    assert served[0] == "500 Internal Server Error"
    assert orjson.loads(served[2])["error"] == "internal_error"
    assert [(message, str(error)) for message, error in logged] == [("Internal Server Error: /v0/events", "boom")]
