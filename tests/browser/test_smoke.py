"""The admin opens in a real browser and a staff user can log in."""

import pytest
from django.contrib.auth import get_user_model

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_user_logs_in_to_the_admin(page, live_server):
    get_user_model().objects.create_superuser("finance", "finance@example.com", "correct horse battery")

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "finance")
    page.fill("#id_password", "correct horse battery")
    page.click("input[type=submit]")

    page.wait_for_url(f"{live_server.url}/admin/")
    page.screens("admin home")
    assert page.locator("#user-tools").inner_text().upper().startswith("WELCOME")
