r"""API keys with scopes, stored hashed in a JSON file.

A key reads ``apk_<id>_<secret>``: ``id`` (8 hex digits) finds the record, ``secret`` (43
URL-safe characters, 256 bits) proves possession.  Only ``HMAC-SHA256(server secret,
salt + secret)`` is stored, with a per-key random salt; verification recomputes it and
compares in constant time (:func:`hmac.compare_digest`).  A fast keyed hash is the right tool
here because the secret is random and long (a slow password hash would only slow every
request); the server secret (``AUTOPERSONA_API_SECRET``) means a stolen key file alone is
useless.

Scopes: ``read:profiles``, ``write:events``, ``manage:strategies`` and ``admin`` (admin
implies every scope).  Each key has its own rate limit (requests per second and burst).

The file is rewritten atomically under a lock, and the server re-reads it when it changes, so
``autopersona keys revoke`` takes effect on the next request without a restart.

Examples
--------
>>> import tempfile, pathlib
>>> ks = KeyStore(pathlib.Path(tempfile.mkdtemp()) / "keys.json", secret="s" * 20)
>>> key, rec = ks.create(["read:profiles"], name="analyst")
>>> ks.verify(key).name, ks.verify(key + "x")
('analyst', None)
>>> ks.revoke(rec.id).revoked_at is not None, ks.verify(key)
(True, None)
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["PREFIX", "SCOPES", "ApiKey", "KeyStore", "has_scope"]

PREFIX = "apk"
#: Scopes a key may have; ``admin`` implies all of them.
SCOPES: dict[str, str] = {
    "read:profiles": "read profiles, audiences, the tag catalogue, strategies, reports, dashboard",
    "write:events": "post batches of events and consent updates",
    "manage:strategies": "validate and plan strategies",
    "admin": "everything, including erasure requests",
}


def has_scope(scopes: Sequence[str], needed: str) -> bool:
    """Whether ``scopes`` grant ``needed`` (``admin`` grants everything).

    >>> has_scope(["admin"], "write:events"), has_scope(["read:profiles"], "write:events")
    (True, False)
    """
    return needed in scopes or "admin" in scopes


@dataclass
class ApiKey:
    """One key's record (never the key itself)."""

    id: str
    name: str
    scopes: list[str]
    salt: str
    hash: str
    created_at: str
    rate: float | None = None
    burst: int | None = None
    revoked_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None

    def public(self) -> dict[str, Any]:
        """The record without salt and hash (for listings)."""
        d = asdict(self)
        for k in ("salt", "hash", "extra"):
            d.pop(k)
        return d


class KeyStore:
    """API keys in a JSON file.

    Parameters
    ----------
    path
        The key file (created on the first key).
    secret
        Server secret mixed into every hash.
    """

    def __init__(self, path: Path, secret: str) -> None:
        self.path = Path(path)
        self._secret = secret.encode()
        self._mtime: int | None = None
        self._keys: dict[str, ApiKey] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ file
    def _read(self) -> dict[str, ApiKey]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        return {k["id"]: ApiKey(**k) for k in data.get("keys", [])}

    @contextmanager
    def _locked(self) -> Iterator[dict[str, ApiKey]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with lock.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                keys = self._read()
                yield keys
                tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
                tmp.write_text(
                    json.dumps({"keys": [asdict(k) for k in keys.values()]}, indent=2),
                    encoding="utf-8",
                )
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.path)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        self._mtime = None

    def _current(self) -> dict[str, ApiKey]:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = -1
        if mtime != self._mtime:
            with self._lock:
                self._keys = self._read() if mtime != -1 else {}
                self._mtime = mtime
        return self._keys

    # ------------------------------------------------------------------ hashing
    def _digest(self, salt: str, secret: str) -> str:
        return hmac.new(self._secret, (salt + secret).encode(), hashlib.sha256).hexdigest()

    # ------------------------------------------------------------------ API
    def create(
        self,
        scopes: Sequence[str],
        name: str = "",
        rate: float | None = None,
        burst: int | None = None,
    ) -> tuple[str, ApiKey]:
        """Make a key; returns ``(key, record)``; the key is not stored and cannot be shown again.

        Raises
        ------
        ValueError
            For an unknown scope or no scope at all.
        """
        scopes = sorted(set(scopes))
        if not scopes:
            raise ValueError("a key needs at least one scope")
        bad = [s for s in scopes if s not in SCOPES]
        if bad:
            raise ValueError(f"unknown scope(s) {', '.join(bad)}: use {', '.join(SCOPES)}")
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least 1")
        with self._locked() as keys:
            kid = secrets.token_hex(4)
            while kid in keys:
                kid = secrets.token_hex(4)
            secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
            salt = secrets.token_hex(16)
            rec = ApiKey(
                id=kid,
                name=name,
                scopes=list(scopes),
                salt=salt,
                hash=self._digest(salt, secret),
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                rate=rate,
                burst=burst,
            )
            keys[kid] = rec
        return f"{PREFIX}_{kid}_{secret}", rec

    def list(self) -> list[ApiKey]:
        """Every key record (revoked ones too), oldest first."""
        return sorted(self._read().values(), key=lambda k: (k.created_at, k.id))

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by id.

        Raises
        ------
        KeyError
            For an unknown id.
        """
        with self._locked() as keys:
            if key_id not in keys:
                raise KeyError(f"no key with id {key_id!r}")
            rec = keys[key_id]
            if rec.revoked_at is None:
                rec.revoked_at = datetime.now(UTC).isoformat(timespec="seconds")
        return rec

    def verify(self, key: str) -> ApiKey | None:
        """The active record ``key`` belongs to, or ``None`` (unknown, wrong or revoked)."""
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        rec = self._current().get(parts[1])
        if rec is None or not rec.active:
            return None
        ok = hmac.compare_digest(self._digest(rec.salt, parts[2]), rec.hash)
        return rec if ok else None
