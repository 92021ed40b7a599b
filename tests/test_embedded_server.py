"""The embedded ArcadeDB server: lifecycle, durability and staying on loopback."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from opsgraph.graph.embedded import EmbeddedServer, find_runtime
from opsgraph.graph.settings import Settings
from opsgraph.graph.store import Store
from opsgraph.graph.writer import BulkWriter

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OPSGRAPH_URI")), reason="embedded server tests need no OPSGRAPH_URI"
)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening socket on ``port``, read from /proc/net."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


# /proc/net prints addresses as little-endian 32-bit words: 127.0.0.1, ::ffff:127.0.0.1, ::1.
LOOPBACK_HEX = {
    "0100007F",
    "0000000000000000FFFF00000100007F",
    "00000000000000000000000001000000",
}


@pytest.fixture
def server(tmp_path: Path):
    server = EmbeddedServer(Settings(home=tmp_path / "home"))
    yield server
    server.stop()


def _count_machines(settings: Settings) -> int:
    with Store.open(settings) as store:
        return store.read("MATCH (m:Machine) RETURN count(m) AS n")[0]["n"]


def test_start_is_idempotent_and_binds_loopback_only(server: EmbeddedServer) -> None:
    first = server.start()
    second = server.start()
    assert second == first
    assert server.status() == first
    for port in (first.bolt_port, first.http_port):
        addresses = _listening_addresses(port)
        assert addresses, f"nothing listens on {port}"
        assert addresses <= LOOPBACK_HEX, addresses


def test_the_server_records_the_package_it_runs_on(server: EmbeddedServer) -> None:
    runtime = find_runtime()
    state = server.start()
    assert state.package == runtime.label and state.studio is runtime.has_studio
    assert server.status() == state  # read back from server.json
    assert f"-cp\0{runtime.jars}/*\0".encode() in Path(f"/proc/{state.pid}/cmdline").read_bytes()


def test_password_is_generated_and_private(server: EmbeddedServer) -> None:
    server.start()
    mode = stat.S_IMODE(server.password_file.stat().st_mode)
    assert mode == 0o600
    assert len(server.password) >= 24
    assert server.log_file.exists() and server.log_file.stat().st_size > 0


def test_data_survives_stop_and_restart(server: EmbeddedServer) -> None:
    server.start()
    with Store.open(server.settings) as store:
        BulkWriter(store).upsert_nodes("Machine", [{"machine_id": f"M-{i}"} for i in range(50)])
    assert server.stop() is True
    assert server.status() is None
    assert server.stop() is False
    # Commands that need the store start it on demand.
    assert _count_machines(server.settings) == 50


def test_committed_data_survives_a_crash(server: EmbeddedServer) -> None:
    state = server.start()
    with Store.open(server.settings) as store:
        BulkWriter(store).upsert_nodes("Machine", [{"machine_id": f"M-{i}"} for i in range(20)])
    os.kill(state.pid, signal.SIGKILL)
    while server._alive(state.pid):
        pass
    assert server.status() is None  # a stale state file is noticed and cleared
    assert _count_machines(server.settings) == 20


def test_concurrent_starts_share_one_server(server: EmbeddedServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    others = [EmbeddedServer(server.settings) for _ in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        states = list(pool.map(lambda s: s.start(), others))
    assert len({state.pid for state in states}) == 1
    running = [
        line for line in Path("/proc").glob("[0-9]*/cmdline")
        if f"rootPath={server.root_path}\0".encode() in _read(line)
    ]  # fmt: skip
    assert len(running) == 1


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_a_restart_keeps_the_ports_clients_were_given(server: EmbeddedServer) -> None:
    first = server.start()
    store = Store.open(server.settings)  # holds pooled connections while the server stops
    try:
        store.read("RETURN 1 AS ok")
        server.stop()  # the server closes them: its side lingers in TIME_WAIT
        again = server.start()
        assert (again.bolt_port, again.http_port) == (first.bolt_port, first.http_port)
        assert store.read("RETURN 1 AS ok") == [{"ok": 1}]  # the old driver just reconnects
    finally:
        store.close()
