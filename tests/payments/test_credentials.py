"""Where the key that encrypts provider secrets comes from: the environment, or (DEBUG only) SECRET_KEY."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from payments.credentials import credential_decrypt, credential_encrypt, credential_hint


def test_with_debug_on_and_no_key_one_is_derived_from_the_secret_key(settings):
    settings.METERLINE_CREDENTIAL_KEYS = []
    settings.DEBUG = True

    token = credential_encrypt("sk_test_abc")
    settings.SECRET_KEY = "another-development-secret-key-0123456789"

    with pytest.raises(Exception, match="cannot be decrypted"):
        credential_decrypt(token)


def test_without_debug_and_without_a_key_nothing_is_encrypted(settings):
    settings.METERLINE_CREDENTIAL_KEYS = []
    settings.DEBUG = False

    with pytest.raises(ImproperlyConfigured, match="METERLINE_CREDENTIAL_KEYS is not set"):
        credential_encrypt("sk_test_abc")


def test_a_value_that_is_no_fernet_key_is_named(settings):
    settings.METERLINE_CREDENTIAL_KEYS = ["not-a-key"]

    with pytest.raises(ImproperlyConfigured, match="not a Fernet key"):
        credential_encrypt("sk_test_abc")


def test_the_hint_shows_the_kind_and_the_last_four_characters_only():
    assert credential_hint("sk_live_51HxYzAbCdEf9876") == "sk_live_…9876"
    assert credential_hint("whsec_Qk3mZ0aa") == "whsec_…Z0aa"
    assert credential_hint("something_secret_1234") == "…1234"
