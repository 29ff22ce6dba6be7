"""Public ids: prefixed, URL-safe, and never mistaken for the admin's escapes."""

from django.contrib.admin.utils import quote, unquote

from catalog.ids import new_public_id


def test_public_ids_never_look_like_admin_escapes():
    ids = [new_public_id("cus") for _ in range(2000)]

    assert all(unquote(public_id) == public_id for public_id in ids)
    assert all(quote(public_id).replace("_5F", "_") == public_id for public_id in ids)
