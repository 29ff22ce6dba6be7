"""The WSGI application gunicorn serves: views imported and the startup objects frozen out of the
garbage collector's full collections (billing_site/wsgi.py), unless ``GC_FREEZE=0``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import gc, json, sys
import billing_site.wsgi as wsgi
print(json.dumps({
    "frozen": gc.get_freeze_count(),
    "events_view_imported": "invoicing.api.events" in sys.modules,
    "callable": callable(wsgi.application),
}))
"""


def _probe(**env: str) -> dict:
    environment = {key: value for key, value in os.environ.items() if key != "GC_FREEZE"}
    environment.update({"DJANGO_SETTINGS_MODULE": "billing_site.settings.test", **env})
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_application_imports_every_view_and_freezes_what_is_alive_at_startup():
    probe = _probe()
    assert probe["callable"] and probe["events_view_imported"]
    # Django, DRF, the URL table and our modules: tens of thousands of objects no full collection walks.
    assert probe["frozen"] > 10_000


def test_gc_freeze_0_leaves_the_collector_alone():
    probe = _probe(GC_FREEZE="0")
    assert probe["callable"]
    assert probe["frozen"] == 0
