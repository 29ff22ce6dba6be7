"""Error bodies in the Paygentic shape: ``{message, error, code?, errors?: [{field, message}]}``.

Every 4xx carries a ``message`` (the client refuses an error body without one); validation errors
name each field in camelCase, as the client sent it. A database that cannot be reached (or refused the
statement as a transient failure) answers ``503 service_unavailable`` with ``Retry-After``: the request
changed nothing and may be sent again.
"""

from __future__ import annotations

import logging
import sys

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from core.errors import Conflict

logger = logging.getLogger(__name__)

_ERROR_CATEGORY = {
    400: "bad_request",
    401: "unauthorized",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}

# Errors of the database connection rather than of the request: refused or lost connections, and the
# transient failures PostgreSQL reports the same way (deadlock, serialization failure, statement
# timeout; SQLite's "database is locked"). Nothing was written: the client may simply retry.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
DATABASE_UNAVAILABLE_MESSAGE = "The database is unavailable; nothing was recorded. Retry shortly."


class ApiError(exceptions.APIException):
    """A domain error with an explicit status, business code and optional details."""

    def __init__(self, message: str, *, status_code: int = 400, code: str | None = None, details=None):
        super().__init__(detail=message)
        self.status_code = status_code
        self.business_code = code
        self.details = details


def api_error_body(error: ApiError) -> dict:
    """The body an ``ApiError`` answers with: what ``api_exception_handler`` writes for it."""
    body = {"message": str(error.detail), "error": _ERROR_CATEGORY.get(error.status_code, "error")}
    if error.business_code:
        body["code"] = error.business_code
    if error.details is not None:
        body["details"] = error.details
    return body


def validation_error_body(errors: list[dict[str, str]], message: str | None = None) -> dict:
    """The body of a 400 naming each field (``validation_error_response`` answers with it)."""
    first = errors[0] if errors else {"field": "body", "message": "Invalid request."}
    summary = message or (f"{first['field']}: {first['message']}" if first["field"] != "body" else first["message"])
    return {"message": summary, "error": "validation_error", "errors": errors}


def snake_to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def flatten_validation_errors(detail, prefix: str = "") -> list[dict[str, str]]:
    """Turn DRF's nested error dict/list into ``[{field, message}]`` with dotted camelCase paths."""
    items: list[dict[str, str]] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "" if key in ("non_field_errors", "__all__") else snake_to_camel(str(key))
            path = ".".join(part for part in (prefix, name) if part)
            items.extend(flatten_validation_errors(value, path))
    elif isinstance(detail, list):
        if all(not isinstance(entry, (dict, list)) for entry in detail):
            for entry in detail:
                items.append({"field": prefix or "body", "message": str(entry), **_code(entry)})
        else:
            for index, entry in enumerate(detail):
                if entry:
                    items.extend(flatten_validation_errors(entry, f"{prefix}[{index}]"))
    else:
        items.append({"field": prefix or "body", "message": str(detail), **_code(detail)})
    return items


def _code(entry) -> dict[str, str]:
    code = getattr(entry, "code", None)
    return {"code": str(code)} if code else {}


def validation_error_response(errors: list[dict[str, str]], message: str | None = None) -> Response:
    return Response(validation_error_body(errors, message), status=status.HTTP_400_BAD_REQUEST)


def _retry_after() -> str:
    return str(getattr(settings, "METERLINE_RETRY_AFTER_SECONDS", 1))


def api_exception_handler(exc, context):
    if isinstance(exc, DATABASE_UNAVAILABLE):
        logger.error("Database unavailable, answered 503: %s", exc, exc_info=exc)
        set_rollback()
        return Response(
            {"message": DATABASE_UNAVAILABLE_MESSAGE, "error": _ERROR_CATEGORY[503]},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": _retry_after()},
        )
    if isinstance(exc, Conflict):
        exc = ApiError(exc.message, status_code=status.HTTP_409_CONFLICT, code=exc.code, details=exc.details)
    elif isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound("No such object.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, exceptions.ValidationError):
        return validation_error_response(flatten_validation_errors(exc.detail))

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        response.data = api_error_body(exc)
        return response
    message = exc.detail if isinstance(exc.detail, str) else response.data.get("detail", str(exc.detail))
    body = {"message": str(message), "error": _ERROR_CATEGORY.get(response.status_code, "error")}
    if isinstance(exc, exceptions.ParseError):
        body["code"] = "MALFORMED_JSON"
    response.data = body
    return response


# Django's own error pages, for requests DRF never sees (no route matched, a body over
# DATA_UPLOAD_MAX_MEMORY_SIZE): API paths get the same JSON shape, other paths Django's HTML.
API_PREFIXES = ("/v0/", "/v1/", "/v2/")


def _json_error(status_code: int, message: str) -> JsonResponse:
    return JsonResponse({"message": message, "error": _ERROR_CATEGORY.get(status_code, "error")}, status=status_code)


def bad_request(request, exception):
    if not request.path.startswith(API_PREFIXES):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return _json_error(413, f"The body is larger than the {limit} bytes accepted.")
    return _json_error(400, "Bad request.")


def not_found(request, exception):
    if not request.path.startswith(API_PREFIXES):
        return defaults.page_not_found(request, exception)
    return _json_error(404, "No such endpoint or object (paths have no trailing slash; ids contain no '/').")


def server_error(request):
    if not request.path.startswith(API_PREFIXES):
        return defaults.server_error(request)
    # Django calls this handler while handling the exception (outside DRF: middleware, a plain view).
    if isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE):
        return database_unavailable_response()
    return _json_error(500, "Internal error; it has been logged.")


def database_unavailable_response() -> JsonResponse:
    """503 with ``Retry-After``: the request changed nothing and may be sent again."""
    response = _json_error(503, DATABASE_UNAVAILABLE_MESSAGE)
    response["Retry-After"] = _retry_after()
    return response
