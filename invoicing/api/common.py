"""What the billing endpoints share: the base view, the documented error answers, the 404 lookups
and the 409 conflict. The endpoints are by resource: ``subscriptions``, ``test_clocks``, ``invoices`` and
``ledger`` (/v0/subscriptions, /v0/testClocks, /v2/invoices and /v2/invoices/lineItems), wire-compatible
with the Paygentic client.

Views parse with an input serializer, call an invoicing service or selector, and answer with an output
serializer. Objects of another merchant are "not found" (404); a query or body naming another merchant is
refused (403). Service refusals become 400 (bad input), 409 (state conflict) or 422.
"""

from __future__ import annotations

from rest_framework import exceptions, status

from catalog.api.views import CatalogApi
from catalog.models import Subscription
from core.api.errors import ApiError
from core.api.schema import paging_parameters
from core.api.serializers import ErrorOutput
from invoicing import selectors
from invoicing.models import Invoice

ERRORS = {code: ErrorOutput for code in (400, 401, 403, 404)}
CONFLICT = {409: ErrorOutput}
PAGING = paging_parameters()
LINE_ITEMS_MAX = 1000


class BillingApi(CatalogApi):
    """The catalog API's base view (decimal JSON parsing, null-character refusal, merchant, body)."""


def conflict(message: str, code: str, details=None) -> ApiError:
    return ApiError(message, status_code=status.HTTP_409_CONFLICT, code=code, details=details)


def subscription_or_404(merchant, subscription_id: str) -> Subscription:
    try:
        return selectors.subscription_get(merchant=merchant, subscription_id=subscription_id)
    except Subscription.DoesNotExist:
        raise exceptions.NotFound("No such subscription.") from None


def invoice_or_404(merchant, invoice_id: str) -> Invoice:
    try:
        return selectors.invoice_get(merchant=merchant, invoice_id=invoice_id)
    except Invoice.DoesNotExist:
        raise exceptions.NotFound("No such invoice.") from None
