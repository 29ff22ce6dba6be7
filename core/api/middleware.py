"""The API's middleware.

``ApiRouteMiddleware`` decides once per request whether it is a bearer-key API call: a path under the
API prefixes that resolves in ``settings.API_URLCONF`` (billing_site/api_urls.py). Those requests are
served right there — through the short chain named by ``settings.API_MIDDLEWARE`` (plain ``__call__``
middleware only; today simple-history's request context, which records the API key on change history),
the view called, a DRF response rendered, its Content-Length set — and never pass through the middleware
listed after it in ``MIDDLEWARE``, which is the admin's: sessions, CSRF, authentication, messages and
clickjacking do nothing an API key request needs. Everything else
(the admin, documents, probes, the schema and docs, an unknown API path's JSON 404) goes on down the full
stack as before. Only Django's public API is used (``resolve``, ``ResolverMatch``, ``render``); an
exception raised by an API view is turned into the API's JSON error answer by Django's handler, as on the
full stack (``handler500``, core/api/errors.py).

``EmptyQueryValueMiddleware`` refuses empty query parameter values on the API (``?startedBefore=``): a 400
naming each, never a value silently ignored or read as "no filter". The schema says so (``minLength: 1``
on every string query parameter, core/api/schema.py). Methods no view answers pass through, so they still
get their 405.
"""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.urls import Resolver404, resolve
from django.utils.module_loading import import_string

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


class ApiRouteMiddleware:
    """Serve bearer-key API routes here; pass every other request to the rest of the stack."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.urlconf = settings.API_URLCONF
        handler = self.serve
        for path in reversed(settings.API_MIDDLEWARE):
            handler = import_string(path)(handler)
        self.api_handler = handler

    def __call__(self, request):
        path = request.path_info
        if path.startswith(API_PREFIXES):
            try:
                match = resolve(path, self.urlconf)
            except Resolver404:
                pass  # the schema, the docs, or no such endpoint: the full stack answers
            else:
                request.resolver_match = match
                return self.api_handler(request)
        return self.get_response(request)

    @staticmethod
    def serve(request):
        match = request.resolver_match
        response = match.func(request, *match.args, **match.kwargs)
        render = getattr(response, "render", None)
        if callable(render):  # a DRF Response (a SimpleTemplateResponse) is rendered by its handler
            response = render()
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))  # as CommonMiddleware does
        return response
