r"""An append-only record journal: the live engine's write-ahead log.

The live engine's hot path cannot afford a DuckDB transaction per MQTT batch (a few
milliseconds of fixed cost each, which sets the latency at low rates and the throughput at
high ones).  Instead each batch's outcome — the event ledger rows, the decisions, the outbox
rows, the refused events — is written as **one record** to this journal and made durable
with one ``fdatasync`` (group commit: everything that arrived while the previous batch was
being decided shares it).  Only then are the MQTT messages acknowledged and the outbox
messages sent.  A background thread applies the records to the warehouse in large
transactions and stores, in the same transaction, the journal position it has applied;
segments wholly below every applied position are deleted.  After a crash, the records past
the applied position are applied again before the engine takes new events, so the warehouse
ends up with exactly what the journal holds.

Format: a folder of segment files ``<base>.jlog`` (``base`` = the global byte position of the
segment's first record, 20 digits, so names sort by position).  Each record is::

    length (u32 LE, of kind + body) | crc32 (u32 LE, of kind + body) | kind (1 byte) | body

A torn or corrupt tail (a crash in the middle of a write) is detected on open by its length
or checksum and cut off; everything before it is intact.  Positions are global byte
offsets: a record's position is where the *next* record starts, so "applied up to ``p``"
means every record that ends at or before ``p``.

Examples
--------
>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     j = Journal(d, sync=False)
...     p1 = j.append(b"E", b'{"n": 1}')
...     p2 = j.append(b"A", b'{"n": 2}')
...     j.close()
...     j = Journal(d, sync=False)
...     [(k, b) for _, k, b in j.records(0)], [k for _, k, _ in j.records(p1)]
([(b'E', b'{"n": 1}'), (b'A', b'{"n": 2}')], [b'A'])
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Journal", "JournalError"]

_HEAD = struct.Struct("<II")
_SUFFIX = ".jlog"
#: largest record accepted (a batch of 1,000 events with their decisions is ~1 MB)
MAX_RECORD = 256 << 20


class JournalError(RuntimeError):
    """The journal cannot be used (unreadable folder, record too large, closed)."""


def _segment_name(base: int) -> str:
    return f"{base:020d}{_SUFFIX}"


def _sync_dir(folder: Path) -> None:
    """``fsync`` a folder: the names created or renamed in it survive a power cut."""
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Journal:
    """Append-only, checksummed records in segment files (see the module docstring).

    Parameters
    ----------
    folder
        Where the segments live (created if absent).  One writer per folder.
    sync
        ``fdatasync`` in :meth:`sync` (and in :meth:`append` with ``sync=True``).  Without
        it a record survives a killed process (the kernel has it) but not a power cut.
    segment_bytes
        A new segment is started once the current one is larger than this.

    Safe to use from several threads (one lock around writes).
    """

    def __init__(
        self, folder: str | Path, *, sync: bool = True, segment_bytes: int = 64 << 20
    ) -> None:
        self.folder = Path(folder)
        created = []  # folders made here: their names must survive a power cut too
        p = self.folder
        while not p.exists():
            created.append(p)
            p = p.parent
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.sync_enabled = sync
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        #: one fdatasync at a time: a caller that waited finds its records durable already
        self._sync_lock = threading.Lock()
        #: the first failed fdatasync: the kernel reports a write-back error once and marks
        #: the lost pages clean, so no later call may be taken to prove records durable
        self._sync_error: OSError | None = None
        self._fd: int | None = None
        self.torn_bytes = 0  # cut off the tail on open
        bases = self._bases()
        if not bases:
            bases = [0]
            os.close(os.open(self.folder / _segment_name(0), os.O_WRONLY | os.O_CREAT, 0o600))
            if sync:  # fdatasync keeps a file's records, not its name (nor its folder's)
                for d in [self.folder, *(c.parent for c in created)]:
                    _sync_dir(d)
        self._base = bases[-1]
        path = self.folder / _segment_name(self._base)
        valid = self._valid_length(path)
        size = path.stat().st_size
        if valid < size:
            self.torn_bytes = size - valid
            with open(path, "r+b") as fh:
                fh.truncate(valid)
                fh.flush()
                os.fsync(fh.fileno())
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._size = valid
        #: every record ending at or before this global position is durable
        self._synced = self._base + valid

    # ------------------------------------------------------------------ layout
    def _bases(self) -> list[int]:
        out = []
        for p in self.folder.glob(f"*{_SUFFIX}"):
            stem = p.name[: -len(_SUFFIX)]
            if stem.isdigit():
                out.append(int(stem))
        return sorted(out)

    @staticmethod
    def _scan(data: bytes) -> Iterator[tuple[int, bytes, bytes]]:
        """``(end offset, kind, body)`` of each intact record of ``data``, in order."""
        pos = 0
        n = len(data)
        while pos + _HEAD.size + 1 <= n:
            length, crc = _HEAD.unpack_from(data, pos)
            start = pos + _HEAD.size
            end = start + length
            if length < 1 or end > n:
                return
            chunk = data[start:end]
            if zlib.crc32(chunk) != crc:
                return
            pos = end
            yield pos, chunk[:1], chunk[1:]

    def _valid_length(self, path: Path) -> int:
        end = 0
        for pos, _, _ in self._scan(path.read_bytes()):
            end = pos
        return end

    @property
    def position(self) -> int:
        """The global position after the last record written."""
        return self._base + self._size

    # ------------------------------------------------------------------ writing
    def append(self, kind: bytes, body: bytes, *, sync: bool = False) -> int:
        """Write one record; returns the position after it.

        With ``sync`` the record (and everything before it) is made durable before
        returning (when the journal syncs at all); otherwise call :meth:`sync`.
        """
        if len(kind) != 1:
            raise JournalError("a record kind is one byte")
        chunk = kind + body
        if len(chunk) > MAX_RECORD:
            raise JournalError(f"record of {len(chunk)} bytes > limit {MAX_RECORD}")
        frame = _HEAD.pack(len(chunk), zlib.crc32(chunk)) + chunk
        with self._lock:
            if self._fd is None:
                raise JournalError("journal is closed")
            if self._size >= self.segment_bytes:
                self._roll()
            written = os.write(self._fd, frame)
            while written < len(frame):  # pragma: no cover - short writes on full disks
                written += os.write(self._fd, frame[written:])
            self._size += len(frame)
            pos = self._base + self._size
        if sync:
            self.sync()
        return pos

    def sync(self) -> None:
        """Make every record written so far durable (``fdatasync``; no-op without sync).

        Returns only once an ``fdatasync`` that began after those records were written has
        ended: a thread whose records another thread is syncing waits for that call (one
        ``fdatasync`` serves every record written before it began) instead of returning
        early.  Appends go on meanwhile; the call works on its own duplicate of the
        segment's descriptor, so a segment rolled over meanwhile is still synced.
        """
        if not self.sync_enabled:
            return
        with self._lock:
            if self._fd is None:
                return
            target = self._base + self._size
            if self._synced >= target:
                return
            fd = os.dup(self._fd)
        try:
            with self._sync_lock:
                if self._synced >= target:  # the call this one waited for covered it
                    return
                self._fdatasync(fd)
                self._synced = max(self._synced, target)
        finally:
            os.close(fd)

    def _fdatasync(self, fd: int) -> None:
        if self._sync_error is not None:
            raise JournalError(
                f"journal {self.folder}: an fdatasync failed earlier ({self._sync_error}); "
                "records written since may be lost: restart to replay what is on disk"
            ) from self._sync_error
        try:
            os.fdatasync(fd)
        except OSError as exc:
            self._sync_error = exc
            raise

    def _roll(self) -> None:
        assert self._fd is not None
        if self.sync_enabled:
            self._fdatasync(self._fd)
            self._synced = self._base + self._size  # (records before it are older segments)
        os.close(self._fd)
        self._base += self._size
        path = self.folder / _segment_name(self._base)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = 0
        if self.sync_enabled:  # the new file's name must survive too
            _sync_dir(self.folder)

    def continue_from(self, applied: int) -> None:
        """Make sure positions go on after ``applied`` (what a store has applied already).

        An empty journal (new, or its folder was cleared after everything was applied)
        starts its first segment at ``applied``; a journal that ends before it was replaced
        or cut short, and the records in between are lost: that is an error.
        """
        with self._lock:
            if self.position >= applied:
                return
            if self._size == 0 and len(self._bases()) == 1:
                assert self._fd is not None
                os.close(self._fd)
                old = self.folder / _segment_name(self._base)
                self._base = applied
                new = self.folder / _segment_name(self._base)
                old.rename(new)
                if self.sync_enabled:  # or a power cut puts its records back at position 0
                    _sync_dir(self.folder)
                self._fd = os.open(new, os.O_WRONLY | os.O_APPEND)
                return
        raise JournalError(
            f"journal {self.folder} ends at position {self.position} but {applied} was "
            "applied already: it was replaced or cut short; restore it, or remove the "
            "store's journal position if those records are known to be applied"
        )

    # ------------------------------------------------------------------ reading
    def records(self, start: int = 0) -> Iterator[tuple[int, bytes, bytes]]:
        """``(position after, kind, body)`` of every record ending after ``start``."""
        with self._lock:
            bases = self._bases()
            limit = self.position
        for i, base in enumerate(bases):
            nxt = bases[i + 1] if i + 1 < len(bases) else limit
            if nxt <= start:
                continue
            data = (self.folder / _segment_name(base)).read_bytes()
            if base + len(data) > limit:
                data = data[: limit - base]
            for end, kind, body in self._scan(data):
                if base + end > start:
                    yield base + end, kind, body

    # ------------------------------------------------------------------ housekeeping
    def release(self, applied: int) -> int:
        """Delete segments whose records all end at or before ``applied``; returns how many.

        The segment being written is kept.
        """
        with self._lock:
            bases = self._bases()
            gone = 0
            for i, base in enumerate(bases[:-1]):
                if bases[i + 1] <= applied and base != self._base:
                    (self.folder / _segment_name(base)).unlink(missing_ok=True)
                    gone += 1
            return gone

    def close(self) -> None:
        """Sync and close (closed even when the sync fails)."""
        try:
            self.sync()
        finally:
            with self._lock:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
