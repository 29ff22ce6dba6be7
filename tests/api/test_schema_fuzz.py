"""Fuzz every operation of the OpenAPI schema (``/v0/schema``) with schemathesis: wrong types, unknown enum
values, unknown ids, oversize pages, missing auth. Nothing may answer 5xx, every 4xx must be in the client's
error shape, and what an operation answers must match what the schema documents for it.

Operations are taken from the schema itself, so endpoints added later are fuzzed without touching this file.
Runs are derandomized (same cases every run) and bounded (``max_examples`` per operation and phase).
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from billing_site.wsgi import application
from tests.api.fuzzing import error_body_shape, point_at_seeds, seed_catalog

schema = schemathesis.openapi.from_wsgi("/v0/schema?format=json", application)
schema.config.generation.update(max_examples=20, deterministic=True)


@pytest.fixture
def seeds(db):
    # The WSGI app runs in this thread on the test's connection, inside the test transaction: keep
    # Django from closing that connection at the end of each request (its test client does the same).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield seed_catalog()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=20, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_operation(case, seeds):
    point_at_seeds(case, seeds)
    response = case.call(headers={"Authorization": f"Bearer {seeds.raw_key}"})
    import os, traceback

    if os.environ.get("FUZZ_DISCOVER"):
        with open("/tmp/fz/statuses.txt", "a") as f:
            f.write(
                f"{case.operation.label}\t{response.status_code}\t{case.meta.phase.name.value if case.meta else None}\t{response.text[:300]!r}\n"
            )
        try:
            case.validate_response(response, checks=[not_a_server_error, error_body_shape, response_schema_conformance])
        except BaseException as exc:
            with open("/tmp/fz/failures.txt", "a") as f:
                f.write(
                    f"=== {case.operation.label} {response.status_code}\n{case.as_curl_command()}\n{response.text[:600]}\n{''.join(traceback.format_exception_only(exc))[:1500]}\n"
                )
        return
    case.validate_response(response, checks=[not_a_server_error, error_body_shape, response_schema_conformance])
