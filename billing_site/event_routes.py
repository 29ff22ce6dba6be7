"""The event routes' own WSGI entry: ``POST /v0/events`` and ``POST /v0/events/batch`` with a valid key.

Nearly every request Meterline serves is one of these two. Through Django's handler each pays for
eight middleware frames, URL resolution and DRF's view wrappers before the view's own work (issue #24; benchmarks/RESULTS.md). ``EventRoutes`` wraps the WSGI application gunicorn
serves and answers exactly those requests itself, with the same Django objects and the same views:

- the request is Django's ``WSGIRequest``; the view instance is the one the URLconf routes to
  (``billing_site.api_urls``), answering through ``keyed_answer``, the method its ``dispatch`` calls;
- Django's request signals are sent as its handler sends them (``request_started`` before the request
  is read, ``request_finished`` once the answer is built: connections and caches closed, the request
  id cleared);
- what the middleware does on these routes is done by the same code: ``SecurityMiddleware``'s request
  check and response headers, the request id header, ``settings.API_MIDDLEWARE`` (simple-history's
  request context) around the view, ``Content-Length``, Django's ``log_response`` for a 4xx/5xx and
  ``response_for_exception`` for an exception (logged, ``handler500``'s JSON answer);
- anything else goes to Django unchanged: another path or method, a query string (the API refuses
  empty values there), a host Django would refuse, a request ``SecurityMiddleware`` would redirect to
  HTTPS, a missing or refused key (DRF's 401).

Nothing is read from the request body before that decision, so a request handed on is read afresh (the
key is looked up after ``request_started``, like DRF's; a request handed on then gets Django's own
``request_started`` too, which closes nothing more).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import request_finished, request_started
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix
from django.utils.log import log_response
from django.utils.module_loading import import_string

from billing_site.ops.request_id import HEADER as REQUEST_ID_HEADER
from billing_site.ops.request_id import request_id_from_header, request_id_var
from invoicing.api.events import RealtimeEventBatchIngestApi, RealtimeEventIngestApi

WsgiApplication = Callable[[dict, Callable], Iterable[bytes]]


class EventRoutes:
    """A WSGI application: the two event routes answered here, every other request by ``django``."""

    def __init__(self, django: WsgiApplication):
        self.django = django
        self.views = {"/v0/events": RealtimeEventIngestApi(), "/v0/events/batch": RealtimeEventBatchIngestApi()}
        self.security = SecurityMiddleware(get_response=self._unused)
        handler = self._view_answer
        for path in reversed(settings.API_MIDDLEWARE):
            handler = import_string(path)(handler)
        self.handler = handler

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        view = self.views.get(environ.get("PATH_INFO", ""))
        if view is None or environ.get("REQUEST_METHOD") != "POST" or environ.get("QUERY_STRING"):
            return self.django(environ, start_response)
        request_started.send(sender=self.__class__, environ=environ)
        request = WSGIRequest(environ)
        api_key = self._servable_key(view, request)
        if api_key is None:
            return self.django(environ, start_response)
        set_script_prefix(request.META.get("SCRIPT_NAME", "") or "/")
        request_id = request_id_from_header(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id
        request_id_var.set(request_id)
        request.api_view, request.api_key = view, api_key
        try:
            try:
                response = self.handler(request)
            except Exception as error:  # as Django's handler: logged, answered by handler500
                response = response_for_exception(request, error)
            response = self.security.process_response(request, response)
            response[REQUEST_ID_HEADER] = request_id
            if not response.has_header("Content-Length"):
                response.headers["Content-Length"] = str(len(response.content))
            if response.status_code >= 400:
                log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
            start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
            return [response.content]
        finally:
            request_finished.send(sender=self.__class__)

    def _servable_key(self, view, request: WSGIRequest):
        """The request's API key when this route may answer it; None hands the request to Django."""
        try:
            request.get_host()
        except DisallowedHost:
            return None
        if self.security.process_request(request) is not None:  # a redirect to HTTPS
            return None
        return view.api_key_of(request)

    @staticmethod
    def _view_answer(request: WSGIRequest):
        return request.api_view.keyed_answer(request, request.api_key)

    @staticmethod
    def _unused(request):  # SecurityMiddleware is only asked for its request check and response headers
        raise AssertionError("not called")
