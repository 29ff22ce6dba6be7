"""Local development: DEBUG on and an insecure key, unless the environment says otherwise."""

import os

os.environ.setdefault("DEBUG", "1")

from .base import *  # noqa: E402,F401,F403
from .base import SECRET_KEY as _SECRET_KEY  # noqa: E402

SECRET_KEY = _SECRET_KEY or "dev-insecure-meterline-key-do-not-use-in-production"
