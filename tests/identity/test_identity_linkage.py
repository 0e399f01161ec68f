"""Linkage scored against the simulator's truth: pairwise precision and recall.

Exact keys alone already link most accounts; the Splink stage must add recall (accounts
with a missing or mistyped phone, a typo'd or work e-mail, no VIN) without losing
precision. The figures are printed (``pytest -s``) and recorded as JUnit properties.
"""

from __future__ import annotations

from collections.abc import Callable

from idcheck import Fleet, Linked, links, pairwise_scores

from autopersona.identity import link_identities
from autopersona.store.warehouse import Warehouse

MIN_PRECISION = 0.95
MIN_RECALL = 0.95


def test_exact_then_splink_beats_exact_alone(
    clear_identifiers: None,
    fleet: Fleet,
    fleet_wh: Warehouse,
    linked_clear: Linked,
    record_property: Callable[[str, object], None],
) -> None:
    """In clear (``clear_identifiers``); the pseudonymised run is compared with this one
    below."""
    linked = linked_clear
    truth = fleet.truth()
    persons = len(set(truth.values()))
    assert 150 <= persons <= 300

    exact = link_identities(fleet_wh, probabilistic=False)
    p_exact, r_exact = pairwise_scores(links(fleet_wh), truth)
    full = linked.report
    with Warehouse(linked.path, read_only=True) as wh:
        p_full, r_full = pairwise_scores(links(wh), truth)

    summary = (
        f"{persons} true persons, {full.accounts} accounts | "
        f"exact only: precision {p_exact:.4f} recall {r_exact:.4f} ({exact.persons} persons, "
        f"{exact.seconds:.2f} s) | exact+Splink: precision {p_full:.4f} recall {r_full:.4f} "
        f"({full.persons} persons, {full.probabilistic_links} accounts linked only by Splink, "
        f"{full.candidate_pairs} pairs >= 0.9, {full.refused_merges} refused, {full.seconds:.2f} s)"
    )
    print(summary)
    for k, v in {
        "exact_precision": p_exact,
        "exact_recall": r_exact,
        "splink_precision": p_full,
        "splink_recall": r_full,
    }.items():
        record_property(k, round(v, 4))

    assert not exact.probabilistic and exact.candidate_pairs == 0
    assert p_full >= MIN_PRECISION and r_full >= MIN_RECALL, summary
    assert r_full > r_exact, summary  # Splink adds recall ...
    assert p_full >= p_exact - 0.005, summary  # ... at (almost) no cost in precision
    assert full.probabilistic_links > 0 and exact.probabilistic_links == 0
    assert full.exact_links + full.probabilistic_links + full.singletons == full.accounts
    # About as many persons as the truth has (a few singletons remain).
    assert persons <= full.persons <= persons * 1.05 < exact.persons * 1.05


def _partition(m: dict[str, str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for a, p in m.items():
        groups.setdefault(p, set()).add(a)
    return {frozenset(g) for g in groups.values()}


def test_splink_after_exact_merges_persons_and_records_it(
    fleet_wh: Warehouse, linked: Linked
) -> None:
    """Exact-only first, then the full linkage in the same warehouse: the persons Splink joins
    are merges of existing ids, the older id survives, and the partition is the same as a
    fresh full run's."""
    link_identities(fleet_wh, probabilistic=False)
    before = links(fleet_wh)
    first_seen = dict(fleet_wh.con.execute("SELECT person_id, first_seen FROM persons").fetchall())
    rep = link_identities(fleet_wh)
    after = links(fleet_wh)
    merges = fleet_wh.con.execute(
        "SELECT person_id, into_person_id, kind FROM person_merges"
    ).fetchall()
    with Warehouse(linked.path, read_only=True) as wh:
        assert _partition(after) == _partition(links(wh))
    assert rep.merged_persons == len(merges) > 0 and rep.new_persons == 0
    for old, into, kind in merges:
        assert kind == "merge"
        assert first_seen[into] <= first_seen[old]
        assert all(after[a] == into for a, p in before.items() if p == old)
    # Accounts whose person was not merged away keep their id.
    retired = {old for old, _, _ in merges}
    assert all(after[a] == p for a, p in before.items() if p not in retired)


def test_tables_are_consistent(linked_clear: Linked) -> None:
    """In clear: a VIN mistyped on an account (B for 8, S for 5) is matched to its vehicle by
    Splink's fuzzy comparison and dropped from the person; its pseudonym matches nothing."""
    linked = linked_clear
    rep = linked.report
    with Warehouse(linked.path, read_only=True) as wh:
        con = wh.con

        def one(sql: str) -> object:
            return con.execute(sql).fetchall()[0][0]

        assert one("SELECT count(*) FROM identity_links") == one("SELECT count(*) FROM accounts")
        assert one("SELECT count(*) FROM persons") == rep.persons
        assert (
            one(
                """SELECT count(*) FROM persons p JOIN
                     (SELECT person_id, count(*) n FROM identity_links GROUP BY 1) l
                     USING (person_id)
                   WHERE p.account_count <> l.n"""
            )
            == 0
        )
        methods = dict(
            con.execute("SELECT method, count(*) FROM identity_links GROUP BY 1").fetchall()
        )
        assert methods.get("exact", 0) == rep.exact_links
        assert methods.get("probabilistic", 0) == rep.probabilistic_links
        assert methods.get("singleton", 0) == rep.singletons
        assert (
            one(
                """SELECT count(*) FROM identity_links WHERE
                     (method = 'exact' AND match_probability <> 1.0)
                  OR (method = 'probabilistic' AND NOT match_probability BETWEEN 0.9 AND 1.0)
                  OR (method = 'singleton' AND match_probability IS NOT NULL)"""
            )
            == 0
        )
        # Every VIN on a person is a known vehicle; almost every person has at most one.
        vins = con.execute(
            "SELECT v, v IN (SELECT vin FROM vehicles) FROM persons, unnest(vins) t(v)"
        ).fetchall()
        assert vins and all(known for _, known in vins)
        assert one("SELECT count(*) FROM persons WHERE len(vins) > 1") <= 2  # type: ignore[operator]
        # first_seen is the earliest account creation of the person
        assert (
            one(
                """SELECT count(*) FROM persons p JOIN
                     (SELECT l.person_id, min(a.created_at) m FROM identity_links l
                      JOIN accounts a USING (account_id) GROUP BY 1) x USING (person_id)
                   WHERE p.first_seen <> x.m"""
            )
            == 0
        )
        # Splink's working tables stay out of the warehouse.
        names = [
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        ]
        assert not [n for n in names if "splink" in n]


def test_pseudonymised_linkage_decides_as_linkage_in_clear(
    fleet: Fleet,
    linked: Linked,
    linked_clear: Linked,
    record_property: Callable[[str, object], None],
) -> None:
    """Under the default pseudonymisation at ingest, the keyed comparison keys stored with
    the accounts' pseudonyms (identity.keys) let Splink find the near misses it finds in
    clear: the same persons, so the same precision and recall (≥ 0.95 both)."""
    truth = fleet.truth()
    with Warehouse(linked.path, read_only=True) as wh:
        pseudo_links = links(wh)
        phones = wh.sql("SELECT count(*) FILTER (WHERE starts_with(phone, 'pp_')) FROM accounts")
        n_keys = wh.sql("SELECT count(*) FROM identifier_keys")[0][0]
    with Warehouse(linked_clear.path, read_only=True) as wh:
        clear_links = links(wh)
    assert phones[0][0] > 0 and n_keys > 0  # it did run on pseudonyms
    p, r = pairwise_scores(pseudo_links, truth)
    pc, rc = pairwise_scores(clear_links, truth)
    print(f"pseudonymised: precision {p:.4f} recall {r:.4f} | clear: {pc:.4f} {rc:.4f}")
    record_property("pseudonymised_precision", round(p, 4))
    record_property("pseudonymised_recall", round(r, 4))
    assert p >= MIN_PRECISION and r >= MIN_RECALL

    # the same partition of accounts into persons
    def groups(lk: dict[str, str]) -> set[frozenset[str]]:
        by: dict[str, set[str]] = {}
        for account, person in lk.items():
            by.setdefault(person, set()).add(account)
        return {frozenset(g) for g in by.values()}

    assert groups(pseudo_links) == groups(clear_links)
