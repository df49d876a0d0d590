"""pytest-connfault: connection-drop fault injection for HTTP clients.

An in-process HTTP/1.1 server (h11 on anyio, asyncio or trio) that resets, closes, half-closes or
stalls keep-alive connections on command or at a chosen moment of a request, remembers every
connection and request in a ledger, and ships as a pytest plugin: the ``connfault_server`` fixtures,
the ``@pytest.mark.connfault`` marker, and ``pytest --connfault``.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from ._chaos import Chaos as Chaos
    from ._chaos import ChaosHandle as ChaosHandle
    from ._chaos import arm_chaos as arm_chaos
    from ._errors import ConnectionNotEnded as ConnectionNotEnded
    from ._errors import ConnfaultError as ConnfaultError
    from ._errors import FaultNotFired as FaultNotFired
    from ._errors import FaultSpecError as FaultSpecError
    from ._errors import ServerError as ServerError
    from ._faults import KINDS as KINDS
    from ._faults import MOMENTS as MOMENTS
    from ._faults import Fault as Fault
    from ._faults import FaultFiring as FaultFiring
    from ._faults import FaultHandle as FaultHandle
    from ._ledger import Connection as Connection
    from ._ledger import EndedBy as EndedBy
    from ._ledger import Outcome as Outcome
    from ._ledger import Request as Request
    from ._proxy import FaultProxy as FaultProxy
    from ._responses import Response as Response
    from ._server import FaultServer as FaultServer
    from ._server import ServerOptions as ServerOptions
    from ._upstream import UpstreamConnection as UpstreamConnection
    from .assertions import assert_new_connection as assert_new_connection
    from .assertions import assert_no_leak as assert_no_leak
    from .assertions import assert_no_stale as assert_no_stale
    from .assertions import assert_pool as assert_pool
    from .assertions import assert_reused as assert_reused
    from .pools import PooledConnection as PooledConnection
    from .pools import PoolSnapshot as PoolSnapshot
    from .pools import PoolSnapshotError as PoolSnapshotError
    from .pools import pool_snapshot as pool_snapshot

__all__ = (
    "KINDS",
    "MOMENTS",
    "Chaos",
    "ChaosHandle",
    "Connection",
    "ConnectionNotEnded",
    "ConnfaultError",
    "EndedBy",
    "Fault",
    "FaultFiring",
    "FaultHandle",
    "FaultNotFired",
    "FaultProxy",
    "FaultServer",
    "FaultSpecError",
    "Outcome",
    "PoolSnapshot",
    "PoolSnapshotError",
    "PooledConnection",
    "Request",
    "Response",
    "ServerError",
    "ServerOptions",
    "UpstreamConnection",
    "arm_chaos",
    "assert_new_connection",
    "assert_no_leak",
    "assert_no_stale",
    "assert_pool",
    "assert_reused",
    "pool_snapshot",
)

#: Where each public name lives. Imported on first use, not with the package: pytest imports this
#: package (through the plugin's entry point) in every session of every suite where it is installed,
#: and the server's modules pull in asyncio, h11 and ssl, which most sessions never need.
_HOMES = {
    "Chaos": "._chaos",
    "ChaosHandle": "._chaos",
    "arm_chaos": "._chaos",
    "ConnectionNotEnded": "._errors",
    "ConnfaultError": "._errors",
    "FaultNotFired": "._errors",
    "FaultSpecError": "._errors",
    "ServerError": "._errors",
    "KINDS": "._faults",
    "MOMENTS": "._faults",
    "Fault": "._faults",
    "FaultFiring": "._faults",
    "FaultHandle": "._faults",
    "Connection": "._ledger",
    "EndedBy": "._ledger",
    "Outcome": "._ledger",
    "Request": "._ledger",
    "FaultProxy": "._proxy",
    "Response": "._responses",
    "FaultServer": "._server",
    "ServerOptions": "._server",
    "UpstreamConnection": "._upstream",
    "assert_new_connection": ".assertions",
    "assert_no_leak": ".assertions",
    "assert_no_stale": ".assertions",
    "assert_pool": ".assertions",
    "assert_reused": ".assertions",
    "PooledConnection": ".pools",
    "PoolSnapshot": ".pools",
    "PoolSnapshotError": ".pools",
    "pool_snapshot": ".pools",
}


def __getattr__(name: str) -> typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
