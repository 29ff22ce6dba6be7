"""wallets.services is a package of modules by domain verb: its API is what ``__init__`` lists, and no module
imports another module's ``_private`` names (a shared helper is public in the module that owns it)."""

import ast
from pathlib import Path

import wallets.services as services

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
    assert {"usage_debit", "usage_debits", "debit_decision", "invoice_settlement_record"} <= set(services.__all__)
