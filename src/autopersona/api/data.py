"""Data access of the service: the warehouse (DuckDB) and the profile store (DuckDB or PostgreSQL).

The profile store is the one :func:`autopersona.store.profiles.open_store` opens for the
same URL (its tables are created there if absent); the service reads it with plain SQL so a
lookup costs one indexed query and no DataFrame:

* PostgreSQL: a pool of async connections (:class:`psycopg_pool.AsyncConnectionPool`), and
  current profiles served from memory (:mod:`autopersona.api.cache`, invalidated by a
  trigger and ``LISTEN``/``NOTIFY``);
* DuckDB: one connection per server process, a cursor per query, run in a worker thread.

The warehouse (identity, features, feedback, decision and delivery logs, event ingestion) is
always the DuckDB file of the settings; it is opened on first use, so a server whose
requests only touch a PostgreSQL profile store never takes the DuckDB file lock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from autopersona.api.cache import PgInvalidator, ProfileCache, install
from autopersona.api.config import ApiSettings
from autopersona.api.errors import ApiError

if TYPE_CHECKING:
    import duckdb
    from psycopg_pool import AsyncConnectionPool

    from autopersona.store.warehouse import Warehouse

__all__ = ["PROFILE_COLUMNS", "Backend", "Rows", "as_utc", "json_or_none"]

PROFILE_COLUMNS = [
    "entity_type",
    "entity",
    "tag_id",
    "value",
    "score",
    "reasons",
    "as_of",
    "valid_from",
    "valid_to",
    "confirmed_at",
    "catalogue_version",
    "model_version",
    "computed_at",
]

Rows = tuple[list[str], list[tuple[Any, ...]]]


def as_utc(v: Any) -> datetime | None:
    """A datetime in UTC (naive means UTC), or None."""
    if v is None:
        return None
    if not isinstance(v, datetime):
        return None
    return (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC)


def json_or_none(v: Any) -> Any:
    """Parse a JSON text (DuckDB) or pass a parsed value (PostgreSQL) through."""
    if v is None:
        return None
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


class Backend:
    """Connections of one server process.

    Parameters
    ----------
    settings
        Service settings (warehouse path, profile-store URL, pool size).
    """

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        url = settings.store
        self.store_kind = (
            "postgresql"
            if url and url.split(":", 1)[0] in ("postgresql", "postgres")
            else ("duckdb-file" if url else "warehouse")
        )
        self.schema = "main"
        self.pg_url = ""
        self._pool: AsyncConnectionPool | None = None
        #: Current profiles of this process (PostgreSQL store with a cache), and its feed.
        self.cache: ProfileCache | None = None
        self.invalidator: PgInvalidator | None = None
        self._wh: Warehouse | None = None
        self._wh_error: str | None = None
        self._store_con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        #: Serialises writes to the warehouse (DuckDB has one writer per connection).
        self.write_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        """Open the profile store (PostgreSQL pool or DuckDB file)."""
        if self.store_kind == "postgresql":
            from psycopg_pool import AsyncConnectionPool

            from autopersona.store.profiles import PostgresProfileStore

            assert self.settings.store is not None
            # creates the schema and tables if absent, and splits off ?schema=
            ps = PostgresProfileStore(self.settings.store)
            self.schema, self.pg_url = ps.schema, ps.url
            try:
                if self.settings.api_profile_cache > 0:
                    install(ps.con, ps.schema)
            finally:
                ps.close()

            async def configure(con: Any) -> None:
                await con.set_autocommit(True)
                await con.execute("SET TIME ZONE 'UTC'")

            n = self.settings.api_pool_size
            self._pool = AsyncConnectionPool(
                self.pg_url, min_size=n, max_size=n, open=False, configure=configure
            )
            await self._pool.open(wait=True, timeout=15)
            if self.settings.api_profile_cache > 0:
                self.cache = ProfileCache(self.settings.api_profile_cache)
                self.invalidator = PgInvalidator(self.pg_url, self.schema, self.cache)
                await self.invalidator.start()
        elif self.store_kind == "duckdb-file":
            from autopersona.store.profiles import DuckDBProfileStore

            assert self.settings.store is not None
            self._store_con = DuckDBProfileStore(self.settings.store).con

    async def close(self) -> None:
        """Close every connection."""
        if self.invalidator is not None:
            await self.invalidator.close()
            self.invalidator = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._store_con is not None:
            self._store_con.close()
            self._store_con = None
        if self._wh is not None:
            self._wh.close()
            self._wh = None

    # ------------------------------------------------------------------ warehouse
    def warehouse(self) -> Warehouse:
        """The warehouse (opened on first use); 503 ``unavailable`` if it cannot be opened."""
        if self._wh is not None:
            return self._wh
        with self._lock:
            if self._wh is None:
                from autopersona.store.profiles import DuckDBProfileStore
                from autopersona.store.warehouse import Warehouse

                ro = self.settings.api_read_only
                try:
                    wh = Warehouse(
                        self.settings.warehouse,
                        memory_limit=self.settings.memory_limit,
                        threads=self.settings.threads,
                        read_only=ro,
                    )
                except Exception as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    raise ApiError(
                        503, "unavailable", f"the warehouse cannot be opened: {first}"
                    ) from None
                if not ro and self.store_kind == "warehouse":
                    DuckDBProfileStore(wh.con)  # creates the profile tables if absent
                self._wh = wh
        return self._wh

    def _duck_rows(self, con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any]) -> Rows:
        # one cursor per worker thread and connection, reused (a cursor is a connection of
        # its own to the same database: safe across threads, cheap to keep)
        cursors: dict[int, duckdb.DuckDBPyConnection] = getattr(self._local, "cursors", {})
        self._local.cursors = cursors
        cur = cursors.get(id(con))
        if cur is None:
            cur = cursors[id(con)] = con.cursor()
            cur.execute("SET TimeZone = 'UTC'")
        res = cur.execute(sql, list(params))
        names = [d[0] for d in res.description or []]
        return names, res.fetchall()

    async def wh_rows(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Rows of a query on the warehouse."""
        wh = self.warehouse()
        return await anyio.to_thread.run_sync(self._duck_rows, wh.con, sql, params)

    async def wh_tables(self) -> set[str]:
        """Names of the warehouse's tables and views."""
        _, rows = await self.wh_rows(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        )
        return {str(r[0]) for r in rows}

    # ------------------------------------------------------------------ profile store
    def _sql(self, sql: str) -> str:
        sql = sql.replace("{s}", f'"{self.schema}"')
        return sql.replace("?", "%s") if self.store_kind == "postgresql" else sql

    async def store_rows(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Rows of a query on the profile store (``{s}`` is its schema, ``?`` a parameter)."""
        q = self._sql(sql)
        if self._pool is not None:
            async with self._pool.connection() as con:
                cur = await con.execute(q, list(params))
                names = [d.name for d in cur.description or []]
                return names, await cur.fetchall()
        dcon = self._store_con if self._store_con is not None else self.warehouse().con
        return await anyio.to_thread.run_sync(self._duck_rows, dcon, q, params)

    # ------------------------------------------------------------------ profile cache
    def profile_cache(self) -> ProfileCache | None:
        """The cache of current profiles if it may be used now (notifications read first)."""
        inv = self.invalidator
        if inv is None:
            return None
        inv.poll()
        return self.cache if self.cache is not None and self.cache.enabled else None

    async def profiles_changed(self, entities: Iterable[str] | None, *, notify: bool) -> None:
        """Forget cached profiles of ``entities`` (None: all) here, then in other processes.

        With ``notify`` the generation is bumped (every process empties its cache), as the
        trigger does for changes of ``tag_assignments``; either way this returns once this
        process has handled every change committed so far.
        """
        if self.cache is not None:
            if entities is None:
                self.cache.clear()
            else:
                self.cache.drop(entities)
        inv = self.invalidator
        if inv is None or self._pool is None:
            return
        try:
            if notify:
                await inv.bump(self._pool)
            await inv.catch_up(self._pool)
        except Exception as exc:  # the others may not have been told: stop trusting the cache
            inv.reset(f"cannot notify a change: {exc}")
