"""Bearer API keys: ``Authorization: Bearer <key>``; a key acts for exactly one merchant."""

from __future__ import annotations

import logging
import threading
import uuid

from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.db import transaction
from rest_framework import authentication, exceptions, permissions

from catalog.selectors import api_key_digest, api_key_get_active
from core.cache import TTLCache

logger = logging.getLogger(__name__)

# How long the ingestion endpoints trust a key looked up earlier in the same process. A key revoked
# through ``api_key_revoke`` is refused at once by every process sharing Django's cache (CACHE_URL):
# the revocation changes API_KEY_REVOCATIONS_CACHE_KEY there, and a process whose entries were cached
# under another value drops them all. Only a revocation made behind the service's back (a raw UPDATE)
# waits for the TTL.
API_KEY_CACHE_SECONDS = 30.0
API_KEY_CACHE_SIZE = 1024
API_KEY_REVOCATIONS_CACHE_KEY = "meterline:api-key-revocations"


class MerchantPrincipal:
    """The caller of an API request: the merchant its key belongs to."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key):
        self.api_key = api_key
        self.merchant = api_key.merchant

    def __str__(self) -> str:
        return f"api-key:{self.api_key.id}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Bearer key → merchant. A view with ``api_key_cache = True`` (event ingestion, the hot path)
    reuses a key found valid in this process during the last ``API_KEY_CACHE_SECONDS``; its merchant
    is then used for its id, and its other fields may be that old, so views reading merchant settings
    leave the cache off."""

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        view = (getattr(request, "parser_context", None) or {}).get("view")
        api_key = api_key_from_authorization(header, cached=getattr(view, "api_key_cache", False))
        if api_key is None:
            return None
        return MerchantPrincipal(api_key), api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="meterline"'


def api_key_from_authorization(header: str, *, cached: bool = False):
    """The active key an ``Authorization`` header value names; ``None`` when the header is empty.

    Raises ``AuthenticationFailed`` for another scheme or a key that is unknown or revoked. ``cached``:
    trust a key found valid in this process during the last ``API_KEY_CACHE_SECONDS`` (see below).
    """
    header = header.strip()
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != ApiKeyAuthentication.keyword or not token.strip():
        raise exceptions.AuthenticationFailed("Send the API key as: Authorization: Bearer <key>.")
    api_key = _active_key_cached(token.strip()) if cached else api_key_get_active(raw_key=token.strip())
    if api_key is None:
        raise exceptions.AuthenticationFailed("This API key is not valid or has been revoked.")
    return api_key


# digest → ApiKey with its merchant. Per process; only valid keys are kept, and only while the shared
# revocation marker still has the value read before they were looked up.
_key_cache: TTLCache = TTLCache(seconds=API_KEY_CACHE_SECONDS, size=API_KEY_CACHE_SIZE)
_key_cache_marker: list = [None]
_key_cache_lock = threading.Lock()
_MARKER_UNAVAILABLE = object()
_shared_cache_down = [False]  # logged once per outage, not once per request


def _revocations_marker():
    """The shared revocation marker (one cache read), or ``_MARKER_UNAVAILABLE`` if the cache fails."""
    try:
        marker = cache.get(API_KEY_REVOCATIONS_CACHE_KEY)
    except Exception:  # a shared cache that is down must not take ingestion with it
        if not _shared_cache_down[0]:
            _shared_cache_down[0] = True
            logger.warning("API key cache bypassed until the shared cache answers again", exc_info=True)
        return _MARKER_UNAVAILABLE
    if _shared_cache_down[0]:
        _shared_cache_down[0] = False
        logger.warning("Shared cache answers again: API key cache back in use")
    return marker


def _active_key_cached(raw_key: str):
    marker = _revocations_marker()
    if marker is _MARKER_UNAVAILABLE:  # no way to hear of revocations: read the key every time
        return api_key_get_active(raw_key=raw_key)
    digest = api_key_digest(raw_key)
    if marker != _key_cache_marker[0]:  # a key was revoked (in some process) since these were cached
        with _key_cache_lock:
            _key_cache.clear()
            _key_cache_marker[0] = marker
    cached = _key_cache.get(digest)
    if cached is not None:
        return cached
    api_key = api_key_get_active(raw_key=raw_key)
    with _key_cache_lock:
        if api_key is None:
            _key_cache.pop(digest)
        elif _key_cache_marker[0] == marker:  # not when a revocation arrived during the read
            _key_cache.set(digest, api_key)
    return api_key


def api_key_cache_forget(key_digest: str) -> None:
    """Make every process refuse a just-revoked key: drop it here and change the shared marker.

    Done now and again once the revocation commits: a process that re-read the key in between (the
    UPDATE not yet visible to it) would otherwise keep it as valid, under the new marker, for
    ``API_KEY_CACHE_SECONDS``.
    """
    _forget(key_digest)
    transaction.on_commit(lambda: _forget(key_digest))


def _forget(key_digest: str) -> None:
    with _key_cache_lock:
        _key_cache.pop(key_digest)
    try:
        cache.set(API_KEY_REVOCATIONS_CACHE_KEY, uuid.uuid4().hex, timeout=None)
    except Exception:
        logger.error(
            "API key revoked but the shared cache is unavailable: other processes may accept it for up to %s s",
            API_KEY_CACHE_SECONDS,
            exc_info=True,
        )


class IsMerchantKey(permissions.BasePermission):
    message = "Authenticate with a merchant API key: Authorization: Bearer <key>."

    def has_permission(self, request, view) -> bool:
        if not isinstance(request.user, MerchantPrincipal):
            return False
        # DRF also copies the principal onto the Django request, where simple-history's middleware
        # would record it as the change's (User) author and fail. API changes have no Django user.
        request._request.user = AnonymousUser()
        return True


def request_merchant(request):
    """The merchant behind the request's API key."""
    return request.user.merchant
