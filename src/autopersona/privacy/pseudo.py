r"""Pseudonymous identifiers, the audited re-identification vault, and H3 coarsening.

Pseudonyms
----------
A VIN, phone number or e-mail address becomes ``HMAC-SHA256(key, kind | normalised value)``,
written ``pv_…`` (VIN), ``pp_…`` (phone) or ``pe_…`` (e-mail) with 32 hex digits (128 bits).
Normalisation comes first (VIN as identity linkage reads it, phone in E.164, e-mail folded as
identity linkage folds it), so one person's identifier gives one pseudonym whatever its
spelling, and exact-key linkage works on pseudonyms as it does on clear values.  Without
the key a pseudonym cannot be recomputed from a guessed VIN or phone (unlike a plain hash,
which a dictionary of all phone numbers reverses).

The key is ``AUTOPERSONA_PSEUDONYM_KEY``.  :func:`check_settings` — which a service calls
before it starts — refuses the published default key (and keys shorter than 32 characters)
unless demo mode is on (``AUTOPERSONA_DEMO=1``).

Re-identification
-----------------
The only way back from a pseudonym is the :class:`Vault`: a *separate* DuckDB file (not the
warehouse) mapping pseudonym → clear value, filled when pseudonyms are made.  Every read
through :meth:`Vault.reidentify` appends a row to ``reidentification_audit`` first: when,
who, why, the kind and a SHA-256 fingerprint of the pseudonym (not the pseudonym, not the
value), and whether it was found.

Coarsening
----------
Places that say where someone lives or works are stored at H3 resolution where the purpose
needs no more (:data:`COARSEN_RESOLUTION`): marketing (region-level offers) and analytics
keep an H3 cell (resolution 7, about 5 km²; 6 for analytics, about 36 km²) and its centre
instead of the point.  The mobility stage publishes home and work in ``features_mobility``
as resolution-7 cell centres by default (``MobilityParams.coarsen_h3``);
:func:`coarsen_warehouse` coarsens :data:`COARSEN_TARGETS` of an existing warehouse for a
purpose that needs less.  ``mobility_locations`` is *not* coarsened: it is the mobility
build's own state (stays are matched to locations within ~100 m), kept under its retention
period instead.

Examples
--------
>>> p = Pseudonymiser(b"k" * 32)
>>> p.pseudonym("vin", "lsvaa4182e2123456") == p.pseudonym("vin", " LSVAA4182E2123456")
True
>>> p.pseudonym("phone", "+86 138 0013 8000") == p.pseudonym("phone", "138-0013-8000")
True
>>> p.pseudonym("email", "Gao.Min@Example.com")[:3]
'pe_'
>>> coarsen_point(31.2304, 121.4737, 7)[0]
'87309959dffffff'
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from autopersona.store.sqlbase import transaction

if TYPE_CHECKING:
    from autopersona.identity.keys import IdentifierKeys
    from autopersona.settings import Settings
    from autopersona.store.warehouse import Warehouse

__all__ = [
    "AUDIT_TABLE",
    "COARSEN_RESOLUTION",
    "COARSEN_TARGETS",
    "MAP_TABLE",
    "AddressResolver",
    "IngestHook",
    "InsecureKeyError",
    "Kind",
    "Pseudonymiser",
    "Vault",
    "VinPseudonyms",
    "check_settings",
    "coarsen_point",
    "coarsen_warehouse",
    "from_settings",
    "is_pseudonym",
    "live_pseudonyms",
    "pseudonymise_warehouse",
    "scan_raw_identifiers",
    "write_keys",
]

Kind = Literal["vin", "phone", "email"]
PREFIX: dict[str, str] = {"vin": "pv_", "phone": "pp_", "email": "pe_"}
MAP_TABLE = "pseudonym_map"
AUDIT_TABLE = "reidentification_audit"
#: H3 resolution per purpose for stored home/work places (None: no coarsening needed).
COARSEN_RESOLUTION: dict[str, int | None] = {
    "marketing": 7,
    "analytics": 6,
    "partner_sharing": 6,
    "ubi": None,
}
#: (table, lat column, lon column) of stored places that are coarsened.
COARSEN_TARGETS: tuple[tuple[str, str, str], ...] = (
    ("features_mobility", "home_lat", "home_lon"),
    ("features_mobility", "work_lat", "work_lon"),
)
_PSEUDO_RE = re.compile(r"^p[vpe]_[0-9a-f]{32}$")
#: Patterns of clear identifiers (for scans): 17-character VINs (letters and digits: a run of
#: 17 digits is a number, e.g. in a stored model), phone-like digit runs, e-mails.
RAW_PATTERNS: dict[str, re.Pattern[str]] = {
    "vin": re.compile(
        r"\b(?=[A-HJ-NPR-Z0-9]{0,16}[A-HJ-NPR-Z])(?=[A-HJ-NPR-Z0-9]{0,16}\d)[A-HJ-NPR-Z0-9]{17}\b"
    ),
    "phone": re.compile(r"(?<![0-9a-f])\+?\d[\d\s().-]{8,}\d(?![0-9a-f])"),
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
}


class InsecureKeyError(RuntimeError):
    """The pseudonym key is the published default (or too short) outside demo mode."""


def check_settings(settings: Settings | None = None) -> None:
    """Refuse to run with the default or a short pseudonym key unless in demo mode.

    >>> from autopersona.settings import DEFAULT_PSEUDONYM_KEY, Settings
    >>> check_settings(Settings(demo=True, pseudonym_key=DEFAULT_PSEUDONYM_KEY))
    >>> check_settings(Settings(demo=False, pseudonym_key=DEFAULT_PSEUDONYM_KEY))
    Traceback (most recent call last):
    ...
    autopersona.privacy.pseudo.InsecureKeyError: AUTOPERSONA_PSEUDONYM_KEY is the published default key; set a secret key of at least 32 characters (or AUTOPERSONA_DEMO=1 for a demo)
    """
    from autopersona.settings import DEFAULT_PSEUDONYM_KEY, get_settings

    s = settings or get_settings()
    if s.demo:
        return
    key = s.pseudonym_key.get_secret_value()
    if key == DEFAULT_PSEUDONYM_KEY:
        raise InsecureKeyError(
            "AUTOPERSONA_PSEUDONYM_KEY is the published default key; set a secret key of at "
            "least 32 characters (or AUTOPERSONA_DEMO=1 for a demo)"
        )
    if len(key) < 32:
        raise InsecureKeyError(
            f"AUTOPERSONA_PSEUDONYM_KEY has {len(key)} characters; use at least 32"
        )


def _normalise(kind: str, value: str, region: str | None = None) -> str | None:
    text = str(value).strip()
    if not text:
        return None
    if kind == "vin":
        from autopersona.identity.normalise import normalise_vin

        # as identity linkage reads a VIN (separators dropped, I/O/Q as 1/0/0), so a messy
        # spelling gets the vehicle's pseudonym; other vehicle ids only lose their spaces
        return normalise_vin(text) or re.sub(r"\s+", "", text).upper()
    if kind == "phone":
        from autopersona.identity.normalise import normalise_phone

        return normalise_phone(text, region) or re.sub(r"\D", "", text) or None
    if kind == "email":
        from autopersona.identity.normalise import normalise_email

        return normalise_email(text) or text.lower()
    raise ValueError(f"unknown identifier kind {kind!r}; expected vin, phone or email")


def is_pseudonym(value: object) -> bool:
    """True for a value shaped like a pseudonym."""
    return isinstance(value, str) and bool(_PSEUDO_RE.match(value))


class Pseudonymiser:
    """Keyed-HMAC pseudonyms; with a :class:`Vault`, every new pseudonym is also mapped."""

    def __init__(self, key: bytes | str, vault: Vault | None = None) -> None:
        self._key = key.encode() if isinstance(key, str) else bytes(key)
        if not self._key:
            raise ValueError("empty pseudonym key")
        self.vault = vault

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a pseudonymiser holds the key; it is not serialised")

    def pseudonym(self, kind: str, value: str | None, region: str | None = None) -> str | None:
        """The pseudonym of ``value`` (``None`` stays ``None``; a pseudonym stays itself).

        ``region`` is where a phone written without a country code is read (as identity
        linkage reads it, :func:`autopersona.identity.normalise.region_hint`).
        """
        if value is None or is_pseudonym(value):
            return value
        norm = _normalise(kind, value, region)
        if norm is None:
            return None
        return self._mac(kind, norm)

    def _mac(self, kind: str, norm: str) -> str:
        mac = hmac.new(self._key, f"{kind}|{norm}".encode(), hashlib.sha256).hexdigest()
        return PREFIX[kind] + mac[:32]

    def linkage(
        self,
        kind: str,
        values: Sequence[str | None],
        regions: Sequence[str | None] | None = None,
    ) -> tuple[list[str | None], dict[str, IdentifierKeys]]:
        """Pseudonyms of ``values`` and the keyed comparison keys of each new pseudonym.

        The keys (:func:`autopersona.identity.keys.keyed_keys`) let identity linkage find
        identifiers one edit apart or sharing a part without seeing them.  New pseudonyms
        are recorded in the vault as by :meth:`many`.

        Examples
        --------
        >>> p = Pseudonymiser(b"k" * 32)
        >>> ps, keys = p.linkage("phone", ["13800138000", None], ["CN", None])
        >>> ps[0] == p.pseudonym("phone", "+86 138 0013 8000"), ps[1], len(keys[ps[0]].near)
        (True, None, 12)
        """
        from autopersona.identity.keys import keyed_keys

        out: list[str | None] = []
        keys: dict[str, IdentifierKeys] = {}
        pairs: dict[str, str] = {}
        for i, v in enumerate(values):
            if v is None or is_pseudonym(v):
                out.append(v)
                continue
            norm = _normalise(kind, v, regions[i] if regions is not None else None)
            if norm is None:
                out.append(None)
                continue
            ps = self._mac(kind, norm)
            out.append(ps)
            pairs[ps] = str(v)
            if ps not in keys:
                keys[ps] = keyed_keys(kind, norm, self._key)
        if self.vault is not None and pairs:
            self.vault.record(kind, pairs)
        return out, keys

    def many(self, kind: str, values: Iterable[str | None]) -> list[str | None]:
        """Pseudonyms of many values; records the new ones in the vault when there is one."""
        out: list[str | None] = []
        pairs: dict[str, str] = {}
        for v in values:
            p = self.pseudonym(kind, v)
            out.append(p)
            if p is not None and v is not None and p != v:
                pairs[p] = str(v)
        if self.vault is not None and pairs:
            self.vault.record(kind, pairs)
        return out


def from_settings(vault: Vault | None = None, settings: Settings | None = None) -> Pseudonymiser:
    """A pseudonymiser with the configured key (checked by :func:`check_settings`)."""
    from autopersona.settings import get_settings

    s = settings or get_settings()
    check_settings(s)
    return Pseudonymiser(s.pseudonym_key.get_secret_value(), vault)


# ============================================================================ vault
def _fingerprint(pseudonym: str) -> str:
    return hashlib.sha256(b"autopersona/audit|" + pseudonym.encode()).hexdigest()[:16]


#: one re-identification audit row: read_at, actor, purpose, kind, fingerprint, found
AuditRow = tuple[datetime, str, str, str | None, str, bool]


@dataclass
class Vault:
    """The re-identification map in its own DuckDB file, with an audit row per read."""

    path: str | Path = ":memory:"
    con: Any = field(init=False, repr=False)
    pending: dict[str, tuple[str, str]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        import threading

        import duckdb

        self._lock = threading.Lock()  # record() and flush() may run on different threads
        self.con = duckdb.connect(str(self.path))
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute(
            f"""CREATE TABLE IF NOT EXISTS {MAP_TABLE} (
                pseudonym VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, value VARCHAR NOT NULL,
                created_at TIMESTAMPTZ NOT NULL)"""
        )
        self.con.execute(
            f"""CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (
                read_at TIMESTAMPTZ NOT NULL, actor VARCHAR NOT NULL, purpose VARCHAR NOT NULL,
                kind VARCHAR, pseudonym_fingerprint VARCHAR NOT NULL, found BOOLEAN NOT NULL)"""
        )
        # journal positions whose audit rows are stored (the live engine's audit records)
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS vault_journal (source VARCHAR PRIMARY KEY, "
            "position BIGINT NOT NULL)"
        )

    def close(self) -> None:
        """Write what is pending and close the vault."""
        self.flush()
        self.con.close()

    def record(self, kind: str, pairs: dict[str, str]) -> None:
        """Note ``pseudonym → value`` pairs; they are written by :meth:`flush`.

        Writing is deferred because pseudonyms are also made inside DuckDB functions during
        ingestion, where no other DuckDB call may run; every read, erasure and close flushes.
        """
        with self._lock:
            for ps, v in pairs.items():
                self.pending.setdefault(ps, (kind, v))

    def flush(self) -> None:
        """Store the pending pairs (existing pseudonyms are kept)."""
        with self._lock:
            if not self.pending:
                return
            todo, self.pending = self.pending, {}
        df = pd.DataFrame(
            [(ps, k, v) for ps, (k, v) in todo.items()],
            columns=["pseudonym", "kind", "value"],
        )
        import duckdb

        self.con.register("_vault_new", df)
        try:
            for attempt in range(5):
                try:
                    self.con.execute(
                        f"INSERT INTO {MAP_TABLE} SELECT pseudonym, kind, value, now() "
                        f"FROM _vault_new n ON CONFLICT DO NOTHING"
                    )
                    break
                except (duckdb.TransactionException, duckdb.ConstraintException):
                    # another connection to this vault (another worker) committed one of
                    # the same pseudonyms meanwhile: it is there now, so try again
                    if attempt == 4:
                        raise
        finally:
            self.con.unregister("_vault_new")

    def reidentify(self, pseudonym: str, *, actor: str, purpose: str) -> str | None:
        """The clear value behind ``pseudonym``; the read is audited before it happens."""
        if not actor.strip() or not purpose.strip():
            raise ValueError("re-identification needs an actor and a purpose")
        self.flush()
        rows = self.con.execute(
            f"SELECT kind, value FROM {MAP_TABLE} WHERE pseudonym = ?", [pseudonym]
        ).fetchall()
        row = rows[0] if rows else None
        self.con.execute(
            f"INSERT INTO {AUDIT_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
            [
                datetime.now(UTC),
                actor,
                purpose,
                row[0] if row else None,
                _fingerprint(pseudonym),
                row is not None,
            ],
        )
        return str(row[1]) if row else None

    def reidentify_many(
        self, pseudonyms: Sequence[str], *, actor: str, purpose: str
    ) -> list[str | None]:
        """:meth:`reidentify` for each of ``pseudonyms``, in one vault transaction.

        The same audit trail as one :meth:`reidentify` per item (one audit row per item,
        repeats included), written in the transaction that reads the values: one statement
        to look the distinct pseudonyms up, one to append the audit rows, one commit.
        """
        if not actor.strip() or not purpose.strip():
            raise ValueError("re-identification needs an actor and a purpose")
        if not pseudonyms:
            return []
        self.flush()
        at = datetime.now(UTC)
        with transaction(self.con):
            found = self._lookup(pseudonyms)
            self._insert_audit(
                [
                    (
                        at,
                        actor,
                        purpose,
                        found[ps][0] if ps in found else None,
                        _fingerprint(ps),
                        ps in found,
                    )
                    for ps in pseudonyms
                ]
            )
        return [found[ps][1] if ps in found else None for ps in pseudonyms]

    def lookup_many(self, pseudonyms: Sequence[str]) -> dict[str, tuple[str, str]]:
        """``pseudonym → (kind, value)`` of those mapped, **without** an audit row.

        For a caller that writes the audit rows itself before it uses a value
        (:class:`AddressResolver` with a journal); everyone else reads through
        :meth:`reidentify` / :meth:`reidentify_many`.
        """
        if not pseudonyms:
            return {}
        self.flush()
        return self._lookup(pseudonyms)

    def append_audit(
        self, rows: Sequence[AuditRow], *, source: str | None = None, position: int | None = None
    ) -> None:
        """Append audit rows written ahead in a journal, with the journal position reached.

        ``source`` names the journal (its worker); ``position`` is stored in
        ``vault_journal`` in the same transaction, so each journaled row lands once.
        """
        with transaction(self.con):
            self._insert_audit(rows)
            if source is not None and position is not None:
                self.con.execute(
                    "INSERT INTO vault_journal VALUES (?, ?) ON CONFLICT (source) DO UPDATE "
                    "SET position = excluded.position",
                    [source, int(position)],
                )

    def journal_position(self, source: str) -> int:
        """The journal position of ``source`` whose audit rows are stored (0: none)."""
        rows = self.con.execute(
            "SELECT position FROM vault_journal WHERE source = ?", [source]
        ).fetchall()
        return int(rows[0][0]) if rows else 0

    def _lookup(self, pseudonyms: Sequence[str]) -> dict[str, tuple[str, str]]:
        rows = self.con.execute(
            f"SELECT pseudonym, kind, value FROM {MAP_TABLE} "
            "WHERE pseudonym IN (SELECT unnest(?::VARCHAR[]))",
            [list(dict.fromkeys(pseudonyms))],
        ).fetchall()
        return {str(ps): (str(kind), str(value)) for ps, kind, value in rows}

    def _insert_audit(self, rows: Sequence[AuditRow]) -> None:
        if not rows:
            return
        import pyarrow as pa

        cols = list(zip(*rows, strict=True))
        types = [pa.timestamp("us", tz="UTC"), pa.string(), pa.string(), pa.string(),
                 pa.string(), pa.bool_()]  # fmt: skip
        _ap_vault_audit = pa.table(
            [pa.array(c, type=t) for c, t in zip(cols, types, strict=True)],
            names=["read_at", "actor", "purpose", "kind", "fp", "found"],
        )
        self.con.execute(f"INSERT INTO {AUDIT_TABLE} SELECT * FROM _ap_vault_audit")

    def forget(self, identifiers: Sequence[str]) -> int:
        """Delete the mappings of these pseudonyms or clear values (erasure); returns how many."""
        if not identifiers:
            return 0
        self.flush()
        marks = ", ".join("?" for _ in identifiers)
        where = f"pseudonym IN ({marks}) OR value IN ({marks})"
        params = list(identifiers) * 2
        n = self.con.execute(f"SELECT count(*) FROM {MAP_TABLE} WHERE {where}", params).fetchall()
        self.con.execute(f"DELETE FROM {MAP_TABLE} WHERE {where}", params)
        return int(n[0][0]) if n else 0


# ============================================================================ warehouse
def _kind_of(column: str) -> str | None:
    if column in ("vin", "phone", "email"):
        return column
    if column in ("mobile", "phone_number", "e_mail", "mail"):
        return "email" if "mail" in column else "phone"
    if column.endswith("_vin"):
        return "vin"
    return None


def pseudonymise_warehouse(wh: Warehouse, p: Pseudonymiser) -> dict[str, int]:
    """Replace clear VINs, phones and e-mails by pseudonyms in every warehouse table.

    Covers each contract column flagged ``pii`` that holds a VIN, phone or e-mail, and the
    quarantine's raw records (identifiers inside the JSON text are replaced too).  Returns
    values changed per ``table.column``.  Idempotent: pseudonyms are left as they are.
    """
    changed: dict[str, int] = {}
    for c in wh.contracts.values():
        for col in c.columns:
            kind = _kind_of(col.name)
            if not col.pii or kind is None:
                continue
            vals = [
                r[0]
                for r in wh.sql(
                    f'SELECT DISTINCT "{col.name}" FROM "{c.table}" WHERE "{col.name}" IS NOT NULL'
                )
            ]
            todo = [v for v in vals if not is_pseudonym(v)]
            if not todo:
                continue
            if col.linkage:
                df = _linkage_pseudonyms(wh, p, c.table, col.name, kind)
            else:
                df = pd.DataFrame({"v": todo, "p": p.many(kind, todo)})
            wh.con.register("_ps_map", df)
            try:
                wh.con.execute(
                    f'UPDATE "{c.table}" t SET "{col.name}" = m.p FROM _ps_map m '
                    f'WHERE t."{col.name}" = m.v'
                )
            finally:
                wh.con.unregister("_ps_map")
            changed[f"{c.table}.{col.name}"] = len(todo)
    changed.update(_pseudonymise_text(wh, "_quarantine", "raw", p))
    return changed


def _linkage_pseudonyms(
    wh: Warehouse, p: Pseudonymiser, table: str, column: str, kind: str
) -> pd.DataFrame:
    """Clear → pseudonym of a ``linkage`` column; stores the comparison keys.

    A phone is read in the region of its row's ``timezone`` or ``city``, as ingestion
    reads it.
    """
    from autopersona.identity.normalise import region_hint

    names = set(wh.contracts[table].column_names)
    tz = "timezone" if "timezone" in names else "NULL"
    city = "city" if "city" in names else "NULL"
    rows = wh.sql(
        f'SELECT DISTINCT "{column}", {tz}, {city} FROM "{table}" WHERE "{column}" IS NOT NULL'
    )
    todo = [(v, z, c) for v, z, c in rows if not is_pseudonym(v)]
    values = [v for v, _, _ in todo]
    regions = [region_hint(z, c) for _, z, c in todo] if kind == "phone" else None
    out, keys = p.linkage(kind, values, regions)
    write_keys(wh.con, {(kind, ps): k for ps, k in keys.items()})
    # one row per clear value (a value in two regions keeps its first reading)
    return pd.DataFrame({"v": values, "p": out}).drop_duplicates("v")


def _pseudonymise_json(text: str, p: Pseudonymiser) -> str:
    """Pseudonymise identifier fields of a JSON record (VIN and e-mail patterns otherwise)."""
    import json

    try:
        rec = json.loads(text)
    except ValueError:
        rec = None
    if isinstance(rec, dict) and "\\u" in text:
        try:
            json.dumps(rec, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escape (\\ud800): no UTF-8 holds it
            rec = json.loads(json.dumps(rec, ensure_ascii=False).encode("utf-8", "replace"))
    if isinstance(rec, dict):
        for k, v in rec.items():
            kind = _kind_of(str(k))
            if kind is not None and isinstance(v, str):
                rec[k] = p.many(kind, [v])[0]
        return json.dumps(rec, separators=(",", ":"), ensure_ascii=False)
    for pattern_kind in ("vin", "email"):

        def swap(m: re.Match[str], k: str = pattern_kind) -> str:
            return str(p.many(k, [m.group(0)])[0])

        text = RAW_PATTERNS[pattern_kind].sub(swap, text)
    return text


def _pseudonymise_text(wh: Warehouse, table: str, column: str, p: Pseudonymiser) -> dict[str, int]:
    rows = wh.sql(f'SELECT DISTINCT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL')
    pairs = [(str(t), _pseudonymise_json(str(t), p)) for (t,) in rows]
    pairs = [(a, b) for a, b in pairs if a != b]
    if pairs:
        wh.con.register("_ps_text", pd.DataFrame(pairs, columns=["old", "new"]))
        try:
            wh.con.execute(
                f'UPDATE "{table}" t SET "{column}" = m.new FROM _ps_text m '
                f'WHERE t."{column}" = m.old'
            )
        finally:
            wh.con.unregister("_ps_text")
    return {f"{table}.{column}": len(pairs)} if pairs else {}


def scan_raw_identifiers(wh: Warehouse, known: dict[str, set[str]] | None = None) -> list[str]:
    """Every text column of every table (every schema) searched for clear VINs, phones, e-mails.

    With ``known`` (kind → clear values, e.g. from the source files) the scan looks for
    those exact values; otherwise for anything shaped like one (:data:`RAW_PATTERNS`).
    Returns ``table.column: kind`` findings.
    """
    found: list[str] = []
    tables = wh.sql(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        "WHERE table_catalog = current_database() "
        "AND table_schema NOT IN ('information_schema', 'pg_catalog') "
        "AND data_type IN ('VARCHAR', 'JSON', 'VARCHAR[]') "
        "ORDER BY table_schema, table_name, ordinal_position"
    )
    for schema, table, column in tables:
        expr = f'CAST("{column}" AS VARCHAR)'
        texts = [
            str(r[0])
            for r in wh.sql(
                f'SELECT DISTINCT {expr} FROM "{schema}"."{table}" WHERE "{column}" IS NOT NULL'
            )
        ]
        if not texts:
            continue
        blob = "\n".join(texts)
        name = table if schema == "main" else f"{schema}.{table}"
        for kind, pat in RAW_PATTERNS.items():
            if known is not None:
                hit = any(v and v in blob for v in known.get(kind, set()))
            else:
                hit = any(not is_pseudonym(m) for m in pat.findall(blob))
            if hit:
                found.append(f"{name}.{column}: {kind}")
    return found


# ============================================================================ H3
def coarsen_point(lat: float, lon: float, resolution: int) -> tuple[str, float, float]:
    """The H3 cell of a point at ``resolution`` and the cell's centre ``(cell, lat, lon)``."""
    import h3  # type: ignore[import-untyped]

    cell = h3.latlng_to_cell(lat, lon, resolution)
    clat, clon = h3.cell_to_latlng(cell)
    return str(cell), float(clat), float(clon)


def coarsen_warehouse(wh: Warehouse, purpose: str = "marketing") -> dict[str, int]:
    """Replace the stored home/work points (:data:`COARSEN_TARGETS`) by their H3 cell centres.

    The resolution comes from :data:`COARSEN_RESOLUTION` for ``purpose``; a purpose that
    needs full precision changes nothing.  Returns points changed per ``table.column``.
    """
    if purpose not in COARSEN_RESOLUTION:
        raise ValueError(f"unknown purpose {purpose!r}; expected {sorted(COARSEN_RESOLUTION)}")
    res = COARSEN_RESOLUTION[purpose]
    out: dict[str, int] = {}
    if res is None:
        return out
    present = {r[0] for r in wh.sql("SELECT table_name FROM information_schema.tables")}
    for table, la, lo in COARSEN_TARGETS:
        if table not in present:
            continue
        pts = wh.sql(
            f'SELECT DISTINCT "{la}", "{lo}" FROM "{table}" '
            f'WHERE "{la}" IS NOT NULL AND "{lo}" IS NOT NULL'
        )
        if not pts:
            continue
        rows = [(a, b, *coarsen_point(float(a), float(b), res)[1:]) for a, b in pts]
        df = pd.DataFrame(rows, columns=["a", "b", "ca", "cb"])
        df = df[(df["a"] != df["ca"]) | (df["b"] != df["cb"])]
        if df.empty:
            continue
        wh.con.register("_h3_map", df)
        try:
            wh.con.execute(
                f'UPDATE "{table}" t SET "{la}" = m.ca, "{lo}" = m.cb FROM _h3_map m '
                f'WHERE t."{la}" = m.a AND t."{lo}" = m.b'
            )
        finally:
            wh.con.unregister("_h3_map")
        out[f"{table}.{la}"] = len(df)
    return out


# ============================================================================ ingest hook
class IngestHook:
    """Pseudonymisation inside ingestion: identifiers never reach a table in clear.

    The ingestion engine (:mod:`autopersona.ingest.engine`) calls :meth:`install` on its
    connection, wraps the value of every contract column flagged ``pii`` that holds a VIN,
    phone or e-mail in :meth:`wrap`, and the raw record it quarantines in :meth:`raw`.  Both
    are vectorised DuckDB functions over Arrow arrays; new pseudonyms go to the vault.
    On by default (key and vault from settings; ``AUTOPERSONA_PSEUDONYMISE=0`` opts out), or
    set explicitly with ``warehouse.ingest_hook = IngestHook(pseudonymiser)``.  The engine
    calls :meth:`flush` after each file, so the vault holds every pseudonym of what landed.
    """

    def __init__(self, p: Pseudonymiser) -> None:
        self.p = p
        self._installed: set[int] = set()
        self._con: Any = None
        self._keys: dict[tuple[str, str], IdentifierKeys] = {}

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> IngestHook:
        """Key and vault from settings (refusing the default key outside demo mode)."""
        from autopersona.settings import get_settings

        s = settings or get_settings()
        return cls(from_settings(Vault(s.vault), s))

    def flush(self) -> None:
        """Write pending pseudonyms to the vault and comparison keys to the warehouse.

        Never from inside a DuckDB function.
        """
        if self.p.vault is not None:
            self.p.vault.flush()
        if self._keys and self._con is not None:
            write_keys(self._con, self._keys)
            self._keys = {}

    _flush = flush  # called while SQL is built

    def install(self, con: Any) -> None:
        """Register the functions on a DuckDB connection (once)."""
        self._con = con
        if id(con) in self._installed:
            return
        import duckdb
        import pyarrow as pa

        # a result left open by an earlier execute() blocks create_function: run one to the end
        con.execute("SELECT 1").fetchall()

        def column_fn(kind: str) -> Any:
            def fn(values: Any) -> Any:
                return pa.array(self.p.many(kind, values.to_pylist()), type=pa.string())

            return fn

        def linkage_fn(kind: str) -> Any:
            # an identifier linkage compares: pseudonym (a phone read in its row's region)
            # and the keyed comparison keys (identity.keys)
            def fn(values: Any, timezones: Any, cities: Any) -> Any:
                from autopersona.identity.normalise import region_hint

                vals = values.to_pylist()
                regions = None
                if kind == "phone":
                    regions = [
                        region_hint(tz, city) if v is not None else None
                        for v, tz, city in zip(
                            vals, timezones.to_pylist(), cities.to_pylist(), strict=True
                        )
                    ]
                out, keys = self.p.linkage(kind, vals, regions)
                for ps, k in keys.items():
                    self._keys[(kind, ps)] = k
                return pa.array(out, type=pa.string())

            return fn

        def create(name: str, fn: Any, n_args: int = 1) -> None:
            # a connection may outlive the hook that registered it (same key)
            with contextlib.suppress(Exception):  # not registered by this connection
                con.remove_function(name)
            try:
                con.create_function(
                    name,
                    fn,
                    ["VARCHAR"] * n_args,
                    "VARCHAR",
                    type="arrow",
                    null_handling="special",  # a NULL time zone or city is no NULL phone
                )
            except duckdb.CatalogException as exc:
                # registered by another connection of the same database (an API backend's
                # cursors share one catalogue): the same key, so the same pseudonyms
                if "already exists" not in str(exc):
                    raise

        for kind in PREFIX:
            create(f"ap_pseudonym_{kind}", column_fn(kind))
            create(f"ap_linkage_{kind}", linkage_fn(kind), 3)

        def raw_fn(values: Any) -> Any:
            out = [None if v is None else _pseudonymise_json(v, self.p) for v in values.to_pylist()]
            return pa.array(out, type=pa.string())

        create("ap_pseudonymise_raw", raw_fn)
        self._installed.add(id(con))

    def wrap(
        self,
        column: Any,
        value_sql: str,
        *,
        row: Mapping[str, str] | None = None,
    ) -> str:
        """The value expression of a contract column, pseudonymised when it is an identifier.

        For a column identity linkage compares (contract flag ``linkage``) the expression
        also records the keyed comparison keys (:mod:`autopersona.identity.keys`), and a
        phone is read in the region its row's ``timezone`` or ``city`` (value expressions
        in ``row``) points to, as linkage reads it.
        """
        self._flush()
        kind = _kind_of(column.name)
        if not column.pii or kind is None or column.type != "string":
            return value_sql
        if column.linkage:
            r = row or {}
            tz = f"CAST({r['timezone']} AS VARCHAR)" if "timezone" in r else "NULL::VARCHAR"
            city = f"CAST({r['city']} AS VARCHAR)" if "city" in r else "NULL::VARCHAR"
            return f"ap_linkage_{kind}({value_sql}, {tz}, {city})"
        return f"ap_pseudonym_{kind}({value_sql})"

    def raw(self, raw_sql: str) -> str:
        """The raw-record expression of the quarantine, with identifiers pseudonymised."""
        self._flush()
        return f"ap_pseudonymise_raw({raw_sql})"


def write_keys(con: Any, keys: Mapping[tuple[str, str], IdentifierKeys]) -> int:
    """Store comparison keys (``(kind, pseudonym) → keys``) not stored yet; returns how many.

    Examples
    --------
    >>> import duckdb
    >>> from autopersona.identity.keys import keyed_keys
    >>> con = duckdb.connect()
    >>> k = {("email", "pe_" + "0" * 32): keyed_keys("email", "a@b.cn", b"k" * 32)}
    >>> write_keys(con, k), write_keys(con, k)
    (1, 0)
    """
    from autopersona.identity.keys import KEYS_DDL, KEYS_TABLE

    con.execute(KEYS_DDL)
    rows = [
        {
            "kind": kind,
            "vin": ps if kind == "vin" else None,
            "phone": ps if kind == "phone" else None,
            "email": ps if kind == "email" else None,
            "head": k.head,
            "tail": k.tail,
            "near": list(k.near),
        }
        for (kind, ps), k in keys.items()
    ]
    import pyarrow as pa

    s = pa.string()
    schema = pa.schema(
        [(c, s) for c in ("kind", "vin", "phone", "email", "head", "tail")]
        + [("near", pa.list_(s))]
    )
    con.register("_ap_new_keys", pa.Table.from_pylist(rows, schema=schema))
    try:
        inserted = con.execute(
            f"""INSERT INTO {KEYS_TABLE}
                SELECT n.kind, n.vin, n.phone, n.email, n.head, n.tail, n.near
                FROM _ap_new_keys n
                WHERE NOT EXISTS (
                    SELECT 1 FROM {KEYS_TABLE} k
                    WHERE k.kind = n.kind
                      AND coalesce(k.vin, k.phone, k.email) = coalesce(n.vin, n.phone, n.email))"""
        ).fetchall()
    finally:
        con.unregister("_ap_new_keys")
    return int(inserted[0][0])


# ============================================================================ live events
class VinPseudonyms:
    """The VIN pseudonym of live events, computed once per VIN (LRU cache of ``max_size``).

    Keyed HMAC is deterministic, so a VIN that arrives in clear on a live path (MQTT event,
    API) gets the very pseudonym ingestion gave it, before any lookup or log line sees it.

    >>> vp = VinPseudonyms(Pseudonymiser(b"k" * 32), max_size=2)
    >>> a = vp("LSVAA4182E2123456")
    >>> a == vp(" lsvaa4182e2123456") and a.startswith("pv_")
    True
    >>> vp.topic("ap/v1/vehicles/LSVAA4182E2123456/events") == f"ap/v1/vehicles/{a}/events"
    True
    >>> vp(a) == a  # a pseudonym stays itself
    True
    """

    def __init__(self, p: Pseudonymiser, max_size: int = 100_000) -> None:
        from collections import OrderedDict

        self.p = p
        self.max_size = max_size
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._topics: dict[str, str] = {}

    def __call__(self, vin: str) -> str:
        """The pseudonym of ``vin`` (cached)."""
        cache = self._cache
        got = cache.get(vin)
        if got is not None:
            cache.move_to_end(vin)
            return got
        ps = self.p.many("vin", [vin])[0] or vin
        cache[vin] = ps
        if len(cache) > self.max_size:
            cache.popitem(last=False)
        return ps

    def topic(self, topic: str | None) -> str | None:
        """``topic`` with its ``…/vehicles/{vin}/…`` segment pseudonymised (cached)."""
        if not topic:
            return topic
        got = self._topics.get(topic)
        if got is None:
            got = self._topic(topic)
            if len(self._topics) >= self.max_size:
                self._topics.clear()
            self._topics[topic] = got
        return got

    def _topic(self, topic: str) -> str:
        parts = topic.split("/")
        for i, part in enumerate(parts[:-1]):
            if part == "vehicles" and parts[i + 1]:
                parts[i + 1] = self(parts[i + 1])
                return "/".join(parts)
        return topic

    def raw(self, payload: bytes) -> bytes:
        """A refused raw payload with its identifiers pseudonymised (JSON fields or patterns)."""
        text = payload.decode("utf-8", errors="replace")
        return _pseudonymise_json(text, self.p).encode("utf-8")


def live_pseudonyms(
    settings: Settings | None = None, vault: Vault | None = None
) -> VinPseudonyms | None:
    """VIN pseudonyms for live paths when pseudonymisation is on (else ``None``).

    The key is checked (:func:`check_settings`).  With a ``vault`` a VIN first seen live is
    mapped too (so a head-unit message can reach it); without one only pseudonyms are
    computed (scoring harnesses, refused payloads).
    """
    from autopersona.settings import get_settings

    s = settings or get_settings()
    if not s.pseudonymise:
        return None
    return VinPseudonyms(from_settings(vault, s))


# ============================================================================ sending
class AddressResolver:
    """Clear addresses at send time, each read through the audited :class:`Vault`.

    A message's address is a pseudonym (``pp_…`` for SMS, ``pe_…`` for e-mail) or a
    head-unit topic with a ``pv_…`` segment; :meth:`resolve` returns the clear address a
    channel needs, or ``None`` when the vault has no mapping.  Every lookup is one audited
    :meth:`Vault.reidentify` (actor, purpose ``delivery:<channel>``, a fingerprint), so
    every send is on the audit trail.  With an ``audit_sink`` (the live engine's journal)
    the audit rows go there, written before the values are used, and mappings are cached
    for ``cache_s`` seconds (every use is still audited).  Addresses without a pseudonym
    pass unchanged.  Safe to share between threads (one lock around the vault).

    >>> v = Vault()
    >>> p = Pseudonymiser(b"k" * 32, v)
    >>> pe, pv = p.many("email", ["ann@example.org"])[0], p.many("vin", ["LSVAA4182E2123456"])[0]
    >>> r = AddressResolver(v, actor="test")
    >>> r.resolve("email", pe), r.resolve("head_unit", f"ap/vehicles/{pv}/headunit")
    ('ann@example.org', 'ap/vehicles/LSVAA4182E2123456/headunit')
    >>> r.resolve("sms", "pp_" + "0" * 32) is None
    True
    >>> v.con.execute("SELECT count(*), count(*) FILTER (WHERE found) FROM "
    ...               "reidentification_audit").fetchall()
    [(3, 2)]
    """

    def __init__(
        self,
        vault: Vault,
        *,
        actor: str = "dispatcher",
        audit_sink: Callable[[list[AuditRow]], None] | None = None,
        cache_s: float = 60.0,
    ) -> None:
        import threading

        self.vault = vault
        self.actor = actor
        self._lock = threading.Lock()
        self.audit_sink = audit_sink
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, str, str]] = {}

    def _read_journaled(self, channel: str, wanted: Sequence[str]) -> list[str | None]:
        """Values through the cache or one vault read; audit rows to ``audit_sink`` first.

        Mappings are kept ``cache_s`` seconds (an erasure reaches a running resolver within
        that time); every use is audited all the same, one row per pseudonym.
        """
        import time

        assert self.audit_sink is not None
        now = time.monotonic()
        cache = self._cache
        found: dict[str, tuple[str, str]] = {}
        misses: list[str] = []
        for ps in dict.fromkeys(wanted):
            hit = cache.get(ps)
            if hit is not None and hit[0] > now:
                found[ps] = (hit[1], hit[2])
            else:
                misses.append(ps)
        if misses:
            with self._lock:
                got = self.vault.lookup_many(misses)
            found.update(got)
            if self.cache_s > 0:
                if len(cache) > 200_000:
                    cache.clear()
                until = now + self.cache_s
                for ps, (kind, value) in got.items():
                    cache[ps] = (until, kind, value)
        at = datetime.now(UTC)
        purpose = f"delivery:{channel}"
        rows: list[AuditRow] = []
        for ps in wanted:
            got_ps = found.get(ps)
            rows.append(
                (
                    at,
                    self.actor,
                    purpose,
                    got_ps[0] if got_ps else None,
                    _fingerprint(ps),
                    got_ps is not None,
                )
            )
        self.audit_sink(rows)
        return [found[ps][1] if ps in found else None for ps in wanted]

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        actor: str = "dispatcher",
        vault: Vault | None = None,
    ) -> AddressResolver | None:
        """A resolver on ``vault`` (default: the configured one) when pseudonymisation is on."""
        from autopersona.settings import get_settings

        s = settings or get_settings()
        if not s.pseudonymise:
            return None
        check_settings(s)
        return cls(vault if vault is not None else Vault(s.vault), actor=actor)

    def _reidentify(self, pseudonym: str, channel: str) -> str | None:
        if self.audit_sink is not None:
            return self._read_journaled(channel, [pseudonym])[0]
        with self._lock:
            return self.vault.reidentify(pseudonym, actor=self.actor, purpose=f"delivery:{channel}")

    def resolve(self, channel: str, address: str) -> str | None:
        """The clear address behind ``address`` (unchanged when it holds no pseudonym)."""
        if is_pseudonym(address):
            return self._reidentify(address, channel)
        if "/" in address:
            parts = address.split("/")
            hit = [i for i, part in enumerate(parts) if is_pseudonym(part)]
            for i in hit:
                clear = self._reidentify(parts[i], channel)
                if clear is None:
                    return None
                parts[i] = clear
            return "/".join(parts)
        return address

    def resolve_many(self, channel: str, addresses: Sequence[str]) -> list[str | None]:
        """:meth:`resolve` for each address, with one audited vault transaction for all.

        Every pseudonym of every address is read and audited as :meth:`resolve` would
        (one audit row each, a repeated address included); only the round trips are shared.

        >>> v = Vault()
        >>> pv = Pseudonymiser(b"k" * 32, v).many("vin", ["LSVAA4182E2123456"])[0]
        >>> r = AddressResolver(v, actor="test")
        >>> r.resolve_many("head_unit", [f"a/{pv}/h", f"a/{pv}/h", "plain", "pv_" + "0" * 32])
        ['a/LSVAA4182E2123456/h', 'a/LSVAA4182E2123456/h', 'plain', None]
        >>> v.con.execute("SELECT count(*), count(*) FILTER (WHERE found) FROM "
        ...               "reidentification_audit").fetchall()
        [(3, 2)]
        """
        split: list[list[str] | None] = []
        wanted: list[str] = []
        for address in addresses:
            if is_pseudonym(address):
                split.append([address])
                wanted.append(address)
            elif "/" in address:
                parts = address.split("/")
                hit = [p for p in parts if is_pseudonym(p)]
                split.append(parts if hit else None)
                wanted.extend(hit)
            else:
                split.append(None)
        if not wanted:
            return list(addresses)
        if self.audit_sink is not None:
            values = self._read_journaled(channel, wanted)
        else:
            with self._lock:
                values = self.vault.reidentify_many(
                    wanted, actor=self.actor, purpose=f"delivery:{channel}"
                )
        clear = iter(values)
        out: list[str | None] = []
        for address, pieces in zip(addresses, split, strict=True):
            if pieces is None:
                out.append(address)
                continue
            new: list[str] = []
            ok = True
            for part in pieces:
                if is_pseudonym(part):
                    value = next(clear)
                    ok = ok and value is not None
                    new.append(value or "")
                else:
                    new.append(part)
            out.append("/".join(new) if ok else None)
        return out

    def close(self) -> None:
        """Close the vault."""
        with self._lock:
            self.vault.close()
