"""An aiohttp connector that leaves no TLS transport open behind a closed session.

Two known leaks leave an ``unclosed transport`` ResourceWarning behind an aiohttp session that
spoke TLS. The warning comes when the garbage collector finds the transport, so a suite that
turns warnings into errors sees it in whichever test happens to be running:

- aiohttp before 3.12.4 does not wait for its connections to close: ``ClientSession.close()``
  starts each TLS shutdown (close_notify, then the server's answer) and returns, and the event
  loop usually ends before that shutdown does (aio-libs/aiohttp#1925, fixed in 3.12.4);
- Python before 3.11 marks a TLS transport closed only when its owner closes it, not when the
  server ends the connection (python/cpython#90476, fixed by 3.11's new ``asyncio.sslproto``);
  aiohttp drops a connection the server closed without ever calling ``close()`` on it.

:func:`tidy_connector` makes a ``TCPConnector`` that remembers the transport of every TLS
connection it hands out and aborts them all once it has closed. Aborting is what current aiohttp
does with its TLS connections when it closes, and a no-op on a transport already closed, so
elsewhere it changes nothing. aiohttp is imported only when one is made.
"""

from __future__ import annotations

import functools
from typing import Any


def tidy_connector(**options: Any) -> Any:
    """An ``aiohttp.TCPConnector(**options)`` that aborts its TLS transports once it has closed.

    Make it inside a coroutine, as any aiohttp connector, and give it to the session:
    ``aiohttp.ClientSession(connector=tidy_connector())``.
    """
    return _tidy_connector_type()(**options)


@functools.cache
def _tidy_connector_type() -> type[Any]:
    import asyncio

    import aiohttp

    class TidyConnector(aiohttp.TCPConnector):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            #: The TLS transports handed out, by id (a reused connection is handed out again).
            self.transports: dict[int, asyncio.Transport] = {}

        async def connect(self, *args: Any, **kwargs: Any) -> Any:
            connection = await super().connect(*args, **kwargs)
            transport = connection.transport
            if (
                isinstance(transport, asyncio.Transport)
                and transport.get_extra_info("sslcontext") is not None
            ):
                self.transports[id(transport)] = transport
            return connection

        def close(self, **kwargs: Any) -> Any:
            # A coroutine in recent aiohttp, a method returning an awaitable in old ones: either way
            # the session awaits what this returns, and the connections are closed once it is done.
            closing = super().close(**kwargs)

            async def then_abort() -> None:
                await closing
                for transport in self.transports.values():
                    transport.abort()
                self.transports.clear()

            return then_abort()

    return TidyConnector
