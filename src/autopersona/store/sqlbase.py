"""What every schema-scoped SQL store shares (profile store, outbox).

One code path for DuckDB and PostgreSQL, with the backend's placeholder and JSON type filled
into shared SQL.

>>> class Demo(SchemaStore):
...     placeholder = "%s"
>>> Demo("ap").sql("SELECT * FROM {s}.t WHERE x = ? AND j::{json} IS NOT NULL")
'SELECT * FROM "ap".t WHERE x = %s AND j::JSON IS NOT NULL'
>>> Demo("bad name")
Traceback (most recent call last):
...
ValueError: invalid schema name 'bad name'
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

__all__ = ["SchemaStore", "closed_on_error", "connect_postgres", "pg_turns", "transaction"]

_SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@contextmanager
def transaction(con: Any) -> Iterator[None]:
    """One transaction on ``con``, any connection with ``execute``.

    Commits at the end; on any exception (interrupts included) rolls back and re-raises.

    >>> import duckdb
    >>> con = duckdb.connect()
    >>> _ = con.execute("CREATE TABLE t (x INTEGER)")
    >>> try:
    ...     with transaction(con):
    ...         _ = con.execute("INSERT INTO t VALUES (1)")
    ...         raise RuntimeError("stop")
    ... except RuntimeError:
    ...     pass
    >>> con.execute("SELECT count(*) FROM t").fetchall()
    [(0,)]
    """
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def connect_postgres(url: str) -> Any:
    """An autocommit psycopg connection to ``url`` whose session time zone is UTC."""
    import psycopg

    con = psycopg.connect(url, autocommit=True)
    with closed_on_error(con):
        con.execute("SET TIME ZONE 'UTC'")
    return con


@contextmanager
def closed_on_error(con: Any) -> Iterator[None]:
    """Close ``con`` if the block fails (a store that cannot start leaves nothing open)."""
    try:
        yield
    except BaseException:
        con.close()
        raise


@contextmanager
def pg_turns(con: Any, key: str) -> Iterator[None]:
    """One PostgreSQL transaction holding a transaction-level advisory lock on ``key``.

    ``CREATE … IF NOT EXISTS`` is not safe against itself in PostgreSQL: processes creating
    the same schema objects at the same moment fail on the catalog's unique indexes.  Inside
    this block they take turns.  ``con`` is an autocommit psycopg connection.
    """
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [key])
        yield


class SchemaStore:
    """Tables in one schema; subclasses supply the connection.

    SQL is written once with ``{s}`` for the schema, ``{json}`` for the JSON column type and
    ``?`` for parameters; :meth:`sql` turns it into the backend's dialect.
    """

    json_type = "JSON"
    placeholder = "?"

    def __init__(self, schema: str) -> None:
        if not _SCHEMA_RE.match(schema):
            raise ValueError(f"invalid schema name {schema!r}")
        self.schema = schema

    def sql(self, sql: str) -> str:
        """``sql`` with the schema, JSON type and placeholder of this backend."""
        sql = sql.replace("{s}", f'"{self.schema}"').replace("{json}", self.json_type)
        return sql.replace("?", self.placeholder)

    def close(self) -> None:
        """Close the connection if the store opened it."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
