"""Test settings: fast hashing, eager Celery, in-memory SQLite unless DATABASE_URL is set."""

import os

os.environ.setdefault("DEBUG", "0")

from .base import *  # noqa: E402,F401,F403
from .base import DATABASES  # noqa: E402

SECRET_KEY = "test-only-meterline-key-0123456789abcdef"
# A fixed Fernet key: the tests encrypt provider credentials exactly as production does.
METERLINE_CREDENTIAL_KEYS = ["m2Lb0cMt3mqgXKrB0s6e2V2Vb3pT0ZgkQ4n8GxV1vYk="]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_URL = "memory://"
# Tests clear the cache: never a shared one, whatever CACHE_URL says.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
