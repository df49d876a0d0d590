"""Faults during the TLS handshake, and what each client makes of them.

``at="handshake"`` fires once the client's ClientHello has arrived and before any byte of the
ServerHello: an RST, garbage where the ServerHello belongs, or a stall (the client's connect
timeout must fire). The fault fires once, so the same client's next request succeeds on a new
connection, which the ledger shows. The last test is the negative control: a client that does not
trust the session CA cannot connect at all.
"""

from __future__ import annotations

import asyncio
import ssl
from importlib import metadata
from typing import Any, Callable

import aiohttp
import httpx
import pytest
import requests
import trio
import urllib3

from pytest_connfault import FaultServer
from pytest_connfault.aiohttp_tls import tidy_connector

#: The connect timeout for the stalled handshake (the others get 5 s, so a loaded machine is no issue).
STALL_TIMEOUT = 0.3
HTTPCORE_VERSION = tuple(int(part) for part in metadata.version("httpcore").split(".")[:3] if part.isdigit())
#: httpcore before 1.0.6 lets a failed handshake's ssl.SSLError out of its asyncio (anyio) backend
#: as it is; 1.0.6 maps it to ConnectError, as its sync and trio backends always did (encode/httpx#3350).
RAW_SSL_ERROR = (
    f"httpcore {metadata.version('httpcore')} raises the handshake's ssl.SSLError (WRONG_VERSION_NUMBER) "
    "unwrapped on asyncio instead of httpx.ConnectError (mapped since httpcore 1.0.6)"
)


def via_httpx(url: str, ssl_context: Any, bundle: str, connect: float) -> int:
    with httpx.Client(verify=ssl_context, timeout=httpx.Timeout(5, connect=connect)) as client:
        return client.get(url).status_code


def via_httpx_async(url: str, ssl_context: Any, bundle: str, connect: float, run: Any = None) -> int:
    async def fetch() -> int:
        timeout = httpx.Timeout(5, connect=connect)
        async with httpx.AsyncClient(verify=ssl_context, timeout=timeout) as client:
            return (await client.get(url)).status_code

    return int(asyncio.run(fetch()) if run is None else run(fetch))


def via_httpx_trio(url: str, ssl_context: Any, bundle: str, connect: float) -> int:
    return via_httpx_async(url, ssl_context, bundle, connect, run=trio.run)


def via_requests(url: str, ssl_context: Any, bundle: str, connect: float) -> int:
    with requests.Session() as session:
        return session.get(url, verify=bundle, timeout=(connect, 5)).status_code


def via_urllib3(url: str, ssl_context: Any, bundle: str, connect: float) -> int:
    timeout = urllib3.Timeout(connect=connect, read=5)
    with urllib3.PoolManager(ca_certs=bundle, timeout=timeout, retries=False) as manager:
        return manager.request("GET", url).status


def via_aiohttp(url: str, ssl_context: Any, bundle: str, connect: float) -> int:
    async def fetch() -> int:
        timeout = aiohttp.ClientTimeout(total=5, sock_connect=connect)
        # no TLS transport left open on old aiohttp or Python (pytest_connfault.aiohttp_tls)
        async with aiohttp.ClientSession(timeout=timeout, connector=tidy_connector()) as session:
            async with session.get(url, ssl=ssl_context) as response:
                await response.read()
                return response.status

    return asyncio.run(fetch())


CLIENTS: dict[str, Callable[[str, Any, str, float], int]] = {
    "httpx": via_httpx,
    "httpx-asyncio": via_httpx_async,
    "httpx-trio": via_httpx_trio,
    "requests": via_requests,
    "urllib3": via_urllib3,
    "aiohttp": via_aiohttp,
}

#: What each client raises, measured (httpx 0.28, requests 2.34, urllib3 2.8, aiohttp 3.14).
#: Note urllib3 (and so requests) report a stalled handshake as a *read* timeout, although the
#: connect timeout is the one that ran out ("Read timed out. (read timeout=0.3)").
EXPECTED: dict[str, dict[str, type[BaseException]]] = {
    "reset": {
        "httpx": httpx.ConnectError,
        "httpx-asyncio": httpx.ConnectError,
        "httpx-trio": httpx.ConnectError,
        "requests": requests.ConnectionError,
        "urllib3": urllib3.exceptions.ProtocolError,
        "aiohttp": aiohttp.ClientConnectorError,
    },
    "garbage": {
        "httpx": httpx.ConnectError,
        "httpx-asyncio": httpx.ConnectError,
        "httpx-trio": httpx.ConnectError,
        "requests": requests.exceptions.SSLError,
        "urllib3": urllib3.exceptions.SSLError,
        "aiohttp": aiohttp.ClientConnectorSSLError,
    },
    "stall": {
        "httpx": httpx.ConnectTimeout,
        "httpx-asyncio": httpx.ConnectTimeout,
        "httpx-trio": httpx.ConnectTimeout,
        "requests": requests.ReadTimeout,
        "urllib3": urllib3.exceptions.ReadTimeoutError,
        "aiohttp": aiohttp.ServerTimeoutError,
    },
}


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("kind", list(EXPECTED))
def test_handshake_fault_fails_the_request_and_the_next_one_connects(
    connfault_tls_server: FaultServer,
    connfault_client_ssl_context: Any,
    connfault_ca_bundle: str,
    kind: str,
    client: str,
    request: pytest.FixtureRequest,
) -> None:
    """reset, garbage or a stall at the handshake fail that request (connect error or timeout); the next succeeds."""
    if (kind, client) == ("garbage", "httpx-asyncio") and HTTPCORE_VERSION < (1, 0, 6):
        request.applymarker(pytest.mark.xfail(strict=True, raises=ssl.SSLError, reason=RAW_SSL_ERROR))
    handle = connfault_tls_server.inject(kind, at="handshake")
    fetch = CLIENTS[client]
    url, context, bundle = connfault_tls_server.url, connfault_client_ssl_context, connfault_ca_bundle
    with pytest.raises(EXPECTED[kind][client]):
        fetch(url + "/first", context, bundle, STALL_TIMEOUT if kind == "stall" else 5.0)
    assert handle.wait(timeout=5).at == "handshake"
    assert fetch(url + "/second", context, bundle, 5.0) == 200
    first = connfault_tls_server.connection(1)
    assert (first.requests, [f.kind for f in first.faults]) == ((), [kind])
    assert [(r.target, r.connection_id) for r in connfault_tls_server.requests] == [("/second", 2)]


#: What a client that does not trust the CA raises (its default trust store only).
def _urllib3_default_trust(url: str) -> Any:
    """A GET through a PoolManager with urllib3's default trust (``urllib3.request`` is 2.x only)."""
    with urllib3.PoolManager() as pool:
        return pool.request("GET", url, retries=False)


UNTRUSTED: dict[str, tuple[Callable[[str], Any], type[BaseException]]] = {
    "httpx": (lambda url: httpx.get(url), httpx.ConnectError),
    "requests": (lambda url: requests.get(url, timeout=5), requests.exceptions.SSLError),
    "urllib3": (_urllib3_default_trust, urllib3.exceptions.SSLError),
    "aiohttp": (lambda url: asyncio.run(_aiohttp_default_trust(url)), aiohttp.ClientConnectorCertificateError),
}


async def _aiohttp_default_trust(url: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        await response.read()


@pytest.mark.parametrize("client", list(UNTRUSTED))
def test_client_without_the_ca_cannot_connect(connfault_tls_server: FaultServer, client: str) -> None:
    """Negative control: with only its default trust store a client fails the handshake, and no request arrives."""
    fetch, error = UNTRUSTED[client]
    with pytest.raises(error, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        fetch(connfault_tls_server.url + "/")
    assert connfault_tls_server.requests == []
