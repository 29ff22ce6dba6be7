"""README's "Use it from code" snippet runs as printed with the unmodified client, and running it again reuses
the product, plan and customer instead of adding copies."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from catalog.models import BillableMetric, Customer, Plan, Price, Product, Subscription
from catalog.services import api_key_create
from tests.factories import MerchantFactory

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet() -> str:
    section = README.read_text().split("## Use it from code", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.django_db(transaction=True)
def test_the_snippet_runs_twice_and_bills_january_each_time(live_server):
    merchant = MerchantFactory(name="Readme Labs")
    _, key = api_key_create(merchant=merchant, name="readme")
    code = readme_snippet()
    for placeholder in ('"org_…"', '"ml_live_…"', '"http://127.0.0.1:8000"'):
        assert code.count(placeholder) == 1, placeholder
    code = (
        code.replace('"org_…"', repr(merchant.id))
        .replace('"ml_live_…"', repr(key))
        .replace('"http://127.0.0.1:8000"', repr(live_server.url))
    )

    printed = []
    for _ in range(2):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
        printed.append(out.getvalue())

    assert printed == ["2.40\n", "2.40\n"]
    rows = {
        model.__name__: model.objects.filter(merchant=merchant).count()
        for model in (Product, BillableMetric, Price, Plan, Customer, Subscription)
    }
    assert rows == {"Product": 1, "BillableMetric": 1, "Price": 1, "Plan": 1, "Customer": 1, "Subscription": 2}
