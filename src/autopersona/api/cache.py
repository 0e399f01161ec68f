"""The service's in-memory read path for current profiles, invalidated by PostgreSQL.

A profile lookup without ``as_of`` reads the current tag versions of one VIN, account or
person.  Each server process keeps the JSON text of recent answers in a
:class:`ProfileCache` (keyed by the tuple of entities the lookup covers, so a person's
profile and each of their VINs are separate entries), and serves repeats from memory instead
of a database round trip.  Historical (``as_of``) reads, histories and audiences always go to
the database.

Invalidation (PostgreSQL store)
-------------------------------
:func:`install` adds to the store's schema a one-row table ``profile_generation`` and a
statement-level trigger on ``tag_assignments``: any ``INSERT``, ``UPDATE``, ``DELETE`` or
``TRUNCATE`` — a profile refresh, a consent-driven close, an erasure, a hand-written
statement — bumps the generation once per transaction and sends
``NOTIFY autopersona_profiles, '<schema>:<generation>'`` at commit.  Each process holds one
listening connection (:class:`PgInvalidator`); a notification for its schema empties its
cache.  The listening socket is read whenever data arrives *and* before every cache hit, so a
request is never answered from memory while a notification already delivered to the process
waits unread.  A miss fills the cache only if no invalidation happened while its query ran
(:attr:`ProfileCache.epoch`), so an answer read before a write cannot outlive the write.

When the listening connection is lost the cache is emptied and bypassed (every lookup reads
the database) until a new connection listens again; notifications sent in between cannot
be missed that way.

Processes that change profiles without touching ``tag_assignments`` — the consent endpoint —
call :meth:`PgInvalidator.bump`, which does the same as the trigger.  The process performing
an erasure or a consent withdrawal also drops the entries itself, before it answers.

The DuckDB store has no change notifications (and a DuckDB file has one writing process), so
the service reads it directly and keeps no cache for it.

Examples
--------
>>> c = ProfileCache(max_entries=2)
>>> c.enabled = True
>>> e = c.epoch
>>> c.put(("V1",), "[1]", e), c.put(("P1", "V1", "V2"), "[2]", e), c.get(("V1",))
(True, True, '[1]')
>>> c.drop(["V2"])                      # V2's entries go, V1's own entry stays
1
>>> c.get(("P1", "V1", "V2")), c.get(("V1",))
(None, '[1]')
>>> c.put(("V3",), "[3]", e)            # an invalidation happened since e: not stored
False
>>> c.clear(); len(c)
0
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from autopersona.store.sqlbase import pg_turns

if TYPE_CHECKING:
    import psycopg

__all__ = ["CHANNEL", "PgInvalidator", "ProfileCache", "install"]

log = logging.getLogger(__name__)

#: The ``LISTEN`` / ``NOTIFY`` channel; the payload is ``<schema>:<generation>``.
CHANNEL = "autopersona_profiles"

Key = tuple[str, ...]


class ProfileCache:
    """Profile JSON texts by entity tuple: a bounded LRU with an index by entity.

    Only the event loop of the server process touches it (no locks).  ``enabled`` is True
    only while invalidation works; a disabled cache answers nothing and stores nothing.

    Parameters
    ----------
    max_entries
        Entries kept; the least recently used goes first.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.enabled = False
        #: Bumped by every invalidation; a miss stores its answer only if unchanged since.
        self.epoch = 0
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[Key, str] = OrderedDict()
        self._by_entity: dict[str, set[Key]] = {}

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Key) -> str | None:
        """The cached text for ``key``, or None."""
        if not self.enabled:
            return None
        text = self._data.get(key)
        if text is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return text

    def put(self, key: Key, text: str, epoch: int) -> bool:
        """Store ``text`` read when the epoch was ``epoch``; False if that is stale."""
        if not self.enabled or epoch != self.epoch or self.max_entries <= 0:
            return False
        if key not in self._data:
            for e in key:
                self._by_entity.setdefault(e, set()).add(key)
        self._data[key] = text
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            old, _ = self._data.popitem(last=False)
            self._unindex(old)
        return True

    def _unindex(self, key: Key) -> None:
        for e in key:
            keys = self._by_entity.get(e)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_entity[e]

    def drop(self, entities: Iterable[str]) -> int:
        """Remove every entry covering one of ``entities``; returns how many went."""
        self.epoch += 1
        n = 0
        for e in entities:
            for key in list(self._by_entity.get(e, ())):
                if self._data.pop(key, None) is not None:
                    n += 1
                self._unindex(key)
        return n

    def clear(self) -> None:
        """Remove everything."""
        self.epoch += 1
        self._data.clear()
        self._by_entity.clear()


def install(con: psycopg.Connection[Any], schema: str) -> None:
    """Create the generation table, the bump function and the trigger in ``schema``.

    Idempotent and safe when several processes start at once (an advisory lock serialises
    them).  ``con`` is an autocommit connection; ``schema`` holds ``tag_assignments``.
    Needs PostgreSQL 13 or later (``pg_current_xact_id``).
    """
    s = f'"{schema}"'
    lit = schema.replace("'", "''")
    with pg_turns(con, f"{CHANNEL}:{schema}"):
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.profile_generation ("
            "id INTEGER PRIMARY KEY CHECK (id = 1), generation BIGINT NOT NULL, xact XID8)"
        )
        con.execute(
            f"INSERT INTO {s}.profile_generation VALUES (1, 0, NULL) ON CONFLICT (id) DO NOTHING"
        )
        # once per transaction: the first change bumps and notifies, later ones see their own
        # transaction id and do nothing (a bulk write is one notification, one row version)
        con.execute(
            f"""CREATE OR REPLACE FUNCTION {s}.ap_profiles_bump() RETURNS BIGINT
            LANGUAGE plpgsql AS $$
            DECLARE g BIGINT;
            BEGIN
              INSERT INTO {s}.profile_generation AS p VALUES (1, 1, pg_current_xact_id())
              ON CONFLICT (id) DO UPDATE
                SET generation = p.generation + 1, xact = excluded.xact
                WHERE p.xact IS DISTINCT FROM excluded.xact
              RETURNING p.generation INTO g;
              IF FOUND THEN
                PERFORM pg_notify('{CHANNEL}', '{lit}:' || g);
              END IF;
              RETURN g;
            END $$"""
        )
        con.execute(
            f"""CREATE OR REPLACE FUNCTION {s}.ap_profiles_changed() RETURNS TRIGGER
            LANGUAGE plpgsql AS $$
            BEGIN
              PERFORM {s}.ap_profiles_bump();
              RETURN NULL;
            END $$"""
        )
        have = con.execute(
            "SELECT 1 FROM pg_trigger WHERE tgname = 'ap_profiles_changed' "
            "AND tgrelid = to_regclass(%s)",
            [f"{s}.tag_assignments"],
        ).fetchall()
        if not have:
            con.execute(
                "CREATE TRIGGER ap_profiles_changed "
                f"AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {s}.tag_assignments "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {s}.ap_profiles_changed()"
            )


class PgInvalidator:
    """The listening connection of one process: empties ``cache`` on every change.

    Parameters
    ----------
    url
        PostgreSQL URL (without the ``schema`` parameter).
    schema
        Schema of the profile store (notifications of other schemas are ignored).
    cache
        The process's cache; enabled while this listens.
    retry
        Seconds between attempts to listen again after the connection was lost.
    """

    def __init__(self, url: str, schema: str, cache: ProfileCache, retry: float = 1.0) -> None:
        self.url = url
        self.schema = schema
        self.cache = cache
        self.retry = retry
        #: Latest generation seen (from the table when listening starts, then notifications).
        self.generation = -1
        #: Notifications for this schema handled so far.
        self.notifications = 0
        self._con: psycopg.Connection[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Listen (blocking until the first connection is up or failed)."""
        self._loop = asyncio.get_running_loop()
        if not await self._listen():
            self._task = self._loop.create_task(self._reconnect())

    async def close(self) -> None:
        """Stop listening; the cache is emptied and disabled."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drop_connection()

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        con = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        try:
            con.execute(f"LISTEN {CHANNEL}")
            # read after LISTEN: a change committed in between is both counted and notified
            row = con.execute(
                f'SELECT generation FROM "{self.schema}".profile_generation WHERE id = 1'
            ).fetchone()
            self.generation = int(row[0]) if row else 0
        except BaseException:
            con.close()
            raise
        return con

    async def _listen(self) -> bool:
        import anyio.to_thread
        import psycopg

        try:
            con = await anyio.to_thread.run_sync(self._connect)
        except psycopg.Error as exc:
            log.warning("profile cache off: cannot listen for changes: %s", exc)
            return False
        if self._closed:
            con.close()
            return False
        assert self._loop is not None
        self._con = con
        self._fd = con.pgconn.socket
        self.cache.clear()
        self.cache.enabled = True
        self._loop.add_reader(self._fd, self.poll)
        self.poll()
        return True

    async def _reconnect(self) -> None:
        try:
            while not self._closed:
                await asyncio.sleep(self.retry)
                if await self._listen():
                    return
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    def _drop_connection(self) -> None:
        self.cache.enabled = False
        self.cache.clear()
        if self._fd is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
        self._fd = None
        if self._con is not None:
            with contextlib.suppress(Exception):
                self._con.close()
            self._con = None

    def reset(self, why: object) -> None:
        """Empty and bypass the cache, and listen again (e.g. a change could not be sent)."""
        self._lost(why)

    def _lost(self, why: object) -> None:
        log.warning("profile cache off until listening again: %s", why)
        self._drop_connection()
        if not self._closed and self._loop is not None and self._task is None:
            self._task = self._loop.create_task(self._reconnect())

    # ----------------------------------------------------------------- notifications
    @property
    def listening(self) -> bool:
        """Whether changes are being received (the cache is in use)."""
        return self._con is not None

    @property
    def backend_pid(self) -> int | None:
        """PostgreSQL backend of the listening connection (None while not listening)."""
        return self._con.info.backend_pid if self._con is not None else None

    def _handle(self, channel: str, payload: str) -> None:
        if channel != CHANNEL:
            return
        schema, _, gen = payload.rpartition(":")
        if schema != self.schema:
            return
        self.notifications += 1
        self.cache.clear()
        with contextlib.suppress(ValueError):
            self.generation = max(self.generation, int(gen))

    def poll(self) -> None:
        """Read the notifications waiting on the socket (never blocks); call before a hit."""
        con = self._con
        if con is None:
            return
        pg = con.pgconn
        try:
            pg.consume_input()
        except Exception as exc:  # the connection is gone
            self._lost(exc)
            return
        while (n := pg.notifies()) is not None:
            self._handle(n.relname.decode(), n.extra.decode())

    async def bump(self, pool: Any) -> int:
        """Bump the generation (and notify every process) from a connection of ``pool``."""
        async with pool.connection() as con:
            cur = await con.execute(f'SELECT "{self.schema}".ap_profiles_bump()')
            row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else self.generation

    async def catch_up(self, pool: Any, timeout: float = 2.0) -> bool:
        """Wait until this process has handled every change committed so far.

        Reads the generation from the database and waits for its notification; on a timeout
        the cache is emptied and disabled until listening again (returns False).
        """
        if self._con is None:
            return False
        async with pool.connection() as con:
            cur = await con.execute(
                f'SELECT generation FROM "{self.schema}".profile_generation WHERE id = 1'
            )
            row = await cur.fetchone()
        want = int(row[0]) if row else 0
        end = time.monotonic() + timeout
        while self.generation < want:
            self.poll()
            if self.generation >= want or self._con is None:
                break
            if time.monotonic() > end:
                self._lost(f"no notification of generation {want} within {timeout} s")
                return False
            await asyncio.sleep(0.001)
        return self._con is not None
