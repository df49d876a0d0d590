"""An aiohttp connector that leaves no TLS transport open behind a closed session.

Two known leaks leave an ``unclosed transport`` ResourceWarning behind an aiohttp session that
spoke TLS. The warning comes when the garbage collector finds the transport, so a suite that
turns warnings into errors (as this one does) sees it in whichever test happens to be running:

- aiohttp before 3.12.4 does not wait for its connections to close: ``ClientSession.close()``
  starts each TLS shutdown (close_notify, then the server's answer) and returns, and the event
  loop usually ends before that shutdown does (aio-libs/aiohttp#1925, fixed in 3.12.4);
- Python before 3.11 marks a TLS transport closed only when its owner closes it, not when the
  server ends the connection (python/cpython#90476, fixed by 3.11's new ``asyncio.sslproto``);
  aiohttp drops a connection the server closed without ever calling ``close()`` on it.

:class:`TidyConnector` is a ``TCPConnector`` that remembers the transport of every connection it
hands out and, where one of those leaks exists, aborts them all when it closes. Aborting is
what current aiohttp does with its TLS connections when it closes, and it is a no-op on a
transport already closed. Elsewhere it does nothing more than a ``TCPConnector``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import Any

import aiohttp

AIOHTTP_VERSION = tuple(int(part) for part in aiohttp.__version__.split(".")[:3] if part.isdigit())
#: Whether a closed session can leave a TLS transport open here (see the module's docstring).
LEAVES_TLS_TRANSPORTS = AIOHTTP_VERSION < (3, 12, 4) or sys.version_info < (3, 11)


class TidyConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` that aborts every TLS transport it handed out, where they can leak, when it closes.

    Make it inside a coroutine (as any aiohttp connector) and pass it to the session:
    ``aiohttp.ClientSession(connector=TidyConnector())``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: The TLS transports handed out, by id (a reused connection is handed out again).
        self.transports: dict[int, asyncio.Transport] = {}

    async def connect(self, *args: Any, **kwargs: Any) -> Any:
        connection = await super().connect(*args, **kwargs)
        transport = connection.transport
        if isinstance(transport, asyncio.Transport) and transport.get_extra_info("sslcontext") is not None:
            self.transports[id(transport)] = transport
        return connection

    def close(self, **kwargs: Any) -> Awaitable[None]:
        # A coroutine in recent aiohttp, a method returning an awaitable in old ones: either way
        # the session awaits what this returns, and the connections are closed once it is done.
        closing = super().close(**kwargs)

        async def then_abort() -> None:
            await closing
            if LEAVES_TLS_TRANSPORTS:
                for transport in self.transports.values():
                    transport.abort()
            self.transports.clear()

        return then_abort()
