"""The package's exceptions, under one base."""

from __future__ import annotations


class ConnfaultError(Exception):
    """Base class of every error pytest-connfault raises."""


class FaultSpecError(ConnfaultError, ValueError):
    """A fault, trigger or selector was given a name or value that does not exist or cannot apply."""


class FaultNotFired(ConnfaultError, TimeoutError):
    """A fault's handle was waited on, and the fault had not fired when the wait ran out."""


class ConnectionNotEnded(ConnfaultError, TimeoutError):
    """``server.wait_connections_ended()`` ran out of time with a connection the server still holds."""


class ServerError(ConnfaultError):
    """The server itself failed (a bug in pytest-connfault, not in the client under test)."""
