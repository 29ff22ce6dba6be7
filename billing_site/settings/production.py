"""Production: refuses to start without a random SECRET_KEY; HTTPS only (README, "Running in production")."""

import os

from django.core.exceptions import ImproperlyConfigured

from billing_site.secret_key import secret_key_error, secret_key_problems

from .base import *  # noqa: F401,F403
from .base import METERLINE_CREDENTIAL_KEYS, SECRET_KEY, env_bool, env_list

if _problems := secret_key_problems(SECRET_KEY):
    raise ImproperlyConfigured(secret_key_error(_problems))
if not METERLINE_CREDENTIAL_KEYS:
    # Payment-provider secrets are encrypted with these keys (payments/credentials.py): never with a key
    # derived from something else, never without one.
    raise ImproperlyConfigured(
        "METERLINE_CREDENTIAL_KEYS is not set: generate one with "
        '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"` '
        "and keep it with your other secrets (payments/README.md)."
    )

SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# HTTPS. Plain-HTTP requests are redirected (301) to https://; behind a proxy that already redirects,
# SECURE_SSL_REDIRECT=0. A proxy terminating TLS must say so in a header it always sets (and strips from
# the client's request), named by SECURE_PROXY_SSL_HEADER (e.g. X-Forwarded-Proto): without it every
# request looks like plain HTTP and is redirected again and again.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Paths (regular expressions, without the leading slash) answered over plain HTTP too, e.g. a load
# balancer's health check.
SECURE_REDIRECT_EXEMPT = env_list("SECURE_REDIRECT_EXEMPT", "")
if _proxy_header := os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip():
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
# HSTS: browsers that once reached us over HTTPS use only HTTPS for this long (this host only, unless
# SECURE_HSTS_INCLUDE_SUBDOMAINS=1; SECURE_HSTS_PRELOAD=1 asks to be listed in browsers).
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
