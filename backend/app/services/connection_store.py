"""Connection handles for the database browser (spec §6.1, DB-17, DB-25).

A handle is a random UUID that stands for one set of PostgreSQL credentials for a fixed time
(absolute TTL, monotonic clock). Handles with identical credentials share one small asyncpg pool;
the pool is closed when its last handle expires or is deleted and no request still uses it.
One handle holds at most ``max_concurrent_per_handle`` pooled connections at a time, so a single
handle (one user, one browser tab) cannot take every connection of a shared pool: a request over
that cap waits up to the connect timeout for one of the handle's own requests to finish, then
gets 429. This does not stop someone who opens several handles with the same credentials;
``DB_MAX_HANDLES`` and the pool size bound that.
Credentials live in memory only and never appear in a response, a log line or an error message:
logs carry a handle prefix and a short hash of the host, errors are scrubbed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from app.config.db_configs import SSL_MODES, ConnectionParams
from app.errors import Expired, Invalid, ServiceError, Timeout, TooManyRequests
from app.log_redaction import scrub_secrets
from app.services.pg_text import install_text_codecs

logger = logging.getLogger(__name__)

EXPIRED_MESSAGE = "Connection handle has expired or is invalid. Please reconnect."
GENERIC_FAILURE = "Connection failed: check your configuration (host, port, database, credentials)."


@dataclass(frozen=True)
class Credentials:
    """What is needed to open a PostgreSQL connection. ``password`` is never logged or shown."""

    host: str
    port: int
    database: str
    username: str
    password: str | None = field(default=None, repr=False)
    ssl_mode: str = "prefer"

    def pool_key(self) -> str:
        """A digest identifying this credential set (pools are shared per credential set)."""
        raw = "\x00".join([self.host, str(self.port), self.database, self.username, self.password or "", self.ssl_mode])
        return hashlib.sha256(raw.encode()).hexdigest()

    @property
    def host_hash(self) -> str:
        """Short hash of the host for log lines."""
        return hashlib.sha256(self.host.encode()).hexdigest()[:8]


@dataclass
class ConnectionHandle:
    """One live handle."""

    handle: str
    credentials: Credentials = field(repr=False)
    store: str
    created_at: float
    expires_at: float
    pool_key: str = field(repr=False)
    request_count: int = 0
    last_request_at: float | None = None
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2), repr=False)

    @property
    def prefix(self) -> str:
        """First characters of the handle, for logs."""
        return self.handle[:8]


@dataclass
class _PoolEntry:
    pool: asyncpg.Pool
    handles: int = 0
    leases: int = 0


def scrub_error(text: str, secrets: Sequence[str | None]) -> str:
    """Remove DSN passwords and known secrets; text that still mentions credentials becomes generic."""
    out = scrub_secrets(text, secrets)
    if "@" in out or "password" in out.lower():
        return "check your configuration"
    return out


def ssl_argument(mode: str) -> Any:
    """asyncpg ``ssl=`` value for an sslmode; verify-* use the system trust store (DB-25)."""
    if mode == "disable":
        return False
    if mode in ("verify-ca", "verify-full"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = mode == "verify-full"
        return ctx
    return mode


async def connect_source(
    params: ConnectionParams,
    *,
    application_name: str,
    statement_timeout_ms: int,
    connect_timeout: float,
    command_timeout: float | None = None,
) -> Any:
    """One direct asyncpg connection to a configured source (sync fallback, one-shot imports)."""
    return await asyncpg.connect(
        host=params.host,
        port=params.port,
        user=params.username or None,
        password=params.password.get_secret_value() if params.password else None,
        database=params.database or None,
        ssl=ssl_argument(params.ssl_mode),
        timeout=connect_timeout,
        command_timeout=command_timeout,
        server_settings={"statement_timeout": str(statement_timeout_ms), "application_name": application_name},
    )


async def cancel_source_queries(params: ConnectionParams, application_name: str) -> int:
    """Ask the source to cancel the statements of this role's sessions named ``application_name``; how many.

    Used when a sync is cancelled (shutdown): the postgres extension notices DuckDB's interrupt only
    when PostgreSQL answers, so a long source query would hold the shutdown until it ends.
    """
    conn = await connect_source(
        params, application_name=f"{application_name}_cancel", statement_timeout_ms=5000, connect_timeout=5
    )
    try:
        rows = await conn.fetch(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1 AND usename = current_user AND pid <> pg_backend_pid()",
            application_name,
        )
    finally:
        await conn.close()
    return sum(1 for r in rows if r[0])


def describe_connect_error(exc: BaseException, creds: Credentials, connect_timeout: float) -> ServiceError:
    """A friendly, scrubbed error for a failed connection attempt."""
    secrets = [creds.password]
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return Invalid("Authentication failed: check the username and password.")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return Invalid(scrub_error(f"Database '{creds.database}' does not exist.", secrets))
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return Invalid(f"Connection timed out after {connect_timeout:g} s: check the host, port and firewall.")
    text = str(exc)
    if isinstance(exc, ConnectionError) and "SSL" in text:
        return Invalid(
            f"The server does not accept TLS connections, so ssl_mode '{creds.ssl_mode}' cannot be used. "
            "Use ssl_mode 'prefer' or 'disable', or enable TLS on the server."
        )
    if isinstance(exc, ssl.SSLError):
        return Invalid(f"TLS negotiation failed ({scrub_error(exc.__class__.__name__, secrets)}): check ssl_mode.")
    if isinstance(exc, OSError):
        return Invalid("Could not connect to the server: check the host, port and firewall.")
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return Invalid(f"Connection failed: {scrub_error(text, secrets)}")
    return Invalid(GENERIC_FAILURE)


class ConnectionStore:
    """Handles → credentials, with shared per-credential pools, an absolute TTL and a cap."""

    def __init__(
        self,
        *,
        ttl_seconds: float = 900,
        max_handles: int = 100,
        connect_timeout: float = 10.0,
        statement_timeout_seconds: int = 30,
        pool_max_size: int = 4,
        max_concurrent_per_handle: int = 2,
        application_name: str = "axis-db-browser",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_handles = max_handles
        self.connect_timeout = connect_timeout
        self.statement_timeout_seconds = statement_timeout_seconds
        self.pool_max_size = pool_max_size
        self.max_concurrent_per_handle = max_concurrent_per_handle
        self.application_name = application_name
        self._clock = clock
        self._handles: dict[str, ConnectionHandle] = {}
        self._pools: dict[str, _PoolEntry] = {}
        self._pending = 0
        self._lock = asyncio.Lock()
        self._closed = asyncio.Event()

    # ------------------------------------------------------------------ pools
    async def _create_pool(self, creds: Credentials) -> asyncpg.Pool:
        pool = await asyncio.wait_for(
            asyncpg.create_pool(
                host=creds.host,
                port=creds.port,
                user=creds.username,
                password=creds.password,
                database=creds.database,
                ssl=ssl_argument(creds.ssl_mode),
                min_size=1,
                max_size=self.pool_max_size,
                timeout=self.connect_timeout,
                init=install_text_codecs,  # PostgreSQL's text for points, bit strings, rows, …
                server_settings={
                    "application_name": self.application_name,
                    "statement_timeout": str(self.statement_timeout_seconds * 1000),
                },
            ),
            timeout=self.connect_timeout + 1,
        )
        return pool

    @staticmethod
    async def _close_pool(pool: asyncpg.Pool, grace: float = 10.0) -> None:
        try:
            await asyncio.wait_for(pool.close(), timeout=grace)
        except (TimeoutError, asyncpg.PostgresError, OSError):
            pool.terminate()

    def _release_pool_locked(self, key: str) -> asyncpg.Pool | None:
        """Drop a pool entry whose last handle and last lease are gone; return the pool to close."""
        entry = self._pools.get(key)
        if entry is not None and entry.handles <= 0 and entry.leases <= 0:
            del self._pools[key]
            return entry.pool
        return None

    # ------------------------------------------------------------------ handles
    async def open_handle(self, creds: Credentials, store: str) -> tuple[ConnectionHandle, str]:
        """Test the credentials and return a new handle plus the server version."""
        if creds.ssl_mode not in SSL_MODES:
            raise Invalid(f"Unknown ssl_mode '{creds.ssl_mode}'. Use one of: {', '.join(SSL_MODES)}")
        await self.purge_expired()
        key = creds.pool_key()
        async with self._lock:
            if len(self._handles) + self._pending >= self.max_handles:
                raise TooManyRequests(
                    f"Too many open database connections (limit {self.max_handles}). "
                    "Close a connection or wait for one to expire."
                )
            self._pending += 1
            entry = self._pools.get(key)
            if entry is not None:
                entry.leases += 1
        new_pool: asyncpg.Pool | None = None
        try:
            if entry is None:
                try:
                    new_pool = await self._create_pool(creds)
                except Exception as exc:
                    raise describe_connect_error(exc, creds, self.connect_timeout) from None
                pool = new_pool
            else:
                pool = entry.pool
            try:
                async with pool.acquire(timeout=self.connect_timeout) as conn:
                    version = str(await conn.fetchval("SELECT version()"))
            except Exception as exc:
                raise describe_connect_error(exc, creds, self.connect_timeout) from None
            now = self._clock()
            handle = ConnectionHandle(
                handle=str(uuid.uuid4()),
                credentials=creds,
                store=store,
                created_at=now,
                expires_at=now + self.ttl_seconds,
                pool_key=key,
                slots=asyncio.Semaphore(self.max_concurrent_per_handle),
            )
            to_close: asyncpg.Pool | None = None
            async with self._lock:
                current = self._pools.get(key)
                if entry is not None:
                    entry.leases -= 1
                    entry = None
                if current is None:
                    current = _PoolEntry(pool=pool)
                    self._pools[key] = current
                    new_pool = None
                elif new_pool is not None:
                    to_close, new_pool = new_pool, None  # another request created the pool meanwhile
                current.handles += 1
                self._handles[handle.handle] = handle
        finally:
            async with self._lock:
                self._pending -= 1
                if entry is not None:
                    entry.leases -= 1
                    orphan = self._release_pool_locked(key)
                else:
                    orphan = None
            for pool_to_close in (new_pool, orphan):
                if pool_to_close is not None:
                    await self._close_pool(pool_to_close)
        if to_close is not None:
            await self._close_pool(to_close)
        logger.info("Opened database handle %s… (host #%s)", handle.prefix, creds.host_hash)
        return handle, version

    async def lookup(self, handle_id: str) -> ConnectionHandle:
        """The live handle (counts the request); unknown or expired → ``Expired`` (401)."""
        await self.purge_expired()
        handle = self._handles.get(handle_id)
        if handle is None:
            raise Expired(EXPIRED_MESSAGE)
        handle.request_count += 1
        handle.last_request_at = self._clock()
        return handle

    @asynccontextmanager
    async def connection(self, handle_id: str) -> AsyncIterator[tuple[asyncpg.Connection, ConnectionHandle]]:
        """A pooled connection for a live handle; the pool stays open until the block ends.

        A handle that already holds ``max_concurrent_per_handle`` connections waits up to the connect
        timeout for one of them, then gets ``TooManyRequests`` (429).
        """
        handle = await self.lookup(handle_id)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await handle.slots.acquire()
        except TimeoutError:
            raise TooManyRequests(
                f"This connection handle is already running {self.max_concurrent_per_handle} requests at once "
                "(the per-handle limit); wait for one to finish and try again."
            ) from None
        try:
            async with self._lease(handle) as conn:
                yield conn, handle
        finally:
            handle.slots.release()

    @asynccontextmanager
    async def _lease(self, handle: ConnectionHandle) -> AsyncIterator[asyncpg.Connection]:
        """Lease a connection from the handle's pool (the caller holds one of the handle's slots)."""
        async with self._lock:
            entry = self._pools.get(handle.pool_key)
            if entry is None:
                raise Expired(EXPIRED_MESSAGE)
            entry.leases += 1
        try:
            try:
                conn = await entry.pool.acquire(timeout=self.connect_timeout)
            except TimeoutError:
                raise Timeout("Timed out waiting for a database connection; try again.") from None
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                raise describe_connect_error(exc, handle.credentials, self.connect_timeout) from None
            try:
                yield conn
            finally:
                await entry.pool.release(conn)
        finally:
            async with self._lock:
                entry.leases -= 1
                orphan = self._release_pool_locked(handle.pool_key)
            if orphan is not None:
                await self._close_pool(orphan)

    async def close_handle(self, handle_id: str) -> bool:
        """Delete a handle (closing its pool when it was the last user); False when unknown."""
        async with self._lock:
            handle = self._handles.pop(handle_id, None)
            if handle is None:
                return False
            orphan = self._detach_locked(handle)
        if orphan is not None:
            await self._close_pool(orphan)
        logger.info("Closed database handle %s…", handle.prefix)
        return True

    def _detach_locked(self, handle: ConnectionHandle) -> asyncpg.Pool | None:
        entry = self._pools.get(handle.pool_key)
        if entry is None:
            return None
        entry.handles -= 1
        return self._release_pool_locked(handle.pool_key)

    async def purge_expired(self) -> int:
        """Drop expired handles and close pools nobody uses any more; returns handles dropped."""
        now = self._clock()
        orphans: list[asyncpg.Pool] = []
        async with self._lock:
            expired = [h for h in self._handles.values() if h.expires_at <= now]
            for handle in expired:
                del self._handles[handle.handle]
                orphan = self._detach_locked(handle)
                if orphan is not None:
                    orphans.append(orphan)
        if orphans:
            await asyncio.gather(*(self._close_pool(p) for p in orphans))
        for handle in expired:
            logger.info("Database handle %s… expired", handle.prefix)
        return len(expired)

    async def stats(self) -> tuple[int, int]:
        """``(active_handles, max_handles)`` after purging expired handles."""
        await self.purge_expired()
        return len(self._handles), self.max_handles

    @property
    def open_pools(self) -> int:
        """Number of pools currently open."""
        return len(self._pools)

    async def run_sweeper(self, interval: float) -> None:
        """Purge expired handles every ``interval`` seconds until :meth:`close_all`."""
        while not self._closed.is_set():
            try:
                await asyncio.wait_for(self._closed.wait(), timeout=interval)
            except TimeoutError:
                try:
                    await self.purge_expired()
                except Exception:
                    logger.exception("Database handle sweep failed")

    async def close_all(self) -> None:
        """Stop the sweeper, forget every handle and close every pool (shutdown)."""
        self._closed.set()
        async with self._lock:
            pools = [entry.pool for entry in self._pools.values()]
            self._pools.clear()
            self._handles.clear()
        if pools:
            await asyncio.gather(*(self._close_pool(p, grace=5.0) for p in pools))
