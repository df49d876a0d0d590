"""The conformance matrix behind ``pytest --connfault``: built-in scenarios x client drivers.

Each scenario reproduces one way a keep-alive connection dies (the documented encode/httpx #327
and its relatives), runs it against a fresh client through a driver, and judges the client's
outcome and its pool from the server's ledger: ``OK``, ``NON-STRICT``, ``INFORMATIONAL`` or
``FAILED``. Plug another client in with a :class:`SyncDriver` or :class:`AsyncDriver` returned
from the ``pytest_connfault_drivers`` hook.
"""

from __future__ import annotations

from . import _scenarios_broken  # noqa: F401 - its @scenario definitions are the catalog's second half
from ._drivers import BUILTIN_DRIVERS as BUILTIN_DRIVERS
from ._drivers import AsyncDriver as AsyncDriver
from ._drivers import ClientOptions as ClientOptions
from ._drivers import Driver as Driver
from ._drivers import SyncDriver as SyncDriver
from ._model import ERROR as ERROR
from ._model import FAILED as FAILED
from ._model import INFORMATIONAL as INFORMATIONAL
from ._model import NON_STRICT as NON_STRICT
from ._model import OK as OK
from ._model import SKIPPED as SKIPPED
from ._model import CellResult as CellResult
from ._model import Reply as Reply
from ._model import Verdict as Verdict
from ._scenarios import SCENARIOS as SCENARIOS
from ._scenarios import Scenario as Scenario

__all__ = (
    "BUILTIN_DRIVERS",
    "ERROR",
    "FAILED",
    "INFORMATIONAL",
    "NON_STRICT",
    "OK",
    "SCENARIOS",
    "SKIPPED",
    "AsyncDriver",
    "CellResult",
    "ClientOptions",
    "Driver",
    "Reply",
    "Scenario",
    "SyncDriver",
    "Verdict",
)
