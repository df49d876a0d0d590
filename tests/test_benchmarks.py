"""What the benchmarks' figures rely on: the floor server answers, keep-alive really reuses one
connection (per the ledger), the commands really reach every client, and the harness runs end to end.

The end-to-end run of ``python -m benchmarks --quick`` takes half a minute on 2 cores: it runs only
when ``CONNFAULT_BENCHMARK_SMOKE=1`` is set (CI's choice). It asserts that the harness works, never
a timing.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import commands, memory, pertest, throughput
from benchmarks._common import Config, Section, interleaved, render_table
from benchmarks._floor import REQUEST, FloorServer, connect, get, response_end
from pytest_connfault import FaultServer

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["asyncio", "trio"]


def test_floor_server_answers_http_with_keep_alive() -> None:
    with FloorServer() as floor:
        conn = http.client.HTTPConnection(floor.host, floor.port, timeout=10)
        try:
            for _ in range(3):
                conn.request("GET", "/")
                response = conn.getresponse()
                assert (response.status, response.read()) == (200, b"ok\n")
                assert not response.will_close
        finally:
            conn.close()
        assert floor.accepted == 1, "three requests on one keep-alive connection"


def test_floor_server_answers_pipelined_requests_and_stops_with_connections_open() -> None:
    floor = FloorServer().start()
    sock = connect(floor.host, floor.port)
    try:
        sock.sendall(REQUEST * 5)
        data = b""
        while data.count(b"ok\n") < 5:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        assert data.count(b"HTTP/1.1 200") == 5
    finally:
        floor.stop()  # with the connection still open: must not hang
        sock.close()


def test_raw_client_reads_exactly_one_response() -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
    assert response_end(response) == len(response)
    assert response_end(response[:-1]) == -1
    assert response_end(response + b"HTTP/1.1") == len(response)
    with FaultServer() as server:
        sock = connect(server.host, server.port)
        try:
            assert get(sock).startswith(b"HTTP/1.1 200")
            assert get(sock).endswith(b"ok\n")
        finally:
            sock.close()
        assert [r.connection_id for r in server.requests] == [1, 1]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("client", ["http.client", "httpx"])
def test_keepalive_requests_share_one_connection_per_ledger(backend: str, client: str) -> None:
    """The throughput loop's requests all ride one keep-alive connection (per the server's ledger)."""
    result = throughput.keepalive(f"connfault-{backend}", client, conns=1, seconds=0.2)
    # A handful is enough to show reuse; how many fit in 0.2 s depends on the machine's load.
    assert result["requests"] >= 3, f"the loop made only {result['requests']} requests in 0.2 s"
    assert result["connections"] == 1, (
        f"{result['requests']} requests used {result['connections']} connections: every request of "
        "the loop must reuse one keep-alive connection"
    )


@pytest.mark.parametrize("client", ["http.client", "httpx"])
def test_concurrent_keepalive_uses_exactly_one_connection_per_thread(client: str) -> None:
    result = throughput.keepalive("connfault-asyncio", client, conns=8, seconds=0.2)
    assert result["connections"] == 8
    floor = throughput.keepalive("floor", client, conns=8, seconds=0.2)
    assert floor["connections"] == 8


@pytest.mark.parametrize("server", ["connfault-asyncio", "connfault-trio", "floor"])
def test_scaling_keeps_every_connection_open_and_busy(server: str) -> None:
    result = throughput.scaling(server, conns=16, seconds=0.2)
    assert result["connections"] == 16
    assert result["requests"] >= 16
    assert result["latency_p50"] is not None


def test_pytest_httpserver_reconnects_every_time() -> None:
    """Why the table says so: werkzeug closes every connection, the client reconnects each time."""
    result = throughput.keepalive("pytest-httpserver", "http.client", conns=1, seconds=0.1)
    assert result["requests"] > 0


@pytest.mark.parametrize(("backend", "kind", "seen"), [("asyncio", "reset", "rst"), ("trio", "close", "fin")])
def test_command_sample_waits_until_every_client_saw_the_drop(backend: str, kind: str, seen: str) -> None:
    result = commands.sample(backend, kind, size=5, repeat=2)
    assert [k[seen] for k in result["kinds"]] == [5, 5]
    assert all(seen_at >= call for seen_at, call in zip(result["seen"], result["call"]))


def test_command_sample_holds_more_connections_than_the_default_limit() -> None:
    """The 1000-connection rows need the server's connection limit (512 by default) lifted."""
    result = commands.sample("asyncio", "close", size=600, repeat=1)
    assert result["kinds"][0]["fin"] == 600


@pytest.mark.parametrize("backend", BACKENDS)
def test_pipelined_memory_load_is_one_connection_and_every_request_answered(backend: str) -> None:
    with FaultServer(backend=backend) as server:
        memory._pipelined(server.port, 250, REQUEST)
        requests = server.requests
        assert len(requests) == 250
        assert {r.connection_id for r in requests} == {1}
        assert all(r.outcome.kind == "responded" for r in requests)
        assert memory.ledger_size(server) > 250 * 100


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_keep_alive_connection_keeps_nothing_per_request_besides_its_ledger_records(backend: str) -> None:
    """What the memory bar counts: blocks still allocated once the ledger's records are dropped.

    The ledger itself grows by hundreds of bytes a request; a leak of even one object a request
    would leave thousands of blocks after these 2,800 requests.
    """
    result = memory.requests_sample(backend, 3000)
    assert result["ledger_per_request"] > 300, result
    assert abs(result["blocks_kept"]) < 100, (
        f"the {backend} server kept {result['blocks_kept']} memory blocks over {result['requests']} "
        "requests once its ledger's records were dropped: something besides the ledger grows per request"
    )


def test_generated_pytest_suites_pass_and_really_request(tmp_path: Path) -> None:
    files = pertest.write_suite(tmp_path, tests=3, fresh_tests=1)
    assert set(files) >= {"empty", "connfault-asyncio", "connfault-trio", "httpserver-shared", "httpserver-fresh"}
    for variant in ("connfault-asyncio", "httpserver-shared"):
        wall, cpu, warmup = pertest.run_pytest(tmp_path, *files[variant])  # raises unless all 3 tests passed
        assert wall > 0
        assert cpu > 0
        # The loop threads really started before the tests, in every variant, on both backends.
        assert set(warmup) == {"asyncio", "trio"}
        assert all(took > 0 for took in warmup.values()), warmup
    assert files["connfault-asyncio"][0].read_text().count("get(connfault_server.host") == 3


def test_per_test_ratio_is_taken_within_each_round_so_a_drifting_machine_cancels_out() -> None:
    """Round 1 ran on a machine a quarter slower: within each round connfault costs 0.8 of the shared
    httpserver (both over that round's empty tests), and that is what each round reports, on wall and
    CPU time alike. A round missing a sample, or whose shared httpserver came out no dearer than its
    empty tests, is left out."""
    rounds = {
        "empty": [(0, (1.0, 0.9)), (1, (1.25, 1.1)), (2, (1.0, 0.9)), (3, (1.2, 1.0))],
        "connfault-asyncio": [(0, (1.4, 1.3)), (1, (1.75, 1.5)), (3, (1.5, 1.3))],
        "httpserver-shared": [(0, (1.5, 1.4)), (1, (1.875, 1.6)), (2, (1.5, 1.4)), (3, (1.1, 0.95))],
    }
    assert pertest.cost_ratios(rounds, "connfault-asyncio", 0) == pytest.approx([0.8, 0.8])
    assert pertest.cost_ratios(rounds, "connfault-asyncio", 1) == pytest.approx([0.8, 0.8])


def test_deep_size_counts_shared_objects_once() -> None:
    shared = b"x" * 1000
    assert memory.deep_size([shared, shared]) < memory.deep_size([shared, b"y" * 1000])


def test_interleaving_rotates_the_order_and_the_table_shows_verdicts() -> None:
    calls: list[str] = []
    result = interleaved(Config(rounds=3, verbose=False), ["a", "b", "c"], lambda v: calls.append(v) or v)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert result == {"a": ["a"] * 3, "b": ["b"] * 3, "c": ["c"] * 3}
    section = Section("x")
    section.add("fast", 0.3, "ms", bar="<= 0.5 ms", ok=True)
    section.add("slow", 0.7, "ms", bar="<= 0.5 ms", ok=False)
    section.add("info", 1.0, "ms")
    table = render_table([section])
    assert "| fast | 0.300 | ms |  | <= 0.5 ms | PASS |" in table
    assert "| slow | 0.700 | ms |  | <= 0.5 ms | MISS |" in table
    assert "| info | 1.00 | ms |  |  | - |" in table


def test_a_failing_sample_is_recorded_and_the_others_go_on() -> None:
    config = Config(rounds=2, verbose=False)

    def sample(variant: str) -> str:
        if variant == "bad":
            raise RuntimeError("worker crashed")
        return variant

    result = interleaved(config, ["good", "bad"], sample)
    assert result == {"good": ["good", "good"], "bad": []}
    assert len(config.errors) == 2
    assert "worker crashed" in config.errors[0]


@pytest.mark.timeout(600)
@pytest.mark.skipif(os.environ.get("CONNFAULT_BENCHMARK_SMOKE") != "1",
                    reason="the --quick smoke run takes ~30 s: set CONNFAULT_BENCHMARK_SMOKE=1")
def test_quick_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--quiet", "--write-results", str(results)],
        cwd=str(ROOT), capture_output=True, text=True, timeout=580,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for number in range(1, 8):
        assert f"| **{number}. " in proc.stdout, f"section {number} missing"
    assert "bars met" in proc.stdout
    text = results.read_text()
    assert "cores" in text
    assert "Python" in text
    assert "| measurement |" in text
