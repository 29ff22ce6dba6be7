from __future__ import annotations

import pytest

from tests.factories import MerchantFactory


@pytest.fixture
def seller(db):
    """A merchant billing in whole cents, rounding half up, with a 24 h grace period."""
    return MerchantFactory(name="Neural Labs", invoice_number_prefix="NLE")
