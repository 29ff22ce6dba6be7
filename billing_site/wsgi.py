"""The WSGI application (gunicorn: ``billing_site.wsgi:application``).

Before it serves, every view module is imported (the URL table resolved) and the objects alive at that
point — modules, classes, settings, the URL table — are moved out of the garbage collector's reach
(``gc.freeze``). Without that, each full (generation-2) collection walks all of them: measured at up
to 83 ms on the real-time event path, a stall that the request running at that moment and every
request queued behind it on the worker wait out (benchmarks/RESULTS.md, session 5). Frozen, such a
collection takes under 3 ms. The frozen objects live as long as the process anyway; objects created
by requests are collected as before. ``GC_FREEZE=0`` leaves the collector alone.
"""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings.production")
application = get_wsgi_application()


def freeze_startup_objects() -> None:
    """Import every view (resolve the URL table), collect once, then freeze what is alive."""
    from django.conf import settings
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 — imports the URLconf and with it every view module
    get_resolver(settings.API_URLCONF).url_patterns  # noqa: B018 — the API's table (core/api/middleware.py)
    gc.collect()
    gc.freeze()


if os.environ.get("GC_FREEZE", "1") != "0":
    freeze_startup_objects()
