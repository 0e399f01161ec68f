"""Errors raised by ingestion: each names the file, and the row and field where known."""

from __future__ import annotations

__all__ = ["IngestError"]


class IngestError(Exception):
    """A file-level problem that stops one file from being ingested (nothing of it is loaded).

    Row-level problems never raise: those rows are quarantined with a reason.

    Examples
    --------
    >>> str(IngestError("file is empty (0 bytes)", file="motion.csv"))
    'motion.csv: file is empty (0 bytes)'
    >>> str(IngestError("no header line", file="a.csv", row=1))
    'a.csv: row 1: no header line'
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.row = row
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.file,) if p]
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.field:
            parts.append(f"field {self.field!r}")
        return ": ".join([*parts, self.message])
