"""Client drivers: how the matrix makes a client, sends a request with a timeout, reads its pool.

A driver is all the matrix knows about a client. Subclass :class:`SyncDriver` (blocking clients;
the matrix runs concurrent requests on threads) or :class:`AsyncDriver` (asyncio or trio clients;
concurrent requests are tasks), set the class attributes, and return an instance from the
``pytest_connfault_drivers`` hook. Each cell makes its own client with :meth:`open`, so a client's
state never leaks from one scenario into the next.

Every client is used with its defaults (its retries, its pool size), except where a scenario asks
for a pool limit: the matrix tests what users of the client get.
"""

from __future__ import annotations

import importlib
import importlib.util
import ssl
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar

from ._model import Reply


@dataclass(frozen=True)
class ClientOptions:
    """What a scenario needs from a client it asks a driver to make.

    Attributes:
        max_connections: a limit on the pool's connections (None: the client's default).
        ssl_context: the context for ``https://`` URLs (it trusts the matrix's own CA).
        ca_file: the same CA as a PEM file, for clients that only take a path (requests).
    """

    max_connections: int | None = None
    ssl_context: ssl.SSLContext | None = None
    ca_file: str | None = None


class Driver:
    """What every driver says about its client. Use :class:`SyncDriver` or :class:`AsyncDriver`.

    Attributes:
        name: the client's name in the matrix, unique, e.g. ``"httpx-sync"``.
        family: names a group of drivers (``--connfault=httpx`` selects every ``httpx`` one).
        label: the column header of the terminal matrix, at most 10 characters.
        backend: the event loop a cell runs on, ``"asyncio"`` or ``"trio"``.
        module: the module that must import for the client to be available.
        distribution: the installed distribution whose version the matrix records.
        supports_tls: False skips the TLS scenarios for this client.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    label: ClassVar[str] = ""
    backend: ClassVar[str] = "asyncio"
    module: ClassVar[str] = ""
    distribution: ClassVar[str] = ""
    is_async: ClassVar[bool] = False
    #: Whether the client speaks HTTPS with ``ClientOptions.ssl_context`` or ``ca_file``; the TLS
    #: scenarios are skipped for a driver that says no.
    supports_tls: ClassVar[bool] = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @property
    def column(self) -> str:
        """The column header: ``label``, else the name cut to 10 characters."""
        return (self.label or self.name)[:10]

    def unavailable(self, *, load: bool = True) -> str | None:
        """Why the client cannot run here (not installed), or None when it can.

        With ``load=False`` the modules are only looked up, not imported: the matrix's columns
        are known without importing every client in processes that run no cell (the xdist
        controller), where importing them would only cost time.
        """
        for module in filter(None, [self.module, "trio" if self.backend == "trio" else ""]):
            try:
                if not load:
                    if importlib.util.find_spec(module) is None:
                        return f"{module} is not installed"
                    continue
                importlib.import_module(module)
            except ImportError as exc:
                return f"{module} is not installed ({exc})"
        return None

    def version(self) -> str:
        """``"<distribution> <version>"`` of the client, as recorded in the reports."""
        name = self.distribution or self.module
        if not name:
            return "unknown"
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            found = (
                getattr(importlib.import_module(self.module), "__version__", None) if self.module else None
            )
            return f"{name} {found or '(version unknown)'}"

    def errors(self) -> tuple[type[BaseException], ...]:
        """The client's public exception classes: what a clear error is an instance of.

        Anything else (``KeyError``, ``AttributeError``, ...) is an internal error.
        """
        return ()

    def pool(self, client: Any) -> Any:
        """A :class:`~pytest_connfault.pools.PoolSnapshot` of ``client``'s pool.

        The default asks :func:`pytest_connfault.pools.pool_snapshot`; override it for a client
        no pool adapter knows. May raise ``PoolSnapshotError``.
        """
        from ..pools import pool_snapshot

        return pool_snapshot(client)


class SyncDriver(Driver):
    """A driver for a blocking client. Concurrent requests run on threads."""

    def open(self, options: ClientOptions) -> Any:
        """A new client, honouring ``options``."""
        raise NotImplementedError

    def request(self, client: Any, method: str, url: str, body: bytes | None, timeout: float) -> Reply:
        """Send one request, read the whole response; raise the client's exception on failure.

        ``timeout`` bounds connecting and each read (the client's read timeout), in seconds.
        """
        raise NotImplementedError

    def close(self, client: Any) -> None:
        """Close ``client`` and every connection it holds."""
        raise NotImplementedError


class AsyncDriver(Driver):
    """A driver for an async client, run on the driver's ``backend``."""

    is_async: ClassVar[bool] = True

    async def open(self, options: ClientOptions) -> Any:
        """A new client, honouring ``options`` (made on the cell's event loop)."""
        raise NotImplementedError

    async def request(self, client: Any, method: str, url: str, body: bytes | None, timeout: float) -> Reply:
        """As :meth:`SyncDriver.request`."""
        raise NotImplementedError

    async def close(self, client: Any) -> None:
        """As :meth:`SyncDriver.close`."""
        raise NotImplementedError


# -- the built-in drivers --------------------------------------------------------------------

#: A client context that is cheap to make: plain-HTTP cells never use it, but httpx builds a
#: context (loading the system's CA certificates, ~10 ms) for every client not handed one.
_plain_context: ssl.SSLContext | None = None


def _context(options: ClientOptions) -> ssl.SSLContext:
    global _plain_context
    if options.ssl_context is not None:
        return options.ssl_context
    if _plain_context is None:
        _plain_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return _plain_context


def _httpx_client(cls_name: str, options: ClientOptions) -> Any:
    import httpx

    limits = (
        httpx.Limits()
        if options.max_connections is None
        else httpx.Limits(max_connections=options.max_connections)
    )
    return getattr(httpx, cls_name)(limits=limits, verify=_context(options))


class _HttpxBase:
    family: ClassVar[str] = "httpx"
    module: ClassVar[str] = "httpx"
    distribution: ClassVar[str] = "httpx"

    def version(self) -> str:
        from importlib import metadata as md

        return f"httpx {md.version('httpx')} (httpcore {md.version('httpcore')})"

    def errors(self) -> tuple[type[BaseException], ...]:
        import httpx

        return (httpx.HTTPError, httpx.StreamError)


class HttpxSyncDriver(_HttpxBase, SyncDriver):
    """``httpx.Client``."""

    name = "httpx-sync"
    label = "httpx-sync"

    def open(self, options: ClientOptions) -> Any:
        return _httpx_client("Client", options)

    def request(self, client: Any, method: str, url: str, body: bytes | None, timeout: float) -> Reply:
        response = client.request(method, url, content=body, timeout=timeout)
        return Reply(response.status_code, response.content)

    def close(self, client: Any) -> None:
        client.close()


class HttpxAsyncDriver(_HttpxBase, AsyncDriver):
    """``httpx.AsyncClient`` on asyncio."""

    name = "httpx-async-asyncio"
    label = "httpx-aio"

    async def open(self, options: ClientOptions) -> Any:
        return _httpx_client("AsyncClient", options)

    async def request(self, client: Any, method: str, url: str, body: bytes | None, timeout: float) -> Reply:
        response = await client.request(method, url, content=body, timeout=timeout)
        return Reply(response.status_code, response.content)

    async def close(self, client: Any) -> None:
        await client.aclose()


class HttpxTrioDriver(HttpxAsyncDriver):
    """``httpx.AsyncClient`` on trio."""

    name = "httpx-async-trio"
    label = "httpx-trio"
    backend = "trio"


class Urllib3Driver(SyncDriver):
    """``urllib3.PoolManager`` with its default retries (``Retry(3)``)."""

    name = "urllib3"
    family = "urllib3"
    label = "urllib3"
    module = "urllib3"
    distribution = "urllib3"

    def version(self) -> str:
        import urllib3

        # urllib3-future installs itself as ``urllib3``: name what is really there.
        real = "urllib3-future" if "future" in getattr(urllib3, "__file__", "") else "urllib3"
        return f"{real} {getattr(urllib3, '__version__', '(version unknown)')}"

    def errors(self) -> tuple[type[BaseException], ...]:
        import urllib3

        return (urllib3.exceptions.HTTPError,)

    def open(self, options: ClientOptions) -> Any:
        import urllib3

        kwargs: dict[str, Any] = {"ssl_context": _context(options)}
        if options.max_connections is not None:
            kwargs.update(maxsize=options.max_connections, block=True)
        return urllib3.PoolManager(**kwargs)

    def request(self, client: Any, method: str, url: str, body: bytes | None, timeout: float) -> Reply:
        import urllib3

        response = client.request(
            method, url, body=body, timeout=urllib3.Timeout(connect=timeout, read=timeout)
        )
        return Reply(response.status, response.data)

    def close(self, client: Any) -> None:
        client.clear()


class RequestsDriver(SyncDriver):
    """``requests.Session``."""

    name = "requests"
    family = "requests"
    label = "requests"
    module = "requests"
    distribution = "requests"

    def errors(self) -> tuple[type[BaseException], ...]:
        import requests

        return (requests.RequestException,)

    def open(self, options: ClientOptions) -> Any:
        import requests

        session = requests.Session()
        if options.max_connections is not None:
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=options.max_connections, pool_block=True)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        if options.ca_file is not None:
            session.verify = options.ca_file
        return session

    def request(self, client: Any, method: str, url: str, body: bytes | None, timeout: float) -> Reply:
        # verify= per request: with REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE set, requests lets the
        # environment override ``session.verify`` (psf/requests#3829), never a request's own.
        response = client.request(method, url, data=body, timeout=timeout, verify=client.verify)
        return Reply(response.status_code, response.content)

    def close(self, client: Any) -> None:
        client.close()


class AiohttpDriver(AsyncDriver):
    """``aiohttp.ClientSession`` with a ``TCPConnector``."""

    name = "aiohttp"
    family = "aiohttp"
    label = "aiohttp"
    module = "aiohttp"
    distribution = "aiohttp"

    def errors(self) -> tuple[type[BaseException], ...]:
        import asyncio

        import aiohttp

        # aiohttp documents asyncio.TimeoutError as its timeout error.
        return (aiohttp.ClientError, asyncio.TimeoutError)

    async def open(self, options: ClientOptions) -> Any:
        import aiohttp

        from ..aiohttp_tls import tidy_connector

        limit = 100 if options.max_connections is None else options.max_connections
        # No TLS socket outlives its cell, whatever aiohttp and Python (see aiohttp_tls.py).
        connector = tidy_connector(limit=limit, ssl=_context(options))
        return aiohttp.ClientSession(connector=connector)

    async def request(self, client: Any, method: str, url: str, body: bytes | None, timeout: float) -> Reply:
        import aiohttp

        limits = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        async with client.request(method, url, data=body, timeout=limits) as response:
            return Reply(response.status, await response.read())

    async def close(self, client: Any) -> None:
        await client.close()


BUILTIN_DRIVERS: tuple[Driver, ...] = (
    HttpxSyncDriver(),
    HttpxAsyncDriver(),
    HttpxTrioDriver(),
    Urllib3Driver(),
    RequestsDriver(),
    AiohttpDriver(),
)
