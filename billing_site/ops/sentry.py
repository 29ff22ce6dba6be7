"""Opt-in error tracking: sentry-sdk with its Django and Celery integrations, started only when
``SENTRY_DSN`` is set (from the settings, so the web processes and the Celery workers both start it)."""

from __future__ import annotations


def sentry_init(*, dsn: str, environment: str, traces_sample_rate: float) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        # Performance tracing costs on every request: off unless asked for (SENTRY_TRACES_SAMPLE_RATE).
        traces_sample_rate=traces_sample_rate or None,
        # Request bodies, user emails and IP addresses stay out of the error reports.
        send_default_pii=False,
    )
