"""Operations: health probes, Prometheus metrics, request ids in logs and Celery tasks, opt-in Sentry."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
import sentry_sdk
from celery.signals import task_prerun
from django.conf import settings
from django.test import Client
from django.utils import timezone
from django.utils.module_loading import import_string
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from prometheus_client import REGISTRY

from billing_site.ops import request_id as rid
from billing_site.ops.health import CLOSE_BILLING_PERIODS
from invoicing.models import BillingRun
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

READY_OK = {
    "Database(alias='default')": "OK",
    "Cache(alias='default')": "OK",
    "Broker()": "OK",
    "BeatRecent(max_age=datetime.timedelta(seconds=2100))": "OK",
}


def _beat_ran(at):
    every = IntervalSchedule.objects.create(every=15, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(
        name=CLOSE_BILLING_PERIODS, task="invoicing.close_billing_periods", interval=every, last_run_at=at
    )


# -- health -----------------------------------------------------------------------------------------


def test_liveness_answers_200_json_without_touching_the_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        response = Client().get("/health/live")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {}


def test_readiness_is_200_when_database_cache_broker_are_up_and_beat_ran_recently():
    _beat_ran(timezone.now() - timedelta(minutes=10))

    response = Client().get("/health/ready")  # no API key, no login

    assert response.status_code == 200
    assert response.json() == READY_OK
    assert "no-cache" in response["Cache-Control"]


def test_readiness_is_503_when_beat_has_not_run_within_the_window():
    _beat_ran(timezone.now() - timedelta(seconds=2101))

    response = Client().get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["BeatRecent(max_age=datetime.timedelta(seconds=2100))"].startswith(
        "Unavailable: Beat last ran the close-billing-periods task 210"
    )
    assert body["Database(alias='default')"] == "OK"


def test_readiness_is_503_when_beat_never_ran():
    response = Client().get("/health/ready")

    assert response.status_code == 503
    assert response.json()["BeatRecent(max_age=datetime.timedelta(seconds=2100))"] == (
        "Unavailable: Beat has never run the close-billing-periods task"
    )


def test_a_recent_beat_billing_run_also_counts_as_beat_running():
    now = timezone.now()
    BillingRun.objects.create(as_of=now, trigger="beat", started_at=now - timedelta(minutes=3))

    assert Client().get("/health/ready").status_code == 200


def test_the_beat_window_is_configurable_and_zero_turns_the_check_off(settings):
    _beat_ran(timezone.now() - timedelta(minutes=10))
    settings.HEALTH_BEAT_MAX_AGE = 300
    assert Client().get("/health/ready").status_code == 503

    settings.HEALTH_BEAT_MAX_AGE = 0
    PeriodicTask.objects.all().delete()
    assert Client().get("/health/ready").status_code == 200


# -- metrics ----------------------------------------------------------------------------------------


def _events_total(result: str) -> float:
    return REGISTRY.get_sample_value("meterline_events_total", {"result": result}) or 0.0


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_ENABLED = True
    settings.METRICS_TOKEN = ""


def test_metrics_count_events_accepted_and_duplicate_through_the_api(api_client, merchant, metrics_on):
    from catalog.models import Aggregation
    from tests.factories import BillableMetricFactory, ProductFactory

    product = ProductFactory(merchant=merchant)
    BillableMetricFactory(
        product=product,
        merchant=merchant,
        aggregation=Aggregation.SUM,
        event_type="llm.completion",
        value_property="$.input_tokens",
    )
    customer = CustomerFactory(merchant=merchant)
    event = {
        "type": "llm.completion",
        "source": "app",
        "subject": customer.pk,
        "data": {"input_tokens": 5},
        "timestamp": timezone.now().isoformat(),
        "idempotencyKey": "ops-1",
    }
    accepted, duplicate, rejected = _events_total("accepted"), _events_total("duplicate"), _events_total("rejected")

    assert api_client.post("/v0/events", event, format="json").status_code == 202
    assert api_client.post("/v0/events", event, format="json").status_code in (200, 202)
    api_client.post("/v0/events/batch", {"events": [event, {"type": "llm.completion"}]}, format="json")

    assert _events_total("accepted") - accepted == 1
    assert _events_total("duplicate") - duplicate == 2
    assert _events_total("rejected") - rejected == 1
    text = Client().get("/metrics").content.decode()
    assert f'meterline_events_total{{result="accepted"}} {_events_total("accepted")}' in text
    assert f'meterline_events_total{{result="duplicate"}} {_events_total("duplicate")}' in text
    assert "meterline_billing_run_oldest_running_age_seconds 0.0" in text
    assert "meterline_webhook_oldest_due_age_seconds 0.0" in text


def test_metrics_are_not_served_unless_enabled(settings):
    settings.METRICS_ENABLED = False

    assert Client().get("/metrics").status_code == 404


def test_metrics_token_is_required_when_set(settings):
    settings.METRICS_ENABLED = True
    settings.METRICS_TOKEN = "s3cret-scrape-token"

    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")


def test_oldest_running_billing_run_age_is_a_gauge(metrics_on):
    now = timezone.now()
    BillingRun.objects.create(as_of=now, trigger="beat", started_at=now - timedelta(minutes=20), chunks_total=3)

    text = Client().get("/metrics").content.decode()

    line = next(
        line for line in text.splitlines() if line.startswith("meterline_billing_run_oldest_running_age_seconds ")
    )
    assert 1200 <= float(line.split()[1]) < 1260


def test_per_request_middleware_of_django_prometheus_is_off_by_default():
    assert not any("django_prometheus" in name for name in settings.MIDDLEWARE)


# -- request ids ------------------------------------------------------------------------------------


def test_request_id_is_echoed_and_on_the_requests_log_records(caplog):
    caplog.handler.addFilter(rid.RequestIdFilter())  # the filter the console handler has (settings.LOGGING)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = Client().get("/no-such-page", HTTP_X_REQUEST_ID="req-abc.123")

    assert response.status_code == 404
    assert response["X-Request-ID"] == "req-abc.123"
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.request_id == "req-abc.123"
    assert rid.request_id_current() is None  # reset after the request


def test_a_request_without_id_or_with_an_unsafe_one_gets_a_new_one():
    new = Client().get("/health/live")["X-Request-ID"]
    unsafe = Client().get("/health/live", HTTP_X_REQUEST_ID="bad id\nforged log line")["X-Request-ID"]

    assert len(new) == 32 and int(new, 16) >= 0
    assert len(unsafe) == 32 and unsafe != new


def test_log_records_outside_a_request_carry_a_dash():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)

    assert rid.RequestIdFilter().filter(record) is True
    assert record.request_id == "-"


def test_json_log_format_carries_the_request_id():
    config = dict(settings.LOGGING["formatters"]["json"])
    formatter = import_string(config.pop("()"))(**config)
    record = logging.LogRecord("invoicing", logging.INFO, __file__, 1, "Run %s done", (7,), None)
    record.request_id = "req-9"

    line = json.loads(formatter.format(record))

    assert line["request_id"] == "req-9"
    assert line["message"] == "Run 7 done"
    assert line["level"] == "INFO"
    assert line["logger"] == "invoicing"


def test_request_id_travels_in_the_headers_of_a_task_queued_during_a_request():
    from wallets.tasks import webhook_deliveries_retry_due_task

    seen = []

    def capture(sender=None, task=None, **kwargs):
        seen.append((rid.task_request_id(task), rid.request_id_current()))

    task_prerun.connect(capture)
    token = rid.request_id_var.set("req-from-http")
    try:
        webhook_deliveries_retry_due_task.delay()
    finally:
        rid.request_id_var.reset(token)
        task_prerun.disconnect(capture)

    assert seen == [("req-from-http", "req-from-http")]
    assert rid.request_id_current() is None


def test_publishing_a_task_adds_the_request_id_to_the_message_headers():
    headers = {}
    token = rid.request_id_var.set("req-42")
    try:
        rid._request_id_publish(headers=headers)
    finally:
        rid.request_id_var.reset(token)

    assert headers == {rid.TASK_HEADER: "req-42"}


# -- Sentry -----------------------------------------------------------------------------------------


def test_sentry_is_not_initialised_without_sentry_dsn():
    assert settings.SENTRY_DSN == ""
    assert sentry_sdk.get_client().is_active() is False


def test_sentry_init_uses_the_django_and_celery_integrations(monkeypatch):
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    from billing_site.ops.sentry import sentry_init

    calls = []
    monkeypatch.setattr(sentry_sdk, "init", lambda **kwargs: calls.append(kwargs))

    sentry_init(dsn="https://key@errors.example.com/1", environment="staging", traces_sample_rate=0.0)

    [kwargs] = calls
    assert kwargs["dsn"] == "https://key@errors.example.com/1"
    assert kwargs["environment"] == "staging"
    assert kwargs["send_default_pii"] is False
    assert kwargs["traces_sample_rate"] is None
    assert [type(i) for i in kwargs["integrations"]] == [DjangoIntegration, CeleryIntegration]
