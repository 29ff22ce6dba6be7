"""Screenshots of the demo catalog for the README (``make demo-screenshots``).

Builds the demo in a throw-away SQLite database under a temporary METERLINE_VAR_DIR as `make run` does
(``demo_catalog``: subscriptions from the first of LAST month; ``demo_activity``: weeks of usage events, last
month's periods closed by one billing run, every other draft issued); then starts ``manage.py runserver`` on a
free local port and drives Debian's Chromium (Playwright) to save three PNGs in docs/screenshots/: the billing
home, a plan's price simulator with its tier breakdown, and an invoice.

    /work/venv/bin/python scripts/demo_screenshots.py [--out docs/screenshots] [--keep]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
USERNAME, PASSWORD = "admin", "meterline-demo"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_demo(now: datetime) -> None:
    """Migrate, build the demo catalog and its activity (usage, last month invoiced) as `make run` does."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("demo_catalog", "--no-api-keys", stdout=io.StringIO())  # its listing is not needed here
    call_command("demo_activity", now=now.isoformat())
    get_user_model().objects.create_superuser(USERNAME, "admin@example.com", PASSWORD)


def wait_for(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {seconds} s")


def shoot(base: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM_ARGS

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.set_default_timeout(20_000)
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", USERNAME)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{base}/admin/")
        page.wait_for_selector("canvas[data-ready=true]")
        saved.append(out / "billing-home.png")
        page.locator("#billing-home").screenshot(path=str(saved[-1]))

        # A plan with a graduated price, simulated.
        page.goto(f"{base}/admin/catalog/price/?model__exact=graduated")
        page.locator("#result_list tbody tr td.field-plan a, #result_list tbody tr td.field-plan").first.wait_for()
        plan_name = page.locator("#result_list tbody tr td.field-plan").first.inner_text().split(" · ")[-1]
        page.goto(f"{base}/admin/catalog/plan/")
        page.locator("#result_list tbody tr th a", has_text=plan_name).first.click()
        page.click("#price-simulator-link")
        for row in page.locator("#simulator-form .form-row").all():
            graduated = "Graduated" in row.inner_text()
            row.locator("input[type=text]").fill("150000000" if graduated else "40")  # tokens cross tiers
        page.click("#simulate-button")
        page.wait_for_selector("#simulation-result")
        saved.append(out / "plan-simulator.png")
        page.screenshot(path=str(saved[-1]), full_page=True)

        # The largest issued invoice.
        page.goto(f"{base}/admin/invoicing/invoice/?status__exact=issued&o=-7")
        page.locator("#result_list tbody tr th a").first.click()
        page.wait_for_selector("#lines-group")
        saved.append(out / "invoice.png")
        page.screenshot(path=str(saved[-1]), full_page=True)
        browser.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary var dir (printed)")
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        sys.exit(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)")

    var_dir = tempfile.mkdtemp(prefix="meterline-demo-")
    os.environ.update(
        {
            "METERLINE_VAR_DIR": var_dir,
            "DJANGO_SETTINGS_MODULE": "billing_site.settings.dev",
            "DEBUG": "1",  # runserver serves the static files (admin CSS, Chart.js)
            "SECRET_KEY": "demo-screenshots-only",
            "DJANGO_ALLOW_ASYNC_UNSAFE": "true",
        }
    )
    os.environ.pop("DATABASE_URL", None)
    server = None
    try:
        build_demo(datetime.now(UTC))
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/admin/login/")
        for path in shoot(base, Path(args.out)):
            print(f"saved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        if args.keep:
            print(f"var dir kept: {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
