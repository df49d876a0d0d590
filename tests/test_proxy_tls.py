"""FaultProxy over TLS: an https:// upstream (verified with a given CA), and HTTPS on the client side."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest

from pytest_connfault import FaultServer


def test_https_upstream_with_a_given_ca(
    connfault_tls_server: FaultServer, connfault_proxy_factory: Any, connfault_client_ssl_context: ssl.SSLContext
) -> None:
    """The proxy verifies an https:// upstream with the given context; the upstream connection is reused."""
    proxy = connfault_proxy_factory(connfault_tls_server.url, upstream_ssl_context=connfault_client_ssl_context)
    with httpx.Client(base_url=proxy.url) as client:
        assert client.get("/a").text == "ok\n"
        proxy.close_idle()
        assert client.get("/b").text == "ok\n"
    assert [r.connection_id for r in proxy.requests] == [1, 2]
    assert [r.upstream_connection for r in proxy.requests] == [1, 1]
    assert connfault_tls_server.connections[0].tls


def test_https_upstream_not_trusted_is_a_502(connfault_tls_server: FaultServer, connfault_proxy_factory: Any) -> None:
    """Without the CA the proxy refuses the upstream's certificate: the client gets a 502 saying so."""
    proxy = connfault_proxy_factory(connfault_tls_server.url)
    with httpx.Client(base_url=proxy.url) as client:
        response = client.get("/")
    assert response.status_code == 502
    assert "CERTIFICATE_VERIFY_FAILED" in response.text


@pytest.mark.parametrize("drop", ["reset", "close"])
def test_tls_on_both_sides_with_upstream_drop_mirrored(
    connfault_tls_server: FaultServer,
    connfault_proxy_factory: Any,
    connfault_client_ssl_context: ssl.SSLContext,
    drop: str,
) -> None:
    """HTTPS client -> proxy -> HTTPS upstream: an upstream drop mid-body reaches the client as the same drop."""
    connfault_tls_server.respond("/big", body=b"x" * 5000)
    proxy = connfault_proxy_factory(
        connfault_tls_server.url, upstream_ssl_context=connfault_client_ssl_context, tls=True
    )
    handle = proxy.inject_upstream(drop, at="mid_body", request=2)
    with httpx.Client(base_url=proxy.url, verify=connfault_client_ssl_context) as client:
        assert client.get("/big").content == b"x" * 5000
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.get("/big")
    handle.wait(5)
    assert proxy.scheme == "https"
    assert [(f.kind, f.at) for f in proxy.connections[0].faults] == [(drop, "mid_body")]
