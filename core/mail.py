"""E-mail plumbing: the default backend, which needs no server.

Django's own file backend appends every message of a connection to one ``.log`` file. This one writes each
message to its own ``.eml`` file (RFC 5322, attachments included) under ``EMAIL_FILE_PATH`` (``var/mail/``),
which any mail client opens as the message the customer would have received.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend


class EmlFileBackend(BaseEmailBackend):
    """One ``<UTC time>-<random>.eml`` file per message in ``file_path`` (default ``EMAIL_FILE_PATH``)."""

    def __init__(self, *, file_path: str | Path | None = None, fail_silently: bool = False, **kwargs):
        super().__init__(fail_silently=fail_silently, **kwargs)
        self.file_path = Path(file_path or settings.EMAIL_FILE_PATH)

    def send_messages(self, email_messages) -> int:
        sent = 0
        for message in email_messages:
            if not message.recipients():
                continue
            # The file name only orders the folder for a person browsing it; the wall clock is right here.
            name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}.eml"
            try:
                self.file_path.mkdir(parents=True, exist_ok=True)
                (self.file_path / name).write_bytes(message.message().as_bytes(linesep="\r\n"))
            except OSError:
                if not self.fail_silently:
                    raise
                continue
            sent += 1
        return sent
