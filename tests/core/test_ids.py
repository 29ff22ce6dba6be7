"""Public ids: prefixed, URL-safe, and never mistaken for the admin's escapes."""

import collections
import string

from django.contrib.admin.utils import quote, unquote

from core import ids
from core.ids import new_public_id


def test_public_ids_never_look_like_admin_escapes():
    ids = [new_public_id("cus") for _ in range(2000)]

    assert all(unquote(public_id) == public_id for public_id in ids)
    assert all(quote(public_id).replace("_5F", "_") == public_id for public_id in ids)


def test_public_ids_are_a_prefix_a_letter_and_fifteen_base62_characters():
    alphabet = set(string.ascii_letters + string.digits)
    for public_id in (new_public_id("inv") for _ in range(2000)):
        prefix, random_part = public_id.split("_")
        assert prefix == "inv"
        assert len(random_part) == 16
        assert random_part[0] in string.ascii_letters
        assert set(random_part) <= alphabet


def test_bytes_that_would_bias_the_alphabet_are_rejected(monkeypatch):
    # 248..255 would make the first 8 characters likelier (256 % 62); 208..255 for the leading letter.
    supplied = iter([bytes([208, 255, 51, 248, 61, 62, 0] + [1] * 17)])
    monkeypatch.setattr(ids.secrets, "token_bytes", lambda n: next(supplied))

    assert new_public_id("cus") == "cus_Z9aa" + "b" * 12


def test_every_character_is_about_equally_likely():
    counts = collections.Counter("".join(new_public_id("x")[3:] for _ in range(20_000)))
    # 300,000 draws over 62 characters: ~4,839 each, standard deviation ~69; a byte-modulo bias would
    # put the first eight ~+3% (~+150) and the rest ~-1%.
    expected = 300_000 / 62
    assert set(counts) == set(string.ascii_letters + string.digits)
    assert all(abs(count - expected) < 6 * 69 for count in counts.values())
