"""Settings every test and doctest runs with.

Pseudonymisation is on by default, and outside demo mode it refuses the published key: tests
run with a key of their own and a vault of their own, never beside the repository: one per
session (for session-scoped fleets) and a fresh one per test.  A test that joins the
simulator's truth on clear VINs opts out with ``AUTOPERSONA_PSEUDONYMISE=0`` (the
``clear_identifiers`` fixture of ``tests/conftest.py``).  The session ends with no subprocess
of the tests left running or holding a pipe.
"""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

#: The tests' pseudonym key (32+ characters, not the published default).
TEST_PSEUDONYM_KEY = "autopersona-tests-pseudonym-key-0123456789"


@pytest.fixture(scope="session", autouse=True)
def _pseudonym_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOPERSONA_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
        mp.setenv("AUTOPERSONA_VAULT", str(tmp_path_factory.mktemp("vault") / "vault.duckdb"))
        yield


@pytest.fixture(autouse=True)
def _pseudonym_vault(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.setenv("AUTOPERSONA_VAULT", str(tmp_path_factory.mktemp("vault") / "vault.duckdb"))


@pytest.fixture(scope="session", autouse=True)
def _no_subprocess_left() -> Iterator[None]:
    """End the session with no child process of the tests still running or holding a pipe.

    Warnings are errors while tests run, but a subprocess (or its pipe) still referenced
    when the session ends is only finalised at interpreter exit, where its
    ``ResourceWarning`` ("unclosed file", "subprocess ... is still running") is merely
    printed.  Spark's JVM, kept up for reuse between tests, is ended here; any other
    leftover fails the session.
    """
    yield
    if "pyspark" in sys.modules:
        from autopersona.features.engines import stop_spark

        stop_spark()
    gc.collect()
    left = []
    for obj in gc.get_objects():
        if not issubclass(type(obj), subprocess.Popen):
            continue
        pipes = [n for n in ("stdin", "stdout", "stderr") if _is_open(getattr(obj, n))]
        if obj.poll() is None or pipes:
            state = "running" if obj.returncode is None else f"exited {obj.returncode}"
            open_ = f", open {', '.join(pipes)}" if pipes else ""
            left.append(f"pid {obj.pid} {obj.args!r}: {state}{open_}")
    if left:
        pytest.fail("subprocesses left behind by the tests:\n" + "\n".join(left), pytrace=False)


def _is_open(f: object) -> bool:
    return f is not None and not getattr(f, "closed", True)
