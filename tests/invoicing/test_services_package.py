"""invoicing.services is a package of modules by domain verb: its API is what ``__init__`` lists, and no
module imports another module's ``_private`` names (a shared helper is public in the module that owns it)."""

import ast
from pathlib import Path

import invoicing.services as services

PACKAGE = Path(services.__file__).parent


def test_no_module_imports_a_private_name_of_another():
    crossing = [
        (path.name, alias.name)
        for path in sorted(PACKAGE.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert crossing == []


def test_every_listed_name_is_importable_from_the_package():
    assert [name for name in services.__all__ if not hasattr(services, name)] == []
    assert {
        "billing_run_execute",
        "billing_run_process_chunk",
        "subscription_start",
        "invoice_finalize",
        "invoice_insert",
        "invoice_issue",
        "credit_note_issue",
        "subscription_create_with_upfront_payment",
        "test_clock_advance",
        "subscription_now",
    } <= set(services.__all__)


def test_the_modules_are_the_domain_verbs():
    assert sorted(path.stem for path in PACKAGE.glob("*.py")) == [
        "__init__",
        "adjustments",
        "catch_up",
        "credit_notes",
        "delivery",
        "dunning",
        "intervals",
        "invoice_states",
        "lifecycle",
        "manual_lines",
        "numbering",
        "plan_versions",
        "price_intervals",
        "runs",
        "settlement",
        "test_clocks",
        "thresholds",
        "upfront_payment",
        "writer",
    ]
