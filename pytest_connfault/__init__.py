"""pytest-connfault: connection-drop fault injection for HTTP clients.

An in-process HTTP/1.1 server (h11 on anyio, asyncio or trio) that resets, closes, half-closes or
stalls keep-alive connections on command or at a chosen moment of a request, remembers every
connection and request in a ledger, and ships as a pytest plugin: the ``connfault_server`` fixtures,
the ``@pytest.mark.connfault`` marker, and ``pytest --connfault``.
"""

from __future__ import annotations

from ._chaos import Chaos as Chaos
from ._chaos import ChaosHandle as ChaosHandle
from ._chaos import arm_chaos as arm_chaos
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
