"""Small steps through Django admin pages for the browser tests: log in, fill an inline row, save."""

from __future__ import annotations

from django.contrib.admin.utils import quote, unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from catalog.roles import billing_roles_sync

PASSWORD = "correct horse battery staple"


def staff_user_with_role(username: str, role: str):
    """A staff user in one of the shipped roles ("Billing admin" / "Billing viewer")."""
    billing_roles_sync()
    user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")


def log_out(page, base_url: str) -> None:
    page.click("#logout-form button")
    page.wait_for_load_state()


def add_inline_row(page, prefix: str, values: dict[str, str]) -> int:
    """Click the inline group's "Add another …" link and fill the new row; returns the row index."""
    index = int(page.input_value(f"#id_{prefix}-TOTAL_FORMS"))
    page.click(f"#{prefix}-group .add-row a")
    for name, value in values.items():
        selector = f"#id_{prefix}-{index}-{name}"
        if page.eval_on_selector(selector, "el => el.tagName") == "SELECT":
            page.select_option(selector, value)
        else:
            page.fill(selector, value)
    return index


def save(page, button: str = "_save") -> None:
    """Submit the change form and check that the admin reported success (otherwise show its errors)."""
    page.click(f"input[name={button}]")
    page.wait_for_load_state()
    errors = page.locator(".errornote, .errorlist")
    assert errors.count() == 0, errors.all_inner_texts()
    assert page.locator(".messagelist .success").count() == 1, page.content()[:2000]


def object_id_from_url(url: str) -> str:
    """``…/admin/catalog/plan/plan_5Fabc/change/`` → ``plan_abc`` (the admin escapes "_" in URLs)."""
    parts = [part for part in url.split("?")[0].split("/") if part]
    return unquote(parts[parts.index("change") - 1])


def select_containing(page, selector: str, text: str) -> str:
    """Select the first option whose label contains ``text`` (labels carry extra context, e.g. the product)."""
    value = page.eval_on_selector(
        selector,
        "(el, text) => { const o = [...el.options].find(o => o.text.includes(text)); return o ? o.value : null; }",
        text,
    )
    assert value is not None, f"no option containing {text!r} in {selector}"
    page.select_option(selector, value)
    return value


def autocomplete(page, field: str, text: str) -> None:
    """Pick ``text`` in an admin autocomplete (select2) field: open it, type, choose the first match."""
    page.click(f"#id_{field} + .select2 .select2-selection")
    page.fill(".select2-container--open .select2-search__field", text)
    page.locator(".select2-results__option", has_text=text).first.click()


def admin_url(base_url: str, app_model: str, object_id: str, view: str = "change") -> str:
    return f"{base_url}/admin/{app_model}/{quote(object_id)}/{view}/"
