"""The public face: `__all__` and what the package really exports stay in step."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

import pytest_connfault


def test_all_lists_exactly_the_public_names() -> None:
    """Every public name the package offers (defined, or imported on first use) is in __all__, and
    every name in __all__ resolves."""
    offered = {
        name
        for name in dir(pytest_connfault)
        if not name.startswith("_")
        and name != "annotations"
        and not isinstance(getattr(pytest_connfault, name), types.ModuleType)
    }
    assert set(pytest_connfault.__all__) == offered, (
        f"missing from __all__: {sorted(offered - set(pytest_connfault.__all__))}; "
        f"in __all__ but not offered: {sorted(set(pytest_connfault.__all__) - offered)}"
    )


def test_each_public_name_is_typed_and_loaded_from_the_same_home() -> None:
    """A public name appears three times in ``__init__.py``: in ``__all__``, among the imports only
    type checkers see, and in ``_HOMES`` (where it is loaded from on first use). The three agree,
    name for name and module for module."""
    tree = ast.parse(Path(pytest_connfault.__file__).read_text())
    typed = {
        alias.asname or alias.name: "." * node.level + (node.module or "")
        for block in tree.body
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    homes = pytest_connfault._HOMES
    assert typed == homes, f"only typed: {sorted(typed.keys() - homes.keys())}; only loaded: " + str(
        sorted(homes.keys() - typed.keys())
    ) + f"; homes that differ: {sorted(n for n in typed.keys() & homes.keys() if typed[n] != homes[n])}"
    assert set(homes) == set(pytest_connfault.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'FaultSever'"):
        pytest_connfault.FaultSever  # noqa: B018 - the lookup is the test


def test_loading_the_plugin_imports_no_server_machinery() -> None:
    """pytest loads the plugin in every session where the package is installed: anyio, asyncio, h11,
    ssl and the server wait for the first fixture that starts a server (a fresh interpreter, since
    this one has them all). anyio too: an older one imports ssl as it loads, and with autoload off,
    ``-p pytest_connfault.plugin -p anyio`` fails if anyio is imported before its plugin."""
    heavy = ["anyio", "asyncio", "h11", "ssl", "trio", "pytest_connfault._server", "pytest_connfault._proxy"]
    code = (
        "import sys, pytest, pytest_connfault, pytest_connfault.plugin; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip() == "[]", f"imported by the plugin alone: {loaded.stdout.strip()}"


def test_public_names_are_documented() -> None:
    """Every exported class and function has a docstring."""
    undocumented = [
        name
        for name in pytest_connfault.__all__
        if callable(getattr(pytest_connfault, name)) and not (getattr(pytest_connfault, name).__doc__ or "").strip()
    ]
    assert undocumented == [], f"public names without a docstring: {undocumented}"


def test_all_has_no_duplicates() -> None:
    """Each public name is listed once."""
    assert len(pytest_connfault.__all__) == len(set(pytest_connfault.__all__))
