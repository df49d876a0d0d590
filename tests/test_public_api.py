"""The public face: `__all__` and what the package really exports stay in step."""

from __future__ import annotations

import types

import pytest_connfault


def test_all_lists_exactly_the_public_names() -> None:
    """Every public attribute (not a submodule) is in __all__, and every name in __all__ exists."""
    public = {
        name
        for name, value in vars(pytest_connfault).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert set(pytest_connfault.__all__) == public, (
        f"missing from __all__: {sorted(public - set(pytest_connfault.__all__))}; "
        f"in __all__ but not defined: {sorted(set(pytest_connfault.__all__) - public)}"
    )


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
