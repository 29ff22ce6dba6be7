"""Production settings (billing_site/settings/production.py): a random SECRET_KEY or no start, HTTPS
only with HSTS, and `check --deploy` warning only about what the README explains."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from billing_site.secret_key import secret_key_problems

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = "Qm3x_Vt9-LrZp0aWc7YbNs2KdFh8JgE4uT1oXiRlMnBqCvSy6eDw5AzUkHjPfGr"
CREDENTIAL_KEY = "yF0o8Y4v4k2Qh6m1Jb7s9dXwC3pZ5nR2tA8uE0gL6iM="

PROBE = """
import json
import django
django.setup()
from django.conf import settings
print(json.dumps({name: getattr(settings, name, None) for name in (
    "SECURE_SSL_REDIRECT", "SECURE_REDIRECT_EXEMPT", "SECURE_PROXY_SSL_HEADER", "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SESSION_COOKIE_SECURE",
)}))
"""


def _run(args: list[str], tmp_path, **env: str) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        # The browser tests' DJANGO_ALLOW_ASYNC_UNSAFE (tests/browser/conftest.py) is no production setting.
        if not key.startswith(
            ("SECURE_", "DATABASE_URL", "SECRET_KEY", "CACHE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE", "METERLINE_CREDENTIAL")
        )
    }
    environment.update(
        {
            "DJANGO_SETTINGS_MODULE": "billing_site.settings.production",
            "METERLINE_VAR_DIR": str(tmp_path),
            "ALLOWED_HOSTS": "billing.example.com",
            "DEBUG": "0",
            "METERLINE_CREDENTIAL_KEYS": CREDENTIAL_KEY,
            **env,
        }
    )
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True)


def _settings(tmp_path, **env: str) -> dict:
    done = _run(["-c", PROBE], tmp_path, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("a" * 50, "it uses only 1 different characters, fewer than 10; it repeats a pattern"),
        ("changeme" * 4, "it has 32 characters, fewer than 50; it uses only 7 different characters, fewer than 10"),
        ("dev-insecure-meterline-key-do-not-use-in-production", "it is a development or test key"),
        ("", "it is not set"),
    ],
)
def test_production_refuses_a_guessable_secret_key_and_says_how_to_generate_one(tmp_path, key, problem):
    done = _run(["-c", "import django; django.setup()"], tmp_path, SECRET_KEY=key)

    assert done.returncode == 1
    assert "ImproperlyConfigured: SECRET_KEY must be a random value in production, and this one is not: " in done.stderr
    assert problem in done.stderr
    assert "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'" in done.stderr


def test_production_refuses_to_start_without_a_key_for_provider_credentials(tmp_path):
    done = _run(["-c", "import django; django.setup()"], tmp_path, SECRET_KEY=GOOD_KEY, METERLINE_CREDENTIAL_KEYS="")

    assert done.returncode == 1
    assert "ImproperlyConfigured: METERLINE_CREDENTIAL_KEYS is not set" in done.stderr


def test_generated_keys_pass_and_typed_patterns_do_not():
    assert [secret_key_problems(secrets.token_urlsafe(50)) for _ in range(200)] == [[]] * 200
    assert [secret_key_problems(secrets.token_hex(32)) for _ in range(200)] == [[]] * 200
    assert secret_key_problems("0123456789abcdef" * 4) == ["it repeats a pattern"]
    # a fixed half (a random one can have fewer than 10 distinct characters, a second problem)
    assert secret_key_problems("3f9a1c7e5b2d8046e1a9c3b7d5" * 2) == ["it repeats a pattern"]


def test_production_is_https_only_with_hsts_by_default(tmp_path):
    assert _settings(tmp_path, SECRET_KEY=GOOD_KEY) == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_REDIRECT_EXEMPT": [],
        "SECURE_PROXY_SSL_HEADER": None,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SESSION_COOKIE_SECURE": True,
    }


def test_behind_a_tls_terminating_proxy(tmp_path):
    probe = _settings(
        tmp_path,
        SECRET_KEY=GOOD_KEY,
        SECURE_SSL_REDIRECT="0",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
        SECURE_REDIRECT_EXEMPT=r"^healthz$",
        SECURE_HSTS_SECONDS="3600",
    )

    assert (probe["SECURE_SSL_REDIRECT"], probe["SECURE_PROXY_SSL_HEADER"]) == (
        False,
        ["HTTP_X_FORWARDED_PROTO", "https"],
    )
    assert (probe["SECURE_REDIRECT_EXEMPT"], probe["SECURE_HSTS_SECONDS"]) == (["^healthz$"], 3600)


def test_check_deploy_warns_only_about_what_the_readme_explains(tmp_path):
    done = _run(["manage.py", "check", "--deploy"], tmp_path, SECRET_KEY=GOOD_KEY)

    assert done.returncode == 0, done.stderr
    warned = re.findall(r"\(([\w.]+\.[WE]\d+)\)", done.stdout + done.stderr)
    assert warned == ["security.W005", "security.W021"]
    production = (ROOT / "README.md").read_text().split("## Running in production", 1)[1].split("\n## ", 1)[0]
    assert all(f"`{check_id}`" in production for check_id in warned)


def test_the_test_and_dev_settings_never_redirect_to_https():
    assert settings.SECURE_SSL_REDIRECT is False
    assert settings.SECURE_HSTS_SECONDS == 0
