"""Who made a change recorded by django-simple-history: a person (``history_user``) or an API key.

simple-history fills ``history_user`` from the request its ``HistoryRequestMiddleware`` keeps in
``HistoricalRecords.context.request``. An API request authenticates with a merchant key, not a Django
user, so ``history_user`` stays empty (``catalog.api.auth.IsMerchantKey``); this module records the key
instead, in the ``history_api_key`` column every historical model inherits from
``catalog.models.ApiKeyAttributedHistory`` (simple-history's documented way to add a field to
historical records: ``HistoricalRecords(bases=[...])`` plus a ``pre_create_historical_record``
receiver).

The key reaches the Django request without any code of ours: DRF's public ``Request.auth`` setter,
run when the authentication class returns ``(principal, api_key)``, also sets ``auth`` on the
underlying ``HttpRequest`` (as its ``user`` setter does for ``user``) — the very object the middleware
stored. Nothing is written through DRF's private ``_request``.
"""

from __future__ import annotations

from simple_history.models import HistoricalRecords

from .models import ApiKey, ApiKeyAttributedHistory


def history_request_api_key() -> ApiKey | None:
    """The API key that authenticated the request being served in this thread, if any."""
    request = getattr(HistoricalRecords.context, "request", None)
    api_key = getattr(request, "auth", None)
    return api_key if isinstance(api_key, ApiKey) else None


def history_api_key_attach(sender, *, history_instance, **kwargs) -> None:
    """``pre_create_historical_record`` receiver: stamp the request's API key on the record."""
    if not isinstance(history_instance, ApiKeyAttributedHistory) or history_instance.history_api_key_id:
        return
    api_key = history_request_api_key()
    if api_key is not None:
        history_instance.history_api_key = api_key
