"""pytest wiring only: options, the ``connfault`` marker, fixtures, and report sections.

Registered through the ``pytest11`` entry point, so installing the package is all a suite does.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Callable

import pytest

from ._errors import ConnfaultError, FaultSpecError, ServerError
from ._faults import Fault
from ._loop import BACKENDS, release_loops, retain_loops

if TYPE_CHECKING:
    import ssl

    import trustme

    from ._server import FaultServer

# The server's modules (asyncio, h11, ssl) are imported by the first fixture that starts a server,
# not with the plugin: pytest loads the plugin in every session of a suite that has it installed.

BACKEND_HELP = "event loop the connfault servers run on: asyncio (default) or trio"
MARKER_HELP = (
    "connfault(fault, *, at=None, request=None, connection=None, request_on_connection=None, "
    "path=None, method=None, times=1, **parameters): arm `fault` on the test's connfault_server "
    "before the test runs. `fault` is one of reset, close, half_close, stall, delay, drip, "
    "truncate, garbage, empty, or a list of them to parametrize the test (ids are the names). "
    "`at` is on_connect, handshake (TLS only), before_request, before_response, after_headers, "
    "mid_body, after_response or idle. Markers stack. With connfault_tls_server the faults are "
    "armed on it (with connfault_proxy, on its client side). See pytest_connfault.Fault. "
    "connfault('chaos', rate=0.1, faults=None, seed=None): seeded random faults instead, "
    "replayable with --connfault-seed."
)

_servers_key = pytest.StashKey["list[FaultServer]"]()
_PARAM = "_connfault_param"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hooks

    hooks.register(pluginmanager)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("connfault", "connection-drop fault injection (pytest-connfault)")
    group.addoption(
        "--connfault-backend",
        choices=BACKENDS,
        default=None,
        help=BACKEND_HELP + " (overrides the connfault_backend ini key)",
    )
    parser.addini("connfault_backend", BACKEND_HELP, default="asyncio")
    group.addoption(
        "--connfault-chaos",
        type=float,
        default=None,
        metavar="RATE",
        help="seeded chaos: arm random faults on a fraction RATE (0-1) of the requests of every "
        "connfault_server/connfault_proxy (tests with a connfault('chaos') marker keep theirs)",
    )
    group.addoption(
        "--connfault-seed",
        type=int,
        default=None,
        metavar="N",
        help="the seed of connfault chaos, to replay a failing run (default: a random one, shown "
        "in the failing test's report)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # First: pytest_unconfigure (which releases) runs even when a check below raises a UsageError,
    # and an unbalanced release would stop the loop threads of an enclosing (pytester) session.
    retain_loops()
    config.addinivalue_line("markers", MARKER_HELP)
    backend = _backend(config)
    if backend not in BACKENDS:
        raise pytest.UsageError(
            f"connfault_backend = {backend!r} (ini) is not a backend; choose one of: {', '.join(BACKENDS)}"
        )
    rate = config.getoption("connfault_chaos", None)
    if rate is not None and not 0 <= rate <= 1:
        raise pytest.UsageError(
            f"--connfault-chaos={rate} is not a rate; give a fraction from 0 to 1, e.g. 0.1"
        )
    _sessions.append(_Running(backend))
    config.add_cleanup(_forget_session)


def pytest_unconfigure(config: pytest.Config) -> None:
    release_loops()


def _backend(config: pytest.Config) -> str:
    """The backend: ``--connfault-backend`` > ini ``connfault_backend`` > asyncio."""
    option = config.getoption("connfault_backend", None)
    if option:
        return str(option)
    return str(config.getini("connfault_backend") or "asyncio")


# -- the marker ---------------------------------------------------------------------------


def _marker_faults(mark: pytest.Mark) -> list[Fault]:
    """The faults one marker stands for (several when its first argument is a list)."""
    if len(mark.args) != 1:
        raise FaultSpecError(
            f"@pytest.mark.connfault takes one fault name (or a list of them) and keyword "
            f"arguments; got {len(mark.args)} positional arguments {mark.args!r}"
        )
    kinds = mark.args[0]
    names = [kinds] if isinstance(kinds, str) else list(kinds)
    if not names:
        raise FaultSpecError("@pytest.mark.connfault got an empty list of faults")
    return [Fault(name, **mark.kwargs) for name in names]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from ._chaos import chaos_from_mark, is_chaos_mark

    where = metafunc.definition.nodeid
    all_marks = list(metafunc.definition.iter_markers("connfault"))
    marks = [mark for mark in all_marks if not is_chaos_mark(mark)]
    for mark in all_marks:
        if is_chaos_mark(mark):
            try:
                chaos_from_mark(mark, 0)
            except (FaultSpecError, TypeError) as exc:
                pytest.fail(f"{where}: @pytest.mark.connfault('chaos'): {exc}", pytrace=False)
            if not {"connfault_server", "connfault_tls_server", "connfault_proxy"} & set(
                metafunc.fixturenames
            ):
                pytest.fail(
                    f"{where}: @pytest.mark.connfault('chaos') arms chaos on the connfault_server, "
                    "connfault_tls_server or connfault_proxy fixture, which this test does not use",
                    pytrace=False,
                )
    if not marks:
        return
    problem = None
    try:
        choices = [_marker_faults(mark) for mark in reversed(marks)]
    except (FaultSpecError, TypeError) as exc:
        problem = str(exc).replace("__init__() ", "")
    if problem is not None:
        pytest.fail(f"{where}: @pytest.mark.connfault: {problem}", pytrace=False)
    if not {"connfault_server", "connfault_tls_server", "connfault_proxy"} & set(metafunc.fixturenames):
        pytest.fail(
            f"{where}: @pytest.mark.connfault arms faults on the connfault_server fixture, "
            "which this test does not use; add it (or connfault_tls_server) to the test's arguments",
            pytrace=False,
        )
    if any(len(faults) > 1 for faults in choices):
        combos = list(itertools.product(*choices))
        ids = ["-".join(f.kind for f, options in zip(combo, choices) if len(options) > 1) for combo in combos]
        # The server fixtures take their case's faults as their own (indirect) parameter; the
        # proxy's parameter is its upstream, so it reads them from a fixture of their own.
        targets = [name for name in _MARKED_SERVERS if name in metafunc.fixturenames]
        if "connfault_proxy" in metafunc.fixturenames:
            targets.append(_PARAM)
        metafunc.parametrize(targets, [(combo,) * len(targets) for combo in combos], ids=ids, indirect=True)


#: The fixtures whose indirect parameter is the marker's parametrized case (a tuple of faults).
_MARKED_SERVERS = ("connfault_server", "connfault_tls_server")


@pytest.fixture
def _connfault_param() -> tuple[Fault, ...] | None:
    """The faults of this parametrized case, for ``connfault_proxy`` (internal; the marker's list form)."""
    return _case_faults(_test_item(), _PARAM)


def _case_faults(item: pytest.Item, fixture: str) -> tuple[Fault, ...] | None:
    """The parametrized case's faults, given to a server fixture as its indirect parameter (what
    ``request.param`` would be in that fixture)."""
    callspec = getattr(item, "callspec", None)
    param = callspec.params.get(fixture) if callspec is not None else None
    return param if isinstance(param, tuple) else None


def _faults_for(item: pytest.Item, param: tuple[Fault, ...] | None) -> list[Fault]:
    if param is not None:
        return list(param)
    from ._chaos import is_chaos_mark

    marks = reversed([mark for mark in item.iter_markers("connfault") if not is_chaos_mark(mark)])
    return [fault for mark in marks for fault in _marker_faults(mark)]


# -- fixtures -----------------------------------------------------------------------------


# The fixtures below take ``request`` only where they need it (a factory's lazy fixture lookup):
# pytest builds a fixture definition for every ``request`` argument of every fixture, every test,
# which under pytest 9 costs some 80 µs a test, more than a server's start and stop. They learn
# which test they serve from ``pytest_runtest_setup`` instead.


class _Running:
    """A running pytest session, as the fixtures see it without asking for ``request``."""

    __slots__ = ("backend", "item")

    def __init__(self, backend: str) -> None:
        self.backend = backend
        #: The test whose setup began last: the one any function-scoped fixture is set up for.
        self.item: pytest.Item | None = None


#: Each running session, innermost last (pytester runs sessions inside a test's).
#: ``pytest_configure`` pushes and the session's cleanup pops, so the top is the running session's.
_sessions: list[_Running] = []


def _forget_session() -> None:
    _sessions.pop()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _sessions[-1].item = item


def _test_item() -> pytest.Item:
    """The test a function-scoped fixture is being set up for."""
    item = _sessions[-1].item if _sessions else None
    if item is None:
        raise ConnfaultError("the connfault fixtures are set up for a test; no test is running")
    return item


@pytest.fixture(scope="session")
def connfault_backend() -> str:
    """The backend new servers run on.

    Scope: session. Type: ``str``. Default: ``--connfault-backend``, else the
    ``connfault_backend`` ini key, else ``"asyncio"``. Override it to pin a backend (any
    scope; with ``params=["asyncio", "trio"]`` every test that uses a server runs on both).
    """
    # Argument-free on purpose: under pytest 9, asking for another fixture (even a cached session
    # one, such as ``pytestconfig``) costs every test that uses a server some 30 µs more.
    return _sessions[-1].backend


ServerFactory = Callable[..., "FaultServer"]


def _stop_all(servers: Sequence[FaultServer], what: str) -> None:
    """Stop every server (even when one fails to), then fail with what went wrong inside any."""
    errors: list[str] = []
    for server in servers:
        try:
            server.stop()
        except ServerError as exc:
            errors.append(str(exc))
        errors.extend(server.errors)
    if errors:
        raise ServerError(f"the connfault {what} failed:\n" + "\n".join(errors))


@pytest.fixture
def connfault_server_factory(
    request: pytest.FixtureRequest, connfault_backend: str
) -> Iterator[ServerFactory]:
    """Makes started servers; teardown stops every one still running.

    Scope: function. Type: ``Callable[..., FaultServer]``, taking :class:`FaultServer`'s
    arguments (``host``, ``port``, ``backend``, ``handler``, ``app``, ``tls``, limits). Default backend:
    the ``connfault_backend`` fixture. ``tls=True`` makes an HTTPS server with the
    ``connfault_server_ssl_context`` fixture. ``app=`` serves a WSGI or ASGI application (faults in
    front of your own app). A server may be stopped early with ``server.stop()``.
    If a server failed internally, teardown fails the test with the traceback.
    """
    servers: list[FaultServer] = []

    def make(**options: Any) -> FaultServer:
        options.setdefault("backend", connfault_backend)
        if options.get("tls") is True:
            options["tls"] = request.getfixturevalue("connfault_server_ssl_context")
        server = _start_server(request.node, options)
        servers.append(server)
        return server

    yield make
    _stop_all(servers, "server")


def _start_server(item: pytest.Item, options: dict[str, Any]) -> FaultServer:
    """Start a server for the test; it joins the test's ledger report."""
    from ._server import FaultServer

    server = FaultServer(**options).start()
    item.stash.setdefault(_servers_key, []).append(server)
    return server


def _arm_marked(item: pytest.Item, server: FaultServer, param: tuple[Fault, ...] | None) -> None:
    """Arm the test's ``@pytest.mark.connfault`` faults (or this parametrized case's) and its chaos."""
    nothing_marked = param is None and item.get_closest_marker("connfault") is None
    if nothing_marked and item.config.getoption("connfault_chaos", None) is None:
        return  # the common case: nothing to arm
    for fault in _faults_for(item, param):
        server.inject(fault)
    _arm_chaos(item, server)


def _marked_server(options: dict[str, Any], fixture: str) -> Iterator[FaultServer]:
    """A server fixture's body: start, arm the test's faults, yield, stop."""
    item = _test_item()
    server = _start_server(item, options)
    try:
        _arm_marked(item, server, _case_faults(item, fixture))
        yield server
    finally:
        _stop_all([server], "server")


@pytest.fixture
def connfault_server(connfault_backend: str) -> Iterator[FaultServer]:
    """A running HTTP/1.1 server on ``127.0.0.1`` and an ephemeral port, fresh for each test.

    Scope: function. Type: :class:`FaultServer`. Default: keep-alive, answers ``200 ok``;
    the test's ``@pytest.mark.connfault`` faults are armed, in the order written. Teardown stops
    it (failing the test if the server failed internally).
    """
    yield from _marked_server({"backend": connfault_backend}, "connfault_server")


@pytest.fixture(scope="session")
def connfault_ca() -> trustme.CA:
    """The certificate authority of the TLS servers, from ``trustme`` (in memory).

    Scope: session. Type: ``trustme.CA``. Default: one CA per process, the same one
    ``FaultServer(tls=True)`` uses. ``connfault_ca.configure_trust(ctx)`` makes a client trust it.
    """
    from ._tls import default_ca

    return default_ca()


@pytest.fixture(scope="session")
def connfault_server_ssl_context(connfault_ca: trustme.CA) -> ssl.SSLContext:
    """The server side of TLS: a certificate for ``127.0.0.1``, ``::1`` and ``localhost``.

    Scope: session. Type: ``ssl.SSLContext``. Default: issued by ``connfault_ca``, TLS 1.2 and
    1.3. Override it to serve another certificate or protocol range.
    """
    from ._tls import server_context

    return server_context(connfault_ca)


@pytest.fixture
def connfault_client_ssl_context(connfault_ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts ``connfault_ca``: ``httpx.Client(verify=...)``, aiohttp ``ssl=``.

    Scope: function (a fresh context, so a test may change it). Type: ``ssl.SSLContext``.
    Default: ``ssl.create_default_context()`` plus the CA, with ``ssl.OP_IGNORE_UNEXPECTED_EOF``
    cleared so that a close without ``close_notify`` is an error where the client lets it be.
    """
    from ._tls import client_context

    return client_context(connfault_ca)


@pytest.fixture(scope="session")
def connfault_ca_bundle(connfault_ca: trustme.CA) -> Iterator[str]:
    """The CA certificate as a PEM file, for ``requests``' ``verify=PATH`` (or ``SSL_CERT_FILE``).

    Scope: session. Type: ``str`` (a path). Default: a file in a fresh temporary directory,
    removed at the end of the session; nothing is written into the project's tree.
    """
    from ._tls import CaBundle

    bundle = CaBundle(connfault_ca)
    yield bundle.path
    bundle.remove()


@pytest.fixture
def connfault_tls_server(
    connfault_backend: str, connfault_server_ssl_context: ssl.SSLContext
) -> Iterator[FaultServer]:
    """``connfault_server`` over TLS: HTTPS on ``127.0.0.1``, certificate from ``connfault_ca``.

    Scope: function. Type: :class:`FaultServer` (``scheme == "https"``). Default: as
    ``connfault_server``, with the ``connfault_server_ssl_context`` fixture; the test's
    ``@pytest.mark.connfault`` faults are armed, ``at="handshake"`` ones included. Clients trust
    it through ``connfault_client_ssl_context`` or ``connfault_ca_bundle``.
    """
    yield from _marked_server(
        {"backend": connfault_backend, "tls": connfault_server_ssl_context}, "connfault_tls_server"
    )


# -- the proxy and chaos -------------------------------------------------------------------

ProxyFactory = Callable[..., Any]


@pytest.fixture
def connfault_proxy_factory(request: pytest.FixtureRequest, connfault_backend: str) -> Iterator[ProxyFactory]:
    """Makes started :class:`~pytest_connfault.FaultProxy` s in front of an upstream; teardown stops them.

    Scope: function. Type: ``Callable[..., FaultProxy]``: ``connfault_proxy_factory(upstream,
    **options)`` with ``upstream`` a URL (``"http://127.0.0.1:8000"``) and :class:`FaultProxy`'s
    options (``upstream_errors``, ``upstream_ssl_context``, ``preserve_host``, ``tls``,
    ``backend``, limits). Default backend: the ``connfault_backend`` fixture; ``tls=True`` serves
    the client side over HTTPS with ``connfault_server_ssl_context``. If a proxy failed
    internally, teardown fails the test with the traceback.
    """
    from ._proxy import FaultProxy

    proxies: list[FaultProxy] = []
    request.node.stash.setdefault(_servers_key, [])

    def make(upstream: Any, **options: Any) -> FaultProxy:
        options.setdefault("backend", connfault_backend)
        if options.get("tls") is True:
            options["tls"] = request.getfixturevalue("connfault_server_ssl_context")
        proxy = FaultProxy(_upstream_url(upstream), **options)
        proxy.start()
        proxies.append(proxy)
        request.node.stash[_servers_key].append(proxy)
        return proxy

    yield make
    _stop_all(proxies, "proxy")


def _upstream_url(upstream: Any) -> str:
    """An upstream given as a URL, or as a running server with a ``url`` attribute."""
    url = upstream if isinstance(upstream, str) else getattr(upstream, "url", None)
    if not isinstance(url, str):
        raise TypeError(f"the upstream must be a URL or have a .url, not {upstream!r}")
    return url


@pytest.fixture
def connfault_upstream() -> Any:
    """The upstream ``connfault_proxy`` forwards to: override it in your conftest or test module.

    Scope: function. Type: ``str`` (``"http://host:port"``), or a running server with a ``url``
    attribute. Default: none; a test that uses ``connfault_proxy`` without overriding this
    fixture (or parametrizing ``connfault_proxy`` indirectly) fails with a message saying so.
    """
    pytest.fail(
        "connfault_proxy needs an upstream: override the connfault_upstream fixture to return its URL "
        "(or a server with a .url), or parametrize connfault_proxy indirectly with the URL",
        pytrace=False,
    )


@pytest.fixture
def connfault_proxy(
    request: pytest.FixtureRequest,
    connfault_proxy_factory: ProxyFactory,
    _connfault_param: tuple[Fault, ...] | None,
) -> Iterator[Any]:
    """A running :class:`~pytest_connfault.FaultProxy` on ``127.0.0.1`` in front of the test's upstream.

    Scope: function. Type: :class:`FaultProxy`. Default upstream: the ``connfault_upstream``
    fixture. Parametrize it indirectly to choose per test:
    ``@pytest.mark.parametrize("connfault_proxy", ["http://127.0.0.1:8000"], indirect=True)``,
    or with a dict of :class:`FaultProxy` options (``{"upstream_errors": "502"}``, with or without
    ``"upstream"``). The test's ``@pytest.mark.connfault`` faults (and chaos) are armed on its
    client side, as on ``connfault_server``.
    """
    param = getattr(request, "param", None)
    options: dict[str, Any] = dict(param) if isinstance(param, dict) else {}
    upstream = options.pop("upstream", None) if param is None or isinstance(param, dict) else param
    if upstream is None:
        upstream = request.getfixturevalue("connfault_upstream")
    proxy = connfault_proxy_factory(upstream, **options)
    _arm_marked(request.node, proxy, _connfault_param)
    yield proxy
    # Stopped here (closing its upstream connections), before the upstream fixture's teardown,
    # which may wait for them: the upstream was set up after the factory, so it ends before it.
    proxy.stop()


_seed_key = pytest.StashKey[int]()
_chaos_key = pytest.StashKey[list[Any]]()


def _session_seed(config: pytest.Config) -> int:
    """``--connfault-seed``, else one random seed for the whole session."""
    option = config.getoption("connfault_seed", None)
    if option is not None:
        return int(option)
    if _seed_key not in config.stash:
        import random

        config.stash[_seed_key] = random.SystemRandom().randrange(2**32)
    return config.stash[_seed_key]


def _arm_chaos(item: pytest.Item, server: FaultServer) -> None:
    """Arm the test's chaos on ``server``: its ``connfault("chaos", ...)`` marker, else ``--connfault-chaos``.

    The seed: the marker's ``seed=``, else ``--connfault-seed``, else the session's random one.
    """
    from ._chaos import Chaos, arm_chaos, chaos_from_mark, is_chaos_mark

    mark = next((m for m in item.iter_markers("connfault") if is_chaos_mark(m)), None)
    seed = _session_seed(item.config)
    if mark is not None:
        chaos = chaos_from_mark(mark, seed)
    else:
        rate = item.config.getoption("connfault_chaos", None)
        if rate is None:
            return
        chaos = Chaos(rate, seed)
    item.stash.setdefault(_chaos_key, []).append(arm_chaos(server, chaos))


# -- reports ------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.failed:
        servers = item.stash.get(_servers_key, [])
        for number, server in enumerate(servers, 1):
            lines = server.timeline()
            handler_errors = server.handler_errors
            if not lines and not handler_errors:
                continue
            title = "connfault ledger" + (
                f" (server {number}: {server.url})" if len(servers) > 1 else f" ({server.url})"
            )
            text = "\n".join(lines) if lines else "(no connections)"
            if handler_errors:
                text += "\n\nhandler exceptions (answered with 500):\n" + "\n".join(handler_errors)
            report.sections.append((title, text))
        if item.stash.get(_chaos_key, None):
            from ._chaos import chaos_report

            for handle in item.stash[_chaos_key]:
                report.sections.append(("connfault chaos", chaos_report(handle, item.nodeid)))
    if report.when == "teardown":
        # Items live for the whole session: let this test's servers (and ledgers) go.
        item.stash[_servers_key] = []
        if _chaos_key in item.stash:
            item.stash[_chaos_key] = []
    return report
