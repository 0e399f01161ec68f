"""Profile-store backends for tests: DuckDB always, PostgreSQL when it can be had.

PostgreSQL is reached at ``AUTOPERSONA_TEST_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``); when it does not answer, the local cluster is
started once with ``pg_ctlcluster``; when that fails too, the PostgreSQL variants skip with
the reason.  Each test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autopersona.store.profiles import DuckDBProfileStore, PostgresProfileStore, ProfileStore

PG_URL = os.environ.get("AUTOPERSONA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
_pg_state: dict[str, str | None] = {}


def _try_connect() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as con:
            con.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return f"cannot connect to {PG_URL}: {str(exc).strip().splitlines()[0]}"


def open_together(
    open_one: Callable[[str], object], prefix: str, n: int = 6
) -> tuple[str, list[str]]:
    """``open_one(schema)`` from ``n`` threads released at one moment on a fresh schema.

    For stores that create their tables on open (they must all start).  Returns the schema
    and the errors of the threads that failed.
    """
    schema = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    errors: list[str] = []
    start = threading.Barrier(n)

    def one() -> None:
        start.wait(10)
        try:
            open_one(schema)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return schema, errors


def pg_unavailable() -> str | None:
    """None when PostgreSQL answers (starting the local cluster if needed), else why not."""
    if "reason" in _pg_state:
        return _pg_state["reason"]
    reason = _try_connect()
    if reason is not None:
        versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
        if versions:
            cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"]
            try:
                subprocess.run(cmd, check=False, capture_output=True, timeout=60)
            except (OSError, subprocess.SubprocessError) as exc:
                reason += f"; starting it failed: {exc}"
            for _ in range(20):
                if _try_connect() is None:
                    reason = None
                    break
                time.sleep(0.5)
        else:
            reason += "; no local cluster under /etc/postgresql to start"
    _pg_state["reason"] = reason
    return reason


def make_store(kind: str, tmp_path: Path) -> Iterator[ProfileStore]:
    """A fresh, empty store of ``kind`` (``duckdb`` or ``postgresql``)."""
    if kind == "duckdb":
        ps = DuckDBProfileStore(tmp_path / "profiles.duckdb")
        try:
            yield ps
        finally:
            ps.close()
        return
    reason = pg_unavailable()
    if reason:
        pytest.skip(f"PostgreSQL not available: {reason}")
    schema = f"ap_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    pg = PostgresProfileStore(PG_URL, schema=schema)
    try:
        yield pg
    finally:
        pg.drop_schema()
        pg.close()
