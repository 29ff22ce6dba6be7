"""/v0/subscriptions: dunning's marks as Meterline extensions, ``pastDueSince`` and ``usageBlockedSince`` (null
unless dunning acted), in the get and the list; the unmodified client still parses the subscription."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from paygentic_sdk.models import Subscription as ClientSubscription

from catalog.models import Subscription
from invoicing.receivables import subscription_past_due_mark

pytestmark = pytest.mark.django_db

MARKED = datetime(2025, 3, 2, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(("block", "blocked_since"), [(False, None), (True, "2025-03-02T09:30:00Z")])
def test_the_subscription_reads_past_due_and_usage_blocked(api_client, subscribe, arrears_plan, block, blocked_since):
    sub = subscribe(arrears_plan).json()
    assert (sub["pastDueSince"], sub["usageBlockedSince"]) == (None, None)

    subscription_past_due_mark(subscription_id=sub["id"], block_usage=block, at=MARKED)
    body = api_client.get(f"/v0/subscriptions/{sub['id']}").json()
    listed = api_client.get("/v0/subscriptions").json()["data"]

    assert (body["pastDueSince"], body["usageBlockedSince"]) == ("2025-03-02T09:30:00Z", blocked_since)
    assert [(item["id"], item["usageBlockedSince"]) for item in listed] == [(sub["id"], blocked_since)]
    assert ClientSubscription.model_validate(body).id == sub["id"]
    assert Subscription.objects.get(pk=sub["id"]).is_usage_blocked is block
