"""Bearer API keys: ``Authorization: Bearer <key>``; a key acts for exactly one merchant."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions, permissions

from catalog.selectors import api_key_get_active


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
    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").strip()
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.keyword or not token.strip():
            raise exceptions.AuthenticationFailed("Send the API key as: Authorization: Bearer <key>.")
        api_key = api_key_get_active(raw_key=token.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed("This API key is not valid or has been revoked.")
        return MerchantPrincipal(api_key), api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="meterline"'


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
