"""A request id per HTTP request, in every log record and carried into the Celery tasks it queues.

The middleware takes the caller's ``X-Request-ID`` (a load balancer or client may set one) when it is a
sane token, else makes one; puts it in a contextvar until the response is closed, and echoes it in the
response's ``X-Request-ID``. ``RequestIdFilter`` (on the log handler, billing_site/settings/base.py) copies
it onto each record as ``request_id``. Tasks queued during the request carry it in a message header
(``meterline_request_id``), and the task's run restores it, so the worker's log lines carry it too.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from celery import Task
from celery.signals import before_task_publish, task_postrun, task_prerun
from django.core.signals import request_finished
from django.dispatch import receiver

HEADER = "X-Request-ID"
TASK_HEADER = "meterline_request_id"
NO_REQUEST = "-"
# A caller's id is kept only when it is a plain token: it goes into every log line as it is.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

request_id_var: ContextVar[str | None] = ContextVar("meterline_request_id", default=None)


def request_id_current() -> str | None:
    return request_id_var.get()


def request_id_from_header(value: str | None) -> str:
    """The caller's id when it is a plain token of at most 128 characters, else a new one."""
    if value and _ACCEPTED.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """First in MIDDLEWARE: one header read, a contextvar set, one header written (no I/O)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from_header(request.headers.get(HEADER))
        request.request_id = request_id
        # Not reset on the way out: Django logs "Not Found" / "Internal Server Error" after the middleware
        # chain returned. Cleared when the response is closed (request_finished, below); the next request
        # sets its own anyway.
        request_id_var.set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


@receiver(request_finished, dispatch_uid="meterline-request-id-finished")
def _request_id_clear(**kwargs) -> None:
    request_id_var.set(None)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (``-`` outside a request or task); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get() or NO_REQUEST
        return True


# -- Celery ----------------------------------------------------------------------------------------


class RequestIdTask(Task):
    """The app's task class: ``apply_async`` adds the current request id to the task's headers.

    ``before_task_publish`` below covers messages sent to a broker (``send_task`` by name as well); this
    also covers eager execution (tests, ``CELERY_TASK_ALWAYS_EAGER``), where nothing is published.
    """

    def apply_async(
        self, args=None, kwargs=None, task_id=None, producer=None, link=None, link_error=None, shadow=None, **options
    ):
        request_id = request_id_var.get()
        if request_id is not None:
            options["headers"] = {TASK_HEADER: request_id, **(options.get("headers") or {})}
        return super().apply_async(args, kwargs, task_id, producer, link, link_error, shadow, **options)


@before_task_publish.connect(dispatch_uid="meterline-request-id-publish")
def _request_id_publish(sender=None, headers=None, **kwargs) -> None:
    request_id = request_id_var.get()
    if request_id is not None and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


def task_request_id(task) -> str | None:
    """The request id a running task was queued with (custom headers surface as request attributes on a
    worker, in ``request.headers`` when run eagerly)."""
    request = task.request
    value = getattr(request, TASK_HEADER, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(TASK_HEADER)
    return value


_task_tokens: dict[str, object] = {}


@task_prerun.connect(dispatch_uid="meterline-request-id-prerun")
def _request_id_task_start(sender=None, task_id=None, task=None, **kwargs) -> None:
    request_id = task_request_id(task) if task is not None else None
    if request_id is not None and task_id is not None:
        _task_tokens[task_id] = request_id_var.set(request_id)


@task_postrun.connect(dispatch_uid="meterline-request-id-postrun")
def _request_id_task_end(sender=None, task_id=None, **kwargs) -> None:
    token = _task_tokens.pop(task_id, None) if task_id is not None else None
    if token is not None:
        try:
            request_id_var.reset(token)
        except ValueError:  # ended in another context (a thread pool): just clear it
            request_id_var.set(None)
