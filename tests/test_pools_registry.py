"""The pool registry: snapshot values, the hook and the entry-point group for clients we do not know."""

from __future__ import annotations

import httpx
import pytest

from pytest_connfault import FaultServer, PooledConnection, PoolSnapshot, PoolSnapshotError, pool_snapshot

#: A client pytest-connfault does not know: a tiny keep-alive pool over the standard library's
#: http.client, with the few lines of hook that teach pool_snapshot to read it.
TINY_POOL = '''
import http.client

from pytest_connfault import PooledConnection, PoolSnapshot


class TinyPool:
    """One host, LIFO reuse of idle http.client connections."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.idle, self.busy = [], []

    def get(self, path):
        conn = self.idle.pop() if self.idle else http.client.HTTPConnection(self.host, self.port, timeout=5)
        self.busy.append(conn)
        conn.request("GET", path)
        body = conn.getresponse().read()
        self.busy.remove(conn)
        self.idle.append(conn)
        return body

    def close(self):
        for conn in self.idle + self.busy:
            conn.close()


def snapshot(client):
    if not isinstance(client, TinyPool):
        return None
    key = ("http", client.host, client.port)

    def entry(conn, state):
        return PooledConnection(conn.sock.getsockname()[1] if conn.sock else None, state, key)

    return PoolSnapshot(
        "TinyPool", tuple([entry(c, "idle") for c in client.idle] + [entry(c, "active") for c in client.busy])
    )
'''


def test_snapshot_counts_and_repr() -> None:
    """active, idle and total count live connections only; dead entries are listed apart; repr says it all."""
    key = ("http", "127.0.0.1", 8000)
    snapshot = PoolSnapshot(
        "demo",
        (
            PooledConnection(5001, "active", key),
            PooledConnection(5002, "idle", key),
            PooledConnection(None, "unconnected", key),
            PooledConnection(None, "closed", key),
        ),
    )
    assert (snapshot.active, snapshot.idle, snapshot.total) == (1, 1, 2)
    assert [c.state for c in snapshot.dead] == ["unconnected", "closed"]
    assert snapshot.ports == (5001, 5002)
    assert repr(snapshot) == (
        "<PoolSnapshot demo [1 active, 1 idle, 1 closed, 1 unconnected] active:5001, idle:5002, unconnected:?, closed:?>"
    )
    assert str(snapshot.connections[1]) == "port 5002   idle        http://127.0.0.1:8000"


def test_snapshot_is_frozen_and_validated() -> None:
    """Snapshots cannot change, and a connection's state must be one of the known ones."""
    snapshot = PoolSnapshot("demo", ())
    with pytest.raises(AttributeError):
        snapshot.client = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="state must be one of active, idle, closed, unconnected; got 'busy'"):
        PooledConnection(1, "busy", ("http", "h", 1))


def test_unknown_client_names_the_ways_in() -> None:
    """An object no adapter knows gets an error naming its type, the hook and the entry-point group."""
    with pytest.raises(PoolSnapshotError, match=r"no pool adapter knows builtins\.object.*pytest_connfault\.pools"):
        pool_snapshot(object())


def test_other_objects_of_a_known_family_are_refused() -> None:
    """An object from a known client package that holds no pool is refused, not misread."""
    with pytest.raises(PoolSnapshotError, match=r"httpx\.URL"):
        pool_snapshot(httpx.URL("http://example.invalid/"))


def test_hook_plugs_in_an_unknown_client(pytester: pytest.Pytester) -> None:
    """A conftest hook teaches pool_snapshot (and the assertions) a client the package does not know."""
    pytester.makepyfile(tinypool=TINY_POOL)
    pytester.makeconftest(
        """
        import tinypool

        def pytest_connfault_pool_snapshot(client):
            return tinypool.snapshot(client)
        """
    )
    pytester.makepyfile(
        """
        import tinypool
        from pytest_connfault import assert_pool, pool_snapshot

        def test_tiny(connfault_server):
            pool = tinypool.TinyPool("127.0.0.1", connfault_server.port)
            try:
                pool.get("/a")
                pool.get("/b")
                snapshot = assert_pool(pool, active=0, idle=1)
                assert snapshot.connections[0].local_port == connfault_server.connections[0].client_port
                assert_pool(pool, idle=2)
            finally:
                pool.close()
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*assert_pool: the pool of TinyPool was expected to hold idle=2; it holds active=0, idle=1, total=1",
            "*the client's pool (0 active, 1 idle):",
            "*port * idle * http://127.0.0.1:*",
        ]
    )


def test_hook_overrides_a_built_in_adapter(pytester: pytest.Pytester) -> None:
    """The hook is asked first: a conftest can replace what a built-in adapter reports."""
    pytester.makeconftest(
        """
        import httpx
        from pytest_connfault import PoolSnapshot

        def pytest_connfault_pool_snapshot(client):
            if isinstance(client, httpx.Client):
                return PoolSnapshot("from the hook", ())
            return None
        """
    )
    pytester.makepyfile(
        """
        import httpx
        from pytest_connfault import pool_snapshot

        def test_override():
            with httpx.Client() as client:
                assert pool_snapshot(client).client == "from the hook"
        """
    )
    pytester.runpytest_inprocess("-p", "no:randomly").assert_outcomes(passed=1)


def test_hook_must_return_a_snapshot(pytester: pytest.Pytester) -> None:
    """A hook that returns something else than a PoolSnapshot is reported as such."""
    pytester.makeconftest(
        """
        def pytest_connfault_pool_snapshot(client):
            return {"active": 0}
        """
    )
    pytester.makepyfile(
        """
        import pytest
        from pytest_connfault import PoolSnapshotError, pool_snapshot

        def test_bad_hook():
            with pytest.raises(PoolSnapshotError, match="hook returned {'active': 0}, not a PoolSnapshot"):
                pool_snapshot(object())
        """
    )
    pytester.runpytest_inprocess("-p", "no:randomly").assert_outcomes(passed=1)


def test_hook_does_not_outlive_its_session(pytester: pytest.Pytester) -> None:
    """Once an inner pytest session ends, its conftest hook no longer answers for this one."""
    pytester.makeconftest(
        """
        from pytest_connfault import PoolSnapshot

        def pytest_connfault_pool_snapshot(client):
            return PoolSnapshot("inner", ())
        """
    )
    pytester.makepyfile("def test_nothing():\n    pass\n")
    pytester.runpytest_inprocess("-p", "no:randomly").assert_outcomes(passed=1)
    with pytest.raises(PoolSnapshotError, match="no pool adapter knows"):
        pool_snapshot(object())


def test_entry_point_plugs_in_an_installed_adapter(
    pytester: pytest.Pytester, connfault_server: FaultServer
) -> None:
    """A distribution's `pytest_connfault.pools` entry point is loaded and asked for unknown clients."""
    pytester.makepyfile(tinypool=TINY_POOL)
    dist = pytester.mkdir("connfault_tiny-1.0.dist-info")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: connfault-tiny\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pytest_connfault.pools]\ntiny = tinypool:snapshot\n")
    pytester.syspathinsert()
    import tinypool  # type: ignore[import-not-found]

    pool = tinypool.TinyPool("127.0.0.1", connfault_server.port)
    try:
        pool.get("/")
        snapshot = pool_snapshot(pool)
    finally:
        pool.close()
    assert snapshot.client == "TinyPool"
    assert [(c.state, c.local_port) for c in snapshot.connections] == [
        ("idle", connfault_server.connections[0].client_port)
    ]


def test_broken_entry_point_is_named(pytester: pytest.Pytester) -> None:
    """An entry point that fails to load is named in the error, with its target."""
    dist = pytester.mkdir("connfault_broken-1.0.dist-info")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: connfault-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pytest_connfault.pools]\nbroken = no_such_module_here:snapshot\n")
    pytester.syspathinsert()
    with pytest.raises(PoolSnapshotError, match=r"entry point 'broken' \(no_such_module_here:snapshot\) failed"):
        pool_snapshot(object())


def test_public_names_are_exported() -> None:
    """The pool and assertion names are in pytest_connfault.__all__ and importable."""
    import pytest_connfault

    names = {
        "pool_snapshot",
        "PoolSnapshot",
        "PooledConnection",
        "PoolSnapshotError",
        "assert_pool",
        "assert_reused",
        "assert_new_connection",
        "assert_no_stale",
        "assert_no_leak",
    }
    assert names <= set(pytest_connfault.__all__)
    assert all(hasattr(pytest_connfault, name) for name in names)
