"""The pytest wiring: options, the marker, fixtures and report sections, run through pytester."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_markers_lists_connfault_with_its_signature(pytester: pytest.Pytester) -> None:
    """`pytest --markers` documents the marker with its full signature."""
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        ["@pytest.mark.connfault(fault, *, at=None, request=None, connection=None, request_on_connection=None*"]
    )


def test_help_shows_options_in_their_own_group(pytester: pytest.Pytester) -> None:
    """`pytest --help` shows the plugin's options under a group of its own."""
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["connection-drop fault injection (pytest-connfault):", "*--connfault-backend*"])
    result.stdout.fnmatch_lines(["  connfault_backend (string):", "*event loop the connfault servers run on*"])


def test_marker_list_parametrizes_with_readable_ids(pytester: pytest.Pytester) -> None:
    """A list of faults makes one test per fault, named after it, each with that fault armed."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.connfault(["reset", "half_close"], at="after_response")
        def test_reuse(connfault_server, request):
            [handle] = connfault_server.faults
            assert request.node.name == f"test_reuse[{handle.fault.kind}]"
            assert handle.fault.at == "after_response"
        """
    )
    result = pytester.runpytest("-v", "-p", "no:randomly")
    result.stdout.fnmatch_lines(["*test_reuse[[]reset[]] PASSED*", "*test_reuse[[]half_close[]] PASSED*"])
    result.assert_outcomes(passed=2)


def test_marker_list_arms_each_case_on_every_server_fixture_the_test_uses(pytester: pytest.Pytester) -> None:
    """With connfault_server and connfault_tls_server both, each parametrized case arms its fault on both."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.connfault(["reset", "close"], at="after_response")
        def test_both(connfault_server, connfault_tls_server, request):
            kinds = [[h.fault.kind for h in s.faults] for s in (connfault_server, connfault_tls_server)]
            expected = request.node.callspec.id
            assert kinds == [[expected], [expected]], kinds
        """
    )
    result = pytester.runpytest("-v", "-p", "no:randomly")
    result.stdout.fnmatch_lines(["*test_both[[]reset[]] PASSED*", "*test_both[[]close[]] PASSED*"])
    result.assert_outcomes(passed=2)


def test_stacked_markers_are_armed_in_the_order_written(pytester: pytest.Pytester) -> None:
    """Markers stack, module and class markers included, armed top to bottom, outermost first."""
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.connfault("delay", seconds=0.01)

        class TestStack:
            pytestmark = pytest.mark.connfault("stall", request=3)

            @pytest.mark.connfault("reset", request=1)
            @pytest.mark.connfault("close", request=2)
            def test_order(self, connfault_server):
                labels = [(h.fault.kind, h.fault.request) for h in connfault_server.faults]
                assert labels == [("delay", None), ("stall", 3), ("reset", 1), ("close", 2)]
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('"rest"', "*unknown fault 'rest'; the faults are: 'reset', 'close'*"),
        ('"reset", at="after_body"', "*unknown moment at='after_body'; the moments are: 'on_connect'*"),
        ('"drip", at="idle"', "*fault 'drip' cannot fire at='idle'; it can at: 'before_response'*"),
        ('"reset", request=0', "*request= must be a whole number from 1 up, not 0*"),
        ('"reset", at="on_connect", path="/x"', "*path= cannot select a fault at='on_connect'*"),
        ('"reset", times=0', "*times= must be a whole number from 1 up or 'always', not 0*"),
        ('"reset", chunk_size=3', "*chunk_size= does not apply to fault 'reset'*"),
        ('"reset", flavour="x"', "*unknown argument flavour=; the arguments are: 'at', 'request'*"),
        ('"reset", "close"', "*takes one fault name (or a list of them)*"),
    ],
)
def test_bad_marker_fails_at_collection_naming_the_argument(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    """A wrong fault, moment or argument is a collection error that names it and lists the valid ones."""
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.connfault({marker})
        def test_x(connfault_server):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.connfault:" + message])


def test_marker_without_the_server_fixture_is_a_collection_error(pytester: pytest.Pytester) -> None:
    """The marker arms faults on connfault_server; a test that does not use it is told so."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.connfault("reset")
        def test_x():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*arms faults on the connfault_server fixture, which this test does not use*"])


def test_failure_report_shows_the_ledger_timeline(pytester: pytest.Pytester) -> None:
    """When a test that used the server fails, the report shows the ledger as a timeline."""
    pytester.makepyfile(
        """
        import http.client
        import pytest

        @pytest.mark.connfault("reset", at="after_response", request=1)
        def test_fails(connfault_server):
            conn = http.client.HTTPConnection(connfault_server.host, connfault_server.port, timeout=5)
            conn.request("GET", "/hello")
            conn.getresponse().read()
            connfault_server.faults[0].wait(5)
            conn.close()
            assert False, "deliberate"
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- connfault ledger (http://127.0.0.1:*) -*",
            "+*ms  conn 1  opened (client port *)",
            "+*ms  conn 1  request 1: GET /hello -> responded 200",
            "+*ms  conn 1  fault reset@after_response fired",
            "+*ms  conn 1  closed, ended by server_fault",
        ]
    )


def test_passing_test_has_no_ledger_section(pytester: pytest.Pytester) -> None:
    """The ledger section is only for failures."""
    pytester.makepyfile(
        """
        def test_ok(connfault_server):
            assert connfault_server.connections == []
        """
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=1)
    assert "connfault ledger" not in result.stdout.str()


@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        ((), "", "asyncio"),
        ((), "connfault_backend = trio", "trio"),
        (("--connfault-backend=asyncio",), "connfault_backend = trio", "asyncio"),
        (("--connfault-backend=trio",), "", "trio"),
    ],
)
def test_backend_precedence_cli_over_ini_over_default(
    pytester: pytest.Pytester, args: tuple[str, ...], ini: str, expected: str
) -> None:
    """The server's backend comes from --connfault-backend, else the ini key, else asyncio."""
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(
        f"""
        def test_backend(connfault_server):
            assert connfault_server.options.backend == {expected!r}
        """
    )
    pytester.runpytest(*args).assert_outcomes(passed=1)


def test_overriding_connfault_backend_pins_the_backend_of_every_server_fixture(pytester: pytest.Pytester) -> None:
    """The documented override point: a suite's own ``connfault_backend`` wins over the option, for
    the server, its factory, the TLS server and the proxy factory; one with params runs each test
    on every backend."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(params=["asyncio", "trio"])
        def connfault_backend(request):
            return request.param
        """
    )
    pytester.makepyfile(
        test_everywhere="""
        def test_server(connfault_server, connfault_backend):
            assert connfault_server.options.backend == connfault_backend

        def test_factory_tls_and_proxy(connfault_server_factory, connfault_tls_server,
                                       connfault_proxy_factory, connfault_backend):
            server = connfault_server_factory()
            proxy = connfault_proxy_factory(server)
            backends = {server.options.backend, connfault_tls_server.options.backend, proxy.options.backend}
            assert backends == {connfault_backend}
        """,
        test_pinned="""
        import pytest

        @pytest.fixture
        def connfault_backend():
            return "trio"

        def test_pinned(connfault_server):
            assert connfault_server.options.backend == "trio"
        """,
    )
    result = pytester.runpytest("--connfault-backend=asyncio", "-v")
    result.assert_outcomes(passed=5)
    for backend in ("asyncio", "trio"):
        result.stdout.fnmatch_lines([f"*test_server?{backend}? PASSED*"])


def test_a_session_run_inside_a_test_leaves_the_outer_sessions_backend_alone(pytester: pytest.Pytester) -> None:
    """pytester runs a whole session inside a test: its backend is its own, and the outer session's
    servers, started after it ended, still run on the outer backend."""
    pytester.makepyfile(
        """
        def test_1_an_inner_session_on_trio(pytester):
            pytester.makepyfile(
                "def test_inner(connfault_server):\\n"
                "    assert connfault_server.options.backend == 'trio'\\n"
            )
            pytester.runpytest("--connfault-backend=trio").assert_outcomes(passed=1)

        def test_2_the_outer_session_after_it(connfault_server):
            assert connfault_server.options.backend == "asyncio"
        """
    )
    pytester.runpytest("-p", "pytester", "-p", "no:randomly", "--connfault-backend=asyncio").assert_outcomes(passed=2)


def test_a_server_asked_for_late_joins_the_report_of_the_test_that_asked(pytester: pytest.Pytester) -> None:
    """The server fixtures learn their test from its setup, not from ``request``: one asked for in
    the test's body (``request.getfixturevalue``), after a whole session with a server of its own
    ran inside the test, joins that test's failure report (not the inner test's)."""
    pytester.makepyfile(
        test_outer="""
        import http.client

        def test_outer(pytester, request):
            pytester.makepyfile(test_inner="def test_inner(connfault_server):\\n    pass\\n")
            pytester.runpytest().assert_outcomes(passed=1)
            server = request.getfixturevalue("connfault_server")
            conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
            conn.request("GET", "/outer")
            conn.getresponse().read()
            conn.close()
            assert False, "deliberate"
        """
    )
    result = pytester.runpytest("-p", "pytester", "test_outer.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- connfault ledger (http://127.0.0.1:*) -*", "+*ms  conn 1  request 1: GET /outer*"])


def test_bad_backend_in_ini_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """An unknown backend in the ini file stops the run with a message naming the choices."""
    pytester.makeini("[pytest]\nconnfault_backend = curio\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*connfault_backend = 'curio' (ini) is not a backend; choose one of: asyncio, trio*"])


def test_factory_servers_stop_early_and_teardown_stops_the_rest(pytester: pytest.Pytester) -> None:
    """A factory server may be stopped early (idempotently); teardown stops whatever is left."""
    pytester.makepyfile(
        """
        import pytest

        servers = []

        def test_make(connfault_server_factory):
            first = connfault_server_factory()
            second = connfault_server_factory(backend="trio")
            first.stop()
            first.stop()
            assert not first.is_running and second.is_running
            assert second.options.backend == "trio"
            servers.extend([first, second])

        def test_after():
            assert [s.is_running for s in servers] == [False, False]
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)


def test_server_failure_fails_the_test_at_teardown(pytester: pytest.Pytester) -> None:
    """A failure inside the server itself is not swallowed: the test errors at teardown with it."""
    pytester.makepyfile(
        """
        import http.client
        from pytest_connfault import _connection

        def test_broken(connfault_server, monkeypatch):
            async def explode(self):
                raise RuntimeError("server bug")
            monkeypatch.setattr(_connection.ConnectionLoop, "run", explode)
            conn = http.client.HTTPConnection(connfault_server.host, connfault_server.port, timeout=5)
            try:
                conn.request("GET", "/")
                conn.getresponse()
            except (http.client.HTTPException, OSError):
                pass
            conn.close()
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ServerError: the connfault server failed:*", "*RuntimeError: server bug*"])


def test_plugin_loads_explicitly_when_autoload_is_disabled(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With PYTEST_DISABLE_PLUGIN_AUTOLOAD, `-p pytest_connfault.plugin` brings the fixtures."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(
        """
        def test_x(connfault_server):
            assert connfault_server.url.startswith("http://127.0.0.1:")
        """
    )
    result = pytester.runpytest_subprocess("-p", "pytest_connfault.plugin", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
