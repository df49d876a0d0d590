"""The TLS fixtures and the marker on ``connfault_tls_server``, run through pytester."""

from __future__ import annotations

import os

import pytest

# Imported here, before pytester's in-process runs: those restore sys.modules afterwards, and
# cryptography (under trustme) breaks when it is imported a second time in one process.
import pytest_connfault._tls  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_tls_server_fixture_serves_https_with_the_marker_faults_armed(pytester: pytest.Pytester) -> None:
    """``connfault_tls_server`` is https on 127.0.0.1; a marker list parametrizes it, handshake faults included."""
    pytester.makepyfile(
        """
        import httpx
        import pytest

        @pytest.mark.connfault(["reset", "garbage"], at="handshake")
        def test_handshake(connfault_tls_server, connfault_client_ssl_context, request):
            [handle] = connfault_tls_server.faults
            assert request.node.name == f"test_handshake[{handle.fault.kind}]"
            assert connfault_tls_server.url.startswith("https://127.0.0.1:")
            with httpx.Client(verify=connfault_client_ssl_context) as client:
                with pytest.raises(httpx.ConnectError):
                    client.get(connfault_tls_server.url)
                assert client.get(connfault_tls_server.url).status_code == 200
            assert handle.fired == 1
            assert [c.tls for c in connfault_tls_server.connections] == [True, True]
        """
    )
    result = pytester.runpytest("-v", "-p", "no:randomly")
    result.stdout.fnmatch_lines(["*test_handshake[[]reset[]] PASSED*", "*test_handshake[[]garbage[]] PASSED*"])
    result.assert_outcomes(passed=2)


def test_factory_makes_tls_servers_with_the_overridable_server_context(pytester: pytest.Pytester) -> None:
    """``connfault_server_factory(tls=True)`` uses ``connfault_server_ssl_context``, which a suite may override."""
    pytester.makeconftest(
        """
        import ssl
        import pytest

        @pytest.fixture(scope="session")
        def connfault_server_ssl_context(connfault_ca):
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
            connfault_ca.issue_cert("127.0.0.1").configure_cert(context)
            return context
        """
    )
    pytester.makepyfile(
        """
        import socket

        def test_tls12(connfault_server_factory, connfault_client_ssl_context):
            server = connfault_server_factory(tls=True, backend="trio")
            assert server.scheme == "https"
            raw = socket.create_connection(("127.0.0.1", server.port))
            with connfault_client_ssl_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() == "TLSv1.2"
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)


def test_trust_fixtures_session_ca_fresh_contexts_and_a_bundle_removed_at_the_end(pytester: pytest.Pytester) -> None:
    """One CA per session, a fresh client context per test, and a CA bundle outside the tree, gone after the session."""
    record = pytester.path / "bundle-path.txt"
    pytester.makepyfile(
        f"""
        import os
        import ssl
        import trustme

        seen = []

        def test_first(connfault_ca, connfault_client_ssl_context, connfault_ca_bundle):
            assert isinstance(connfault_ca, trustme.CA)
            seen.append(connfault_ca)
            assert os.path.isfile(connfault_ca_bundle)
            assert not connfault_ca_bundle.startswith(os.getcwd())
            with open({str(record)!r}, "w") as out:
                out.write(connfault_ca_bundle)
            connfault_client_ssl_context.check_hostname = False
            connfault_client_ssl_context.verify_mode = ssl.CERT_NONE

        def test_second(connfault_ca, connfault_client_ssl_context):
            assert seen == [connfault_ca]
            assert connfault_client_ssl_context.verify_mode == ssl.CERT_REQUIRED
            assert not connfault_client_ssl_context.options & getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)
    bundle = record.read_text()
    assert bundle.endswith("ca.pem")
    assert not os.path.exists(bundle), "the CA bundle must be removed at the end of the session"
    assert not list(pytester.path.rglob("*.pem")), "nothing may be written into the tree"


def test_marker_needs_a_server_fixture_and_names_both(pytester: pytest.Pytester) -> None:
    """A marked test with neither server fixture is an error that names connfault_server and connfault_tls_server."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.connfault("reset")
        def test_nothing():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.stdout.fnmatch_lines(["*connfault_server fixture*add it (or connfault_tls_server)*"])
    assert result.ret != 0


def test_handshake_marker_on_a_plain_server_is_an_error_at_setup(pytester: pytest.Pytester) -> None:
    """``at="handshake"`` armed on the plain ``connfault_server`` fails the test's setup with the reason."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.connfault("reset", at="handshake")
        def test_plain(connfault_server):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*needs a TLS server*"])
