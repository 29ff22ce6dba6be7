"""Where mail goes: by default one .eml file per message under var/mail/ (no server), SMTP when the
environment names a server (EMAIL_URL or EMAIL_HOST…), any other backend (django-anymail's) by EMAIL_BACKEND."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from django.core.mail import EmailMultiAlternatives

from core.mail import EmlFileBackend
from invoicing.models import DeliveryStatus, DocumentDelivery
from invoicing.services import document_delivery_send, invoice_finalize
from tests.invoicing.test_delivery import FEB_1, NOW, _draft

ROOT = Path(__file__).resolve().parent.parent.parent

PROBE = """
import json
import django
django.setup()
from django.conf import settings
print(json.dumps({name: str(getattr(settings, name, None)) for name in (
    "EMAIL_BACKEND", "EMAIL_FILE_PATH", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD",
    "EMAIL_USE_TLS", "EMAIL_USE_SSL", "ANYMAIL",
)} | {"anymail_installed": "anymail" in settings.INSTALLED_APPS}))
"""


def _settings_with(tmp_path, **env: str) -> dict:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("EMAIL_", "ANYMAIL_"))}
    environment |= {"DJANGO_SETTINGS_MODULE": "billing_site.settings.dev", "METERLINE_VAR_DIR": str(tmp_path), **env}
    # Settings only: django.setup() would import the anymail app, which is no dependency of ours.
    probe = PROBE.replace("django.setup()", "")
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_by_default_mail_is_written_under_var_mail(tmp_path):
    found = _settings_with(tmp_path)

    assert found["EMAIL_BACKEND"] == "core.mail.EmlFileBackend"
    assert found["EMAIL_FILE_PATH"] == str(tmp_path / "mail")


def test_email_url_selects_smtp_with_tls(tmp_path):
    starttls = _settings_with(tmp_path, EMAIL_URL="smtp://mailer:s%40cret@smtp.example.com:2525")
    implicit = _settings_with(tmp_path, EMAIL_URL="smtps://mailer:pw@smtp.example.com")

    assert {key: starttls[key] for key in ("EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT")} == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "smtp.example.com",
        "EMAIL_PORT": "2525",
    }
    assert (starttls["EMAIL_HOST_USER"], starttls["EMAIL_HOST_PASSWORD"]) == ("mailer", "s@cret")
    assert (starttls["EMAIL_USE_TLS"], starttls["EMAIL_USE_SSL"]) == ("True", "False")
    assert (implicit["EMAIL_PORT"], implicit["EMAIL_USE_TLS"], implicit["EMAIL_USE_SSL"]) == ("465", "False", "True")


def test_email_host_selects_smtp_with_starttls_by_default(tmp_path):
    found = _settings_with(tmp_path, EMAIL_HOST="smtp.example.com", EMAIL_HOST_USER="mailer")

    assert found["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (found["EMAIL_PORT"], found["EMAIL_USE_TLS"], found["EMAIL_USE_SSL"]) == ("587", "True", "False")


def test_an_anymail_backend_is_configured_from_the_environment(tmp_path):
    found = _settings_with(
        tmp_path, EMAIL_BACKEND="anymail.backends.postmark.EmailBackend", ANYMAIL_POSTMARK_SERVER_TOKEN="token-1"
    )

    assert found["EMAIL_BACKEND"] == "anymail.backends.postmark.EmailBackend"
    assert found["anymail_installed"] is True
    assert found["ANYMAIL"] == str({"POSTMARK_SERVER_TOKEN": "token-1"})


def test_the_file_backend_writes_one_eml_per_message(tmp_path):
    backend = EmlFileBackend(file_path=tmp_path / "mail")
    first = EmailMultiAlternatives("One", "text one", "billing@example.com", ["a@example.com"])
    first.attach("one.pdf", b"%PDF-1.4 one", "application/pdf")
    second = EmailMultiAlternatives("Two", "text two", "billing@example.com", ["b@example.com"])

    assert backend.send_messages([first, second]) == 2

    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 2
    messages = sorted(
        (message_from_bytes(path.read_bytes(), policy=policy.default) for path in files), key=lambda m: m["Subject"]
    )
    assert [m["To"] for m in messages] == ["a@example.com", "b@example.com"]
    [attachment] = list(messages[0].iter_attachments())
    assert attachment.get_filename() == "one.pdf"
    assert attachment.get_content() == b"%PDF-1.4 one"


@pytest.mark.django_db
def test_an_issued_invoice_lands_under_var_mail_with_the_default_backend(settings, tmp_path, seller):
    from tests.invoicing.factories import CustomerFactory

    settings.EMAIL_BACKEND = "core.mail.EmlFileBackend"
    settings.EMAIL_FILE_PATH = tmp_path / "mail"
    invoice = invoice_finalize(invoice=_draft(CustomerFactory(merchant=seller, email="ap@acme.example")), now=FEB_1)

    delivery = document_delivery_send(delivery_id=DocumentDelivery.objects.get(invoice=invoice).pk, now=NOW)

    assert delivery.status == DeliveryStatus.SENT
    [path] = (tmp_path / "mail").glob("*.eml")
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["To"] == "ap@acme.example"
    assert message["Subject"].startswith(f"Invoice {invoice.number} from ")
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content().startswith(b"%PDF")
