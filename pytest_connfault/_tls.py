"""Certificates and contexts for the TLS servers, from ``trustme``.

One certificate authority per process, made on first use and kept in memory: the server
certificate is issued for ``127.0.0.1``, ``::1`` and ``localhost``, and both contexts are derived
from it. The only file ever written is the CA bundle that ``requests``' ``verify=`` needs; it lives
in a temporary directory that :meth:`CaBundle.remove` deletes (the fixture does, at session end).
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
import threading

import trustme

#: The names the server certificate is valid for.
SERVER_IDENTITIES = ("127.0.0.1", "::1", "localhost")

_lock = threading.Lock()
_authority: trustme.CA | None = None


def default_ca() -> trustme.CA:
    """The process's certificate authority (made on first use, in memory only)."""
    global _authority
    with _lock:
        if _authority is None:
            _authority = trustme.CA(organization_name="pytest-connfault")
        return _authority


def server_context(ca: trustme.CA | None = None) -> ssl.SSLContext:
    """A server context with a certificate from ``ca`` (default: the process's) for loopback.

    TLS 1.2 and 1.3 are allowed; the client picks (1.3 with every client of today).
    """
    ca = default_ca() if ca is None else ca
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    ca.issue_cert(*SERVER_IDENTITIES, common_name="localhost").configure_cert(context)
    return context


def client_context(ca: trustme.CA | None = None, *, strict_eof: bool = True) -> ssl.SSLContext:
    """A client context that trusts ``ca`` (default: the process's) and verifies the host name.

    With ``strict_eof`` (default) ``ssl.OP_IGNORE_UNEXPECTED_EOF`` is cleared, so a TCP close
    without ``close_notify`` is an error (``SSLEOFError``; a plain ``SSLError`` with reason
    ``UNEXPECTED_EOF_WHILE_READING`` on Python 3.9) rather than a clean end of stream: a cut-short
    body can then be seen. Recent Pythons leave the option off by default; Python 3.9 with OpenSSL 3
    sets it on every new context (python/cpython#87960), so there clearing it matters. With
    ``strict_eof=False`` the option is set, where OpenSSL has it: such a close reads as a plain end
    of stream, as a TCP FIN does.
    """
    ca = default_ca() if ca is None else ca
    context = ssl.create_default_context()
    ca.configure_trust(context)
    ignore_unexpected_eof = getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    if strict_eof:
        context.options &= ~ignore_unexpected_eof
    else:
        context.options |= ignore_unexpected_eof
    return context


class CaBundle:
    """The CA certificate as a PEM file in a fresh temporary directory, for ``verify=PATH``."""

    def __init__(self, ca: trustme.CA | None = None) -> None:
        ca = default_ca() if ca is None else ca
        self.directory = tempfile.mkdtemp(prefix="connfault-ca-")
        self.path = os.path.join(self.directory, "ca.pem")
        ca.cert_pem.write_to_path(self.path)

    def __repr__(self) -> str:
        return f"<CaBundle {self.path}>"

    def remove(self) -> None:
        """Delete the file and its directory."""
        shutil.rmtree(self.directory, ignore_errors=True)
