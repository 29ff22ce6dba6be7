"""Bearer API keys: ``Authorization: Bearer <key>``; a key acts for exactly one merchant."""

from __future__ import annotations

import threading
import time

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions, permissions

from catalog.selectors import api_key_digest, api_key_get_active

# How long the ingestion endpoints trust a key looked up earlier in the same process. A key revoked
# through ``api_key_revoke`` is forgotten at once by the process that revoked it; other processes
# refuse it at most this many seconds later.
API_KEY_CACHE_SECONDS = 30.0
API_KEY_CACHE_SIZE = 1024


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
        header = authentication.get_authorization_header(request).decode("latin-1").strip()
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.keyword or not token.strip():
            raise exceptions.AuthenticationFailed("Send the API key as: Authorization: Bearer <key>.")
        view = (getattr(request, "parser_context", None) or {}).get("view")
        if getattr(view, "api_key_cache", False):
            api_key = _active_key_cached(token.strip())
        else:
            api_key = api_key_get_active(raw_key=token.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed("This API key is not valid or has been revoked.")
        return MerchantPrincipal(api_key), api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="meterline"'


# digest → (monotonic expiry, ApiKey with its merchant). Per process; only valid keys are kept.
_key_cache: dict[str, tuple[float, object]] = {}
_key_cache_lock = threading.Lock()


def _active_key_cached(raw_key: str):
    digest = api_key_digest(raw_key)
    now = time.monotonic()
    cached = _key_cache.get(digest)
    if cached is not None and cached[0] > now:
        return cached[1]
    api_key = api_key_get_active(raw_key=raw_key)
    with _key_cache_lock:
        if api_key is None:
            _key_cache.pop(digest, None)
        else:
            if len(_key_cache) >= API_KEY_CACHE_SIZE:
                _key_cache.clear()
            _key_cache[digest] = (now + API_KEY_CACHE_SECONDS, api_key)
    return api_key


def api_key_cache_forget(key_digest: str) -> None:
    """Drop a key from this process's cache (called when it is revoked)."""
    with _key_cache_lock:
        _key_cache.pop(key_digest, None)


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
