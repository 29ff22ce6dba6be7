"""Gap-free document numbers: one locked yearly sequence per merchant and document type."""

from __future__ import annotations

from ..models import (
    DocumentSequence,
)


def next_number(*, merchant, year: int, document_type: str) -> int:
    """The next number of the merchant's yearly sequence; the row stays locked until the caller commits,
    so two concurrent issues serialise and numbers are gap-free (a rollback gives the number back)."""
    sequence, _ = DocumentSequence.objects.select_for_update().get_or_create(
        merchant=merchant, year=year, document_type=document_type
    )
    number = sequence.last_number + 1  # safe: the row is locked until the caller commits
    DocumentSequence.objects.filter(pk=sequence.pk).update(last_number=number)
    return number


def invoice_number_format(*, merchant, year: int, sequence: int) -> str:
    prefix = merchant.invoice_number_prefix or "INV"
    return f"{prefix}-{year}-{sequence:06d}"


def credit_note_number_format(*, year: int, sequence: int) -> str:
    return f"CN-{year}-{sequence:06d}"
