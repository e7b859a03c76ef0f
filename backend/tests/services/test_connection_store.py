"""Connection handles against the real PostgreSQL server: lifecycle, TTL, cap, shared pools, errors."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest

from app.errors import Expired, Invalid, TooManyRequests
from app.services.connection_store import ConnectionStore, Credentials, scrub_error
from tests.conftest import PgSchema

SECRET = "Pw-" + uuid.uuid4().hex


def creds(pg: PgSchema, **over: object) -> Credentials:
    values: dict[str, object] = {
        "host": pg.host, "port": pg.port, "database": pg.database, "username": pg.user,
        "password": SECRET, "ssl_mode": "disable",
    }  # fmt: skip
    values.update(over)
    return Credentials(**values)  # type: ignore[arg-type]


def backends(pg: PgSchema, app_name: str) -> int:
    """Server-side connections opened under this application_name."""
    rows = pg.fetch("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app_name,))
    return int(rows[0][0])


async def wait_for_backends(pg: PgSchema, app_name: str, expected: int, attempts: int = 100) -> int:
    """Poll pg_stat_activity until the count matches (the server drops closed sessions asynchronously)."""
    count = backends(pg, app_name)
    for _ in range(attempts):
        if count == expected:
            break
        await asyncio.sleep(0.05)
        count = backends(pg, app_name)
    return count


def make_store(**over: object) -> tuple[ConnectionStore, str]:
    app_name = f"axis-t-{uuid.uuid4().hex[:10]}"
    values: dict[str, object] = {"application_name": app_name, "connect_timeout": 5.0}
    values.update(over)
    return ConnectionStore(**values), app_name  # type: ignore[arg-type]


async def test_lifecycle_open_lookup_close(pg: PgSchema) -> None:
    conns, app_name = make_store()
    try:
        handle, version = await conns.open_handle(creds(pg), "data")
        assert version.startswith("PostgreSQL")
        uuid.UUID(handle.handle)  # a real UUID
        assert SECRET not in repr(handle)
        looked = await conns.lookup(handle.handle)
        looked = await conns.lookup(handle.handle)
        assert looked.request_count == 2
        async with conns.connection(handle.handle) as (conn, _):
            assert await conn.fetchval("SELECT current_setting('application_name')") == app_name
            assert await conn.fetchval("SELECT current_setting('statement_timeout')") == "30s"
        assert await wait_for_backends(pg, app_name, 1) == 1
        assert await conns.stats() == (1, 100)
        assert await conns.close_handle(handle.handle) is True
        assert await conns.close_handle(handle.handle) is False
        with pytest.raises(Expired) as info:
            await conns.lookup(handle.handle)
        assert info.value.message == "Connection handle has expired or is invalid. Please reconnect."
        assert conns.open_pools == 0
        assert await wait_for_backends(pg, app_name, 0) == 0
    finally:
        await conns.close_all()


async def test_absolute_ttl_expiry_closes_pool(pg: PgSchema) -> None:
    conns, app_name = make_store(ttl_seconds=0.3)
    try:
        handle, _ = await conns.open_handle(creds(pg), "data")
        await conns.lookup(handle.handle)  # use does not extend an absolute TTL
        assert await wait_for_backends(pg, app_name, 1) == 1
        await asyncio.sleep(0.4)
        with pytest.raises(Expired):
            await conns.lookup(handle.handle)
        assert conns.open_pools == 0
        assert await wait_for_backends(pg, app_name, 0) == 0
    finally:
        await conns.close_all()


async def test_sweeper_closes_expired_pools_without_requests(pg: PgSchema) -> None:
    conns, app_name = make_store(ttl_seconds=0.2)
    sweeper = asyncio.create_task(conns.run_sweeper(0.05))
    try:
        await conns.open_handle(creds(pg), "data")
        await conns.open_handle(creds(pg, username=pg.user), "monitoring")
        for _ in range(100):
            if conns.open_pools == 0:
                break
            await asyncio.sleep(0.05)
        assert conns.open_pools == 0
        assert await wait_for_backends(pg, app_name, 0) == 0
    finally:
        await conns.close_all()
        await asyncio.wait_for(sweeper, 2)  # close_all stops the sweeper
    assert sweeper.done() and sweeper.exception() is None


async def test_cap_and_shared_pool(pg: PgSchema) -> None:
    conns, app_name = make_store(max_handles=3)
    try:
        handles = [(await conns.open_handle(creds(pg), "data"))[0] for _ in range(3)]
        assert len({h.handle for h in handles}) == 3
        assert conns.open_pools == 1  # identical credentials share one pool
        with pytest.raises(TooManyRequests) as info:
            await conns.open_handle(creds(pg), "data")
        assert info.value.status_code == 429
        # Closing one handle frees a slot but keeps the shared pool for the other two.
        await conns.close_handle(handles[0].handle)
        assert conns.open_pools == 1
        other, _ = await conns.open_handle(creds(pg, password="different"), "data")
        assert conns.open_pools == 2
        for h in (handles[1], handles[2], other):
            await conns.close_handle(h.handle)
        assert conns.open_pools == 0
        assert await wait_for_backends(pg, app_name, 0) == 0
    finally:
        await conns.close_all()


async def test_pool_outlives_handle_while_in_use(pg: PgSchema) -> None:
    conns, app_name = make_store()
    try:
        handle, _ = await conns.open_handle(creds(pg), "data")
        async with conns.connection(handle.handle) as (conn, _):
            await conns.close_handle(handle.handle)
            assert conns.open_pools == 1  # leased: not closed under the running request
            assert await conn.fetchval("SELECT 41 + 1") == 42
        assert conns.open_pools == 0
        assert await wait_for_backends(pg, app_name, 0) == 0
    finally:
        await conns.close_all()


async def test_one_handle_cannot_take_the_whole_shared_pool(pg: PgSchema) -> None:
    conns, _ = make_store(pool_max_size=3, max_concurrent_per_handle=2, connect_timeout=0.5)
    try:
        greedy, _ = await conns.open_handle(creds(pg), "data")
        other, _ = await conns.open_handle(creds(pg), "data")
        assert conns.open_pools == 1  # same credentials, one shared pool of 3
        release = asyncio.Event()

        async def hold() -> int:
            async with conns.connection(greedy.handle) as (conn, _):
                await release.wait()
                return int(await conn.fetchval("SELECT 1"))

        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.sleep(0.1)
        # The greedy handle's third request waits for its own slot (0.5 s), then gets 429 ...
        started = time.monotonic()
        with pytest.raises(TooManyRequests) as info:
            async with conns.connection(greedy.handle):
                pass
        assert 0.4 <= time.monotonic() - started < 2.0
        assert info.value.status_code == 429
        assert "already running 2 requests at once" in info.value.message
        # ... while another handle on the same pool is served at once.
        async with conns.connection(other.handle) as (conn, _):
            assert await conn.fetchval("SELECT 2") == 2
        assert not any(h.done() for h in holders)  # served while the greedy handle still holds its two
        # A request that waits less than the timeout gets the slot a finishing request frees.
        waiter = asyncio.create_task(hold())
        await asyncio.sleep(0.1)
        release.set()
        assert await asyncio.gather(*holders, waiter) == [1, 1, 1]
    finally:
        await conns.close_all()


async def test_close_all_closes_every_pool(pg: PgSchema) -> None:
    conns, app_name = make_store()
    await conns.open_handle(creds(pg), "data")
    await conns.open_handle(creds(pg, password="other"), "data")
    assert await wait_for_backends(pg, app_name, 2) == 2
    await conns.close_all()
    assert conns.open_pools == 0
    assert await wait_for_backends(pg, app_name, 0) == 0


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"host": "127.0.0.1", "port": 1}, "Could not connect"),
        ({"username": "no_such_role_axis"}, "Authentication failed"),
        ({"database": "no_such_db_axis"}, "does not exist"),
        ({"ssl_mode": "bogus"}, "Unknown ssl_mode"),
    ],
)
async def test_connect_errors_are_friendly_and_scrubbed(pg: PgSchema, over: dict[str, object], fragment: str) -> None:
    conns, _ = make_store()
    try:
        with pytest.raises(Invalid) as info:
            await conns.open_handle(creds(pg, **over), "data")
        assert fragment in info.value.message
        assert SECRET not in info.value.message
        assert conns.open_pools == 0
        assert (await conns.stats())[0] == 0
    finally:
        await conns.close_all()


def server_has_tls(pg: PgSchema) -> bool:
    with psycopg.connect(pg.dsn) as conn:
        row = conn.execute("SHOW ssl").fetchone()
    return bool(row and row[0] == "on")


@pytest.mark.parametrize("mode", ["disable", "prefer", "require", "verify-ca", "verify-full"])
async def test_ssl_modes(pg: PgSchema, mode: str) -> None:
    conns, _ = make_store()
    try:
        if mode in ("disable", "prefer"):
            handle, _ = await conns.open_handle(creds(pg, ssl_mode=mode), "data")
            async with conns.connection(handle.handle) as (conn, _):
                assert await conn.fetchval("SELECT 1") == 1
        elif server_has_tls(pg):
            try:
                await conns.open_handle(creds(pg, ssl_mode=mode), "data")
            except Invalid as exc:  # verify-* may fail on a self-signed certificate, with a clear reason
                assert "TLS" in exc.message
        else:
            with pytest.raises(Invalid) as info:
                await conns.open_handle(creds(pg, ssl_mode=mode), "data")
            assert "does not accept TLS" in info.value.message
            assert mode in info.value.message
    finally:
        await conns.close_all()


def test_scrub_error() -> None:
    assert scrub_error("bad thing s3cr3t here", ["s3cr3t"]) == "bad thing *** here"
    assert scrub_error("postgresql://u:pw@h/db failed", []) == "check your configuration"
    assert scrub_error("password authentication failed", []) == "check your configuration"
    assert scrub_error("plain", [None]) == "plain"
    # A short secret is removed where it stands as a word, not out of other words.
    assert scrub_error("Database 'nope_db' does not exist.", ["e"]) == "Database 'nope_db' does not exist."
    assert scrub_error("value x was wrong", ["x"]) == "value *** was wrong"
    assert scrub_error("tok=abc;", ["abc"]) == "tok=***;" and scrub_error("abcd", ["abc"]) == "abcd"


async def test_one_letter_password_leaves_the_message_readable(pg: PgSchema) -> None:
    conns, _ = make_store()
    try:
        with pytest.raises(Invalid) as info:
            await conns.open_handle(creds(pg, database="nope_db", password="e"), "data")
        assert info.value.message == "Database 'nope_db' does not exist."
    finally:
        await conns.close_all()
