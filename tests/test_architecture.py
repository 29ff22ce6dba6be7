"""Rules of the layout that import-linter's contracts (pyproject.toml) do not express, checked with ``ast`` over
the project's source (migrations excluded; tests are not the project's source):

* no module imports another module's ``_private`` names: ``from m import _name``, or ``m._name`` on an
  imported project module. A helper two modules share is public in the module that owns it;
* no module over ``LONG_MODULE_LINES`` lines without a sentence in its docstring saying why it stays whole: a
  sentence that starts "Kept whole because" (or "Kept whole for now because", naming the seam to split at). Long modules are where concerns pile up; the marker makes keeping
  one whole a decision someone wrote down, not an accident.

Each checker is a plain function; a test runs it over a synthetic source to show that it finds what it
should, so a checker that finds nothing cannot pass unnoticed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("core", "catalog", "metering", "wallets", "invoicing", "costs", "payments", "reporting", "billing_site")
LONG_MODULE_LINES = 600
WHY_MARKER = re.compile(r"\bKept whole (for now )?because \S")

# Modules allowed past the limit without a reason sentence (none).
LONG_MODULE_SKIPS: set[str] = set()


def project_modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module of the apps, migrations excluded."""
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.relative_to(ROOT).parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def is_project_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module of ``from <level dots><name> import …`` written in ``module``."""
    if level == 0:
        return name or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, name] if name else base)


def private_crossings(
    source: str, *, module: str, is_package: bool = False, is_module: Callable[[str], bool] = is_project_module
) -> list[str]:
    """Where ``source`` (the module ``module``) uses another module's private name, one line each."""
    tree = ast.parse(source)
    modules: dict[str, str] = {}  # local name -> the project module it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            origin = _absolute(module, is_package, node.level, node.module)
            for alias in node.names:
                if _private(alias.name) and origin != module:
                    found.append(f"line {node.lineno}: from {origin} import {alias.name}")
                if is_module(f"{origin}.{alias.name}"):
                    modules[alias.asname or alias.name] = f"{origin}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    modules[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    modules[top] = top
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        chain, value = [], node.value
        while isinstance(value, ast.Attribute):
            chain.insert(0, value.attr)
            value = value.value
        if not isinstance(value, ast.Name) or value.id not in modules:
            continue
        owner = ".".join([modules[value.id], *chain])
        if owner != module and is_module(owner):
            found.append(f"line {node.lineno}: {owner}.{node.attr}")
    return found


def long_without_reason(source: str, *, limit: int = LONG_MODULE_LINES) -> bool:
    """True when ``source`` is over ``limit`` lines and its docstring has no sentence matching ``WHY_MARKER``."""
    if len(source.splitlines()) <= limit:
        return False
    docstring = ast.get_docstring(ast.parse(source)) or ""
    return WHY_MARKER.search(" ".join(docstring.split())) is None


# -- the checkers find what they should ---------------------------------------------------------------


def test_the_private_import_check_finds_each_form_of_crossing():
    source = "\n".join(
        [
            "from invoicing.services.writer import _issue",  # 1: a private name of another module
            "from .lookup import _named, public",  # 2: relative, same package, another module
            "from invoicing import realtime",  # 3: a module, used below
            "import invoicing.services.writer",
            "import metering.api.views as metering_views",
            "realtime._text(1)",  # 6
            "invoicing.services.writer._issue()",  # 7
            "metering_views._iso(now)",  # 8
        ]
    )

    found = private_crossings(source, module="invoicing.realtime.debit")

    assert found == [
        "line 1: from invoicing.services.writer import _issue",
        "line 2: from invoicing.realtime.lookup import _named",
        "line 6: invoicing.realtime._text",
        "line 7: invoicing.services.writer._issue",
        "line 8: metering.api.views._iso",
    ]


def test_the_private_import_check_leaves_what_is_allowed():
    source = "\n".join(
        [
            "from __future__ import annotations",
            "from django.utils.translation import gettext_lazy as _",
            "from catalog.models import Subscription",
            "from . import lookup",
            "Subscription._meta.db_table",  # a class's attribute, not a module's private name
            "self._cache",
            "lookup.__name__",
            "lookup.public()",
        ]
    )

    assert private_crossings(source, module="invoicing.realtime.debit") == []
    # a package's own private names, imported by the package itself
    assert private_crossings("from . import _own", module="invoicing.realtime", is_package=True) == []


def test_the_long_module_check_wants_a_sentence_saying_why():
    body = "x = 1\n" * 700
    without = f'"""Many things."""\n{body}'
    with_reason = f'"""Many things.\n\nKept whole because the parts share one\ntransaction."""\n{body}'
    for_now = f'"""Many things.\n\nKept whole for now because the seam is X."""\n{body}'
    a_word_only = f'"""Many things, kept whole."""\n{body}'

    assert long_without_reason(without)
    assert long_without_reason(a_word_only)
    assert not long_without_reason(with_reason)
    assert not long_without_reason(for_now)
    assert not long_without_reason('"""Short."""\nx = 1\n')


# -- the project follows them --------------------------------------------------------------------------


def test_no_module_imports_another_modules_private_names():
    found = {
        dotted: crossings
        for dotted, path in project_modules()
        if (crossings := private_crossings(path.read_text(), module=dotted, is_package=path.name == "__init__.py"))
    }

    assert found == {}


def test_no_long_module_without_a_sentence_saying_why():
    found = [
        f"{path.relative_to(ROOT)} ({len(path.read_text().splitlines())} lines)"
        for _, path in project_modules()
        if str(path.relative_to(ROOT)) not in LONG_MODULE_SKIPS and long_without_reason(path.read_text())
    ]

    assert found == []
