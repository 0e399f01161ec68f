"""Identity linkage: accounts (owner, app, e-commerce, dealer CRM) → persons.

:func:`link_identities` reads ``accounts``, normalises identifiers
(:mod:`~autopersona.identity.normalise`), links accounts by exact keys (same phone, VIN or
e-mail), then by a Splink model (:mod:`~autopersona.identity.probabilistic`) above a match
probability threshold, forms guarded connected components
(:mod:`~autopersona.identity.cluster`) and gives each a stable person id. It writes three
derived tables:

``identity_links``
    account_id, person_id, method (``exact`` | ``probabilistic`` | ``singleton``),
    match_probability (1.0 for exact, the best pair probability for probabilistic, NULL for
    singletons), linked_at (when the account got its current person id).
``persons``
    person_id, vins, sources, account_count, first_seen (earliest account creation).
``person_merges``
    person_id, into_person_id, kind (``merge`` | ``split``), recorded_at: how ids changed.

Stable ids
----------
A new person's id is derived from its smallest account id (``PER-`` + 12 hex digits of
its SHA-256), so two runs on the same data give the same ids without any state. Later runs
carry ids forward from ``identity_links``: a cluster keeps the id its accounts had; when
clusters holding several ids merge, the oldest person (earliest ``first_seen``, then
smallest id) keeps its id and the others are recorded as merged into it; when a person
splits, the part with most of its old accounts keeps the id and the rest get new ids,
recorded as splits.

Examples
--------
>>> from autopersona.store.warehouse import Warehouse
>>> with Warehouse(":memory:") as wh:
...     _ = wh.con.execute(
...         "INSERT INTO accounts (account_id, source, name, phone) VALUES "
...         "('OWN-1', 'owner', 'Gao Min', '+86 138 0013 8000'), "
...         "('EC-7', 'ecommerce', 'GAO min', '138-0013-8000')")
...     rep = link_identities(wh)
...     rep.accounts, rep.persons, rep.exact_links
...     wh.sql("SELECT count(DISTINCT person_id) FROM identity_links")
(2, 1, 2)
[(1,)]
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from autopersona.identity.cluster import GuardedUnionFind
from autopersona.identity.prepare import prepare_accounts
from autopersona.identity.probabilistic import SplinkSettings, predict_pairs
from autopersona.store.sqlbase import transaction
from autopersona.store.warehouse import Warehouse

__all__ = [
    "EXACT_KEYS",
    "LINKS_TABLE",
    "MERGES_TABLE",
    "PERSONS_TABLE",
    "IdAssignment",
    "LinkReport",
    "assign_person_ids",
    "link_identities",
    "new_person_id",
]

LINKS_TABLE = "identity_links"
PERSONS_TABLE = "persons"
MERGES_TABLE = "person_merges"
#: Exact keys, in the order their edges are applied.
EXACT_KEYS = ("phone", "vin", "email")

_DDL = (
    f"""CREATE TABLE IF NOT EXISTS {LINKS_TABLE} (
        account_id VARCHAR PRIMARY KEY,
        person_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        match_probability DOUBLE,
        linked_at TIMESTAMPTZ NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS {PERSONS_TABLE} (
        person_id VARCHAR PRIMARY KEY,
        vins VARCHAR[] NOT NULL,
        sources VARCHAR[] NOT NULL,
        account_count INTEGER NOT NULL,
        first_seen TIMESTAMPTZ
    )""",
    f"""CREATE TABLE IF NOT EXISTS {MERGES_TABLE} (
        person_id VARCHAR NOT NULL,
        into_person_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL
    )""",
)


@dataclass
class LinkReport:
    """What one linkage run did.

    Attributes
    ----------
    accounts
        Accounts read.
    persons
        Persons (clusters) written.
    exact_links
        Accounts in a multi-account person that share an exact key (phone, VIN, e-mail)
        with another account of it.
    probabilistic_links
        Accounts joined to their person only through Splink pairs.
    singletons
        Accounts that are a person on their own.
    candidate_pairs
        Splink pairs at or above the threshold (before the cannot-link guard).
    refused_merges
        Merges refused by the cannot-link guard (contradicting phones or VINs).
    ignored_keys
        Exact key values shared by more than ``max_key_group`` accounts, taken as
        placeholders and not used (neither as exact keys nor by the Splink model).
    ambiguous_keys
        Exact key values (VIN, e-mail) shared by groups that contradict each other, not used
        (their accounts are left to the probabilistic stage).
    new_persons, merged_persons, split_persons
        Person ids created, retired by a merge, and split off, relative to the previous run.
    threshold
        Match probability threshold.
    probabilistic
        Whether the Splink stage was trained and run (it is skipped when asked to, and
        when there are too few accounts to train on).
    seconds
        Wall time.
    notes
        What was skipped or fell back, in words.
    """

    accounts: int = 0
    persons: int = 0
    exact_links: int = 0
    probabilistic_links: int = 0
    singletons: int = 0
    candidate_pairs: int = 0
    refused_merges: int = 0
    ignored_keys: int = 0
    ambiguous_keys: int = 0
    new_persons: int = 0
    merged_persons: int = 0
    split_persons: int = 0
    threshold: float = 0.9
    probabilistic: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def new_person_id(smallest_account_id: str, taken: set[str] | None = None) -> str:
    """The id of a new person, derived from its smallest account id.

    Parameters
    ----------
    smallest_account_id
        Smallest account id of the cluster.
    taken
        Ids in use; on a (very unlikely) collision a counter is mixed into the hash.

    Examples
    --------
    >>> new_person_id("APP-1")
    'PER-...'
    >>> new_person_id("APP-1") == new_person_id("APP-1") != new_person_id("APP-2")
    True
    """
    taken = taken or set()
    salt = 0
    while True:
        text = smallest_account_id if salt == 0 else f"{smallest_account_id}#{salt}"
        pid = "PER-" + hashlib.sha256(text.encode()).hexdigest()[:12].upper()
        if pid not in taken:
            return pid
        salt += 1


@dataclass
class IdAssignment:
    """Person ids of a run's clusters and how they relate to the previous run's.

    Attributes
    ----------
    ids
        One person id per cluster, in cluster order.
    merges
        ``(old id, id now holding its accounts, kind)`` with kind ``merge`` (the old id is
        retired into an older person) or ``split`` (part of the old person got a new id).
    new
        Ids created in this run.
    """

    ids: list[str]
    merges: list[tuple[str, str, str]] = field(default_factory=list)
    new: int = 0


def assign_person_ids(
    clusters: Sequence[Sequence[str]],
    prior: Mapping[str, str],
    prior_first_seen: Mapping[str, datetime | None] | None = None,
) -> IdAssignment:
    """Person ids for ``clusters``, carried forward from ``prior`` where possible.

    Parameters
    ----------
    clusters
        Account ids per cluster.
    prior
        Account id → person id from the previous run (empty on the first run).
    prior_first_seen
        Person id → first_seen of the previous run; the oldest id survives a merge.

    Returns
    -------
    IdAssignment
        ``ids`` (one per cluster, in order), ``merges`` as (old id, surviving id, kind) and
        the number of ``new`` ids.

    Examples
    --------
    >>> a = assign_person_ids([["a", "b", "c"]], {"a": "P1", "b": "P1", "c": "P2"},
    ...                       {"P1": None, "P2": None})
    >>> a.ids, a.merges
    (['P1'], [('P2', 'P1', 'merge')])
    >>> assign_person_ids([["a"], ["b", "c"]], {"a": "P1", "b": "P1", "c": "P1"}).ids[1]
    'P1'
    """
    first_seen = prior_first_seen or {}
    # Which cluster inherits each old id: the one holding most of its accounts.
    holders: dict[str, Counter[int]] = defaultdict(Counter)
    for i, members in enumerate(clusters):
        for a in members:
            if a in prior:
                holders[prior[a]][i] += 1
    won: dict[int, list[str]] = defaultdict(list)
    for pid, counts in holders.items():
        won[min(counts, key=lambda i: (-counts[i], min(clusters[i])))].append(pid)
    far_future = datetime.max.replace(tzinfo=UTC)

    def age(pid: str) -> tuple[datetime, str]:
        fs = first_seen.get(pid)
        return (fs if fs is not None else far_future, pid)

    out = IdAssignment(ids=[""] * len(clusters))
    taken = set(prior.values())
    for i, pids in won.items():
        # Several old ids in one cluster: the oldest person keeps its id.
        keep, *retired = sorted(pids, key=age)
        out.ids[i] = keep
        out.merges.extend((old, keep, "merge") for old in retired)
    for i, members in enumerate(clusters):
        if out.ids[i]:
            continue
        pid = new_person_id(min(members), taken)
        taken.add(pid)
        out.ids[i] = pid
        out.new += 1
        lost = sorted({prior[a] for a in members if a in prior})
        out.merges.extend((old, pid, "split") for old in lost)
    return out


def _create_tables(wh: Warehouse) -> None:
    for ddl in _DDL:
        wh.con.execute(ddl)


def _prior(wh: Warehouse) -> tuple[dict[str, str], dict[str, datetime], dict[str, datetime]]:
    links = wh.con.execute(f"SELECT account_id, person_id, linked_at FROM {LINKS_TABLE}")
    prior: dict[str, str] = {}
    linked_at: dict[str, datetime] = {}
    for a, p, t in links.fetchall():
        prior[str(a)] = str(p)
        linked_at[str(a)] = t
    first = wh.con.execute(f"SELECT person_id, first_seen FROM {PERSONS_TABLE}").fetchall()
    return prior, linked_at, {str(p): t for p, t in first if t is not None}


def _key_groups(
    records: Sequence[Mapping[str, Any]], key: str, max_group: int
) -> tuple[list[list[str]], set[str]]:
    """Accounts sharing each value of ``key``, and the values shared too widely to trust."""
    groups: dict[str, list[str]] = defaultdict(list)
    for r in records:
        v = r.get(key)
        if v:
            groups[str(v)].append(str(r["unique_id"]))
    kept = [sorted(m) for _, m in sorted(groups.items()) if 2 <= len(m) <= max_group]
    placeholders = {v for v, m in groups.items() if len(m) > max_group}
    return kept, placeholders


# Prepared columns derived from each exact key (cleared with it when it is a placeholder).
_DERIVED = {
    "phone": ("phone_head", "phone_tail", "phone_near"),
    "vin": ("vin_near",),
    "email": ("email_local", "email_near"),
}


def _without_placeholders(
    records: list[dict[str, Any]], placeholders: Mapping[str, set[str]]
) -> list[dict[str, Any]]:
    if not any(placeholders.values()):
        return records
    out = []
    for r in records:
        cleared = {
            col: None
            for key, values in placeholders.items()
            if r.get(key) in values
            for col in (key, *_DERIVED[key])
        }
        out.append({**r, **cleared} if cleared else r)
    return out


def _known_vins(wh: Warehouse) -> set[str]:
    from autopersona.identity.normalise import normalise_vin

    rows = wh.con.execute("SELECT DISTINCT vin FROM vehicles").fetchall()
    return {v for (raw,) in rows if (v := normalise_vin(raw))}


def link_identities(
    wh: Warehouse,
    *,
    threshold: float = 0.9,
    seed: int = 42,
    probabilistic: bool = True,
    max_key_group: int = 25,
    settings: SplinkSettings | None = None,
    now: datetime | None = None,
) -> LinkReport:
    """Link the warehouse's accounts into persons and write the identity tables.

    Parameters
    ----------
    wh
        Warehouse with the ``accounts`` table; ``identity_links``, ``persons`` and
        ``person_merges`` are created if absent and ``identity_links``/``persons``
        replaced (ids carried forward, see the module doc).
    threshold
        Minimum Splink match probability of a probabilistic link, in (0, 1].
    seed
        Seed of Splink's u-sampling (the only random step).
    probabilistic
        Run the Splink stage; ``False`` links by exact keys only.
    max_key_group
        Exact key values shared by more accounts than this are taken as placeholders
        (``00000000000``, ``noemail@shop.cn``) and not used.
    settings
        Full Splink settings; overrides ``seed`` when given.
    now
        Time stamp of the run (default: now, UTC).

    Returns
    -------
    LinkReport
        Counts and wall time.

    Raises
    ------
    ValueError
        If ``threshold`` is not in (0, 1].
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    t0 = time.perf_counter()
    now = now or datetime.now(UTC)
    _create_tables(wh)
    raw_records = prepare_accounts(wh)
    rep = LinkReport(accounts=len(raw_records), threshold=threshold)
    # Values shared by too many accounts are placeholders: drop them before anything uses them.
    placeholders = {k: _key_groups(raw_records, k, max_key_group)[1] for k in EXACT_KEYS}
    rep.ignored_keys = sum(len(v) for v in placeholders.values())
    records = _without_placeholders(raw_records, placeholders)
    by_id = {str(r["unique_id"]): r for r in records}

    uf = GuardedUnionFind(by_id)
    exact_partner: dict[str, set[str]] = defaultdict(set)
    for key in EXACT_KEYS:
        groups = _key_groups(records, key, max_key_group)[0]
        ambiguous = {tuple(g) for g in uf.union_groups(groups, key)}
        rep.ambiguous_keys += len(ambiguous)
        for members in groups:
            if tuple(members) not in ambiguous:
                for a in members:
                    exact_partner[a].update(members)

    best_prob: dict[str, float] = {}
    pair_prob: list[tuple[str, str, float]] = []
    if probabilistic:
        prediction = predict_pairs(
            records,
            threshold=threshold,
            settings=settings or SplinkSettings(seed=seed),
        )
        rep.probabilistic = prediction.trained
        rep.notes.extend(prediction.notes)
        pairs = prediction.pairs
        rep.candidate_pairs = len(pairs)
        for p in pairs:
            uf.union(p.left, p.right, "probabilistic")
            pair_prob.append((p.left, p.right, p.match_probability))
    rep.refused_merges = uf.refused

    clusters = uf.components()
    cluster_of = {a: i for i, members in enumerate(clusters) for a in members}
    for a, b, pr in pair_prob:
        if cluster_of[a] == cluster_of[b]:
            best_prob[a] = max(best_prob.get(a, 0.0), pr)
            best_prob[b] = max(best_prob.get(b, 0.0), pr)

    prior, prior_linked_at, prior_first_seen = _prior(wh)
    assignment = assign_person_ids(clusters, prior, prior_first_seen)
    rep.persons = len(clusters)
    rep.new_persons = assignment.new
    rep.merged_persons = sum(1 for *_, kind in assignment.merges if kind == "merge")
    rep.split_persons = sum(1 for *_, kind in assignment.merges if kind == "split")

    links: list[dict[str, Any]] = []
    for i, members in enumerate(clusters):
        pid = assignment.ids[i]
        for a in members:
            prob: float | None
            if len(members) == 1:
                method, prob = "singleton", None
            elif any(b != a and cluster_of[b] == i for b in exact_partner.get(a, ())):
                method, prob = "exact", 1.0
            else:
                method, prob = "probabilistic", best_prob.get(a)
            kept = prior.get(a) == pid
            links.append(
                {
                    "account_id": a,
                    "person_id": pid,
                    "method": method,
                    "match_probability": prob,
                    "linked_at": prior_linked_at[a] if kept else now,
                }
            )
    rep.exact_links = sum(1 for r in links if r["method"] == "exact")
    rep.probabilistic_links = sum(1 for r in links if r["method"] == "probabilistic")
    rep.singletons = sum(1 for r in links if r["method"] == "singleton")

    known = _known_vins(wh)
    persons: list[dict[str, Any]] = []
    for i, members in enumerate(clusters):
        pid = assignment.ids[i]
        vins = sorted({str(by_id[a]["vin"]) for a in members if by_id[a]["vin"]})
        if known and any(v in known for v in vins):
            vins = [v for v in vins if v in known]  # drop mistyped copies of a known VIN
        created = [by_id[a]["created_at"] for a in members if by_id[a]["created_at"]]
        firsts = [*created, *([prior_first_seen[pid]] if pid in prior_first_seen else [])]
        persons.append(
            {
                "person_id": pid,
                "vins": vins,
                "sources": sorted({str(by_id[a]["source"]) for a in members if by_id[a]["source"]}),
                "account_count": len(members),
                "first_seen": min(firsts) if firsts else None,
            }
        )
    _write(wh, links, persons, assignment.merges, now)
    rep.seconds = time.perf_counter() - t0
    return rep


_LINKS_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.string()),
        pa.field("person_id", pa.string()),
        pa.field("method", pa.string()),
        pa.field("match_probability", pa.float64()),
        pa.field("linked_at", pa.timestamp("us", tz="UTC")),
    ]
)
_PERSONS_SCHEMA = pa.schema(
    [
        pa.field("person_id", pa.string()),
        pa.field("vins", pa.list_(pa.string())),
        pa.field("sources", pa.list_(pa.string())),
        pa.field("account_count", pa.int32()),
        pa.field("first_seen", pa.timestamp("us", tz="UTC")),
    ]
)


def _write(
    wh: Warehouse,
    links: list[dict[str, Any]],
    persons: list[dict[str, Any]],
    merges: list[tuple[str, str, str]],
    now: datetime,
) -> None:
    con = wh.con
    con.register("_identity_links_new", pa.Table.from_pylist(links, schema=_LINKS_SCHEMA))
    con.register("_persons_new", pa.Table.from_pylist(persons, schema=_PERSONS_SCHEMA))
    try:
        with transaction(con):
            con.execute(f"DELETE FROM {LINKS_TABLE}")
            con.execute(f"INSERT INTO {LINKS_TABLE} SELECT * FROM _identity_links_new")
            con.execute(f"DELETE FROM {PERSONS_TABLE}")
            con.execute(f"INSERT INTO {PERSONS_TABLE} SELECT * FROM _persons_new")
            if merges:
                con.executemany(
                    f"INSERT INTO {MERGES_TABLE} VALUES (?, ?, ?, ?)",
                    [(old, into, kind, now) for old, into, kind in merges],
                )
    finally:
        con.unregister("_identity_links_new")
        con.unregister("_persons_new")
