"""The invoice list's toolbar (Run billing now, Export this month, export by issue date) lays out clear of
the page title at the width finance uses (1360 px): nothing overlaps, every control is on screen."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from .admin_pages import PASSWORD, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def overlaps(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def test_the_invoice_list_toolbar_does_not_cover_the_title(page, live_server):
    get_user_model().objects.create_superuser("finance", "finance@example.com", PASSWORD)
    log_in(page, live_server.url, "finance")

    page.goto(f"{live_server.url}/admin/invoicing/invoice/")
    page.screens("invoice list at 1360")

    # The h1 box spans the content's width; its text is what must stay clear.
    title = page.evaluate(
        """() => {
            const range = document.createRange();
            range.selectNodeContents(document.querySelector("#content h1"));
            const r = range.getBoundingClientRect();
            return {x: r.x, y: r.y, width: r.width, height: r.height};
        }"""
    )
    toolbar = page.locator("ul.object-tools").bounding_box()
    export_form = page.locator("#export-by-issue-date").bounding_box()
    changelist = page.locator("#changelist").bounding_box()
    assert page.locator("#content h1").inner_text() == "Select invoice to change"
    assert page.locator("#run-billing-now").is_visible()
    assert not overlaps(title, toolbar)
    assert not overlaps(title, export_form)
    assert not overlaps(toolbar, export_form)
    assert not overlaps(export_form, changelist)
    for box in (toolbar, export_form):
        assert box["x"] >= 0 and box["x"] + box["width"] <= 1360
