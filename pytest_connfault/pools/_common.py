"""Helpers the built-in adapters share."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._snapshot import PoolSnapshotError


def type_name(obj: object) -> str:
    """``module.Class`` of ``obj``, shortened to the package for the well-known clients."""
    cls = type(obj)
    return f"{cls.__module__.split('.', 1)[0]}.{cls.__qualname__}"


def family_module(obj: object, names: tuple[str, ...]) -> Any:
    """The client package (one of ``names``) ``obj``'s class or one of its bases comes from."""
    for cls in type(obj).__mro__:
        top = cls.__module__.split(".", 1)[0]
        if top in names:
            return sys.modules.get(top)
    return None


@contextmanager
def reading(what: str, versions: str, expects: str) -> Iterator[None]:
    """Turn a missing attribute in a client's internals into an error that names its version.

    Args:
        what: the client being read, e.g. ``"httpx.Client"``.
        versions: its installed version(s), e.g. ``"httpx 0.28.1, httpcore 1.0.9"``.
        expects: the structure the adapter relies on, for the message.
    """
    try:
        yield
    except (AttributeError, KeyError, TypeError) as exc:
        raise PoolSnapshotError(
            f"cannot read the pool of {what} with {versions}: {type(exc).__name__}: {exc}. "
            f"pytest-connfault reads {expects}; the client's internals have moved in this version. "
            "Pin a supported version or plug in an adapter (pytest_connfault_pool_snapshot hook)."
        ) from exc


def port_of(address: Any) -> int | None:
    """The port of a socket address tuple, or None."""
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
        return address[1]
    return None


def socket_port(sock: Any) -> int | None:
    """The local port of a socket object, or None once it is closed."""
    if sock is None:
        return None
    try:
        return port_of(sock.getsockname())
    except OSError:  # closed: EBADF
        return None


def text(value: Any) -> str:
    """``str`` of a bytes-or-str value (httpcore keeps hosts and schemes as bytes)."""
    return value.decode("ascii", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
