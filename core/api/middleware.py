"""Refuse empty query parameter values on the API (``?startedBefore=``): a 400 naming each, never a value
silently ignored or read as "no filter". The schema says so (``minLength: 1`` on every string query
parameter, core/api/schema.py). Methods no view answers pass through, so they still get their 405."""

from __future__ import annotations

from django.http import JsonResponse

from .errors import API_PREFIXES

CHECKED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
EMPTY_VALUE_MESSAGE = "An empty value is not allowed; leave the parameter out instead."


class EmptyQueryValueMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method in CHECKED_METHODS and request.path.startswith(API_PREFIXES) and request.GET:
            empty = sorted({name for name, values in request.GET.lists() if "" in values})
            if empty:
                errors = [{"field": name, "message": EMPTY_VALUE_MESSAGE, "code": "blank"} for name in empty]
                return JsonResponse(
                    {"message": f"{empty[0]}: {EMPTY_VALUE_MESSAGE}", "error": "validation_error", "errors": errors},
                    status=400,
                )
        return self.get_response(request)
