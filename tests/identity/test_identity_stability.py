"""Person ids are stable: across runs on the same data, and for existing persons as data grows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from idcheck import Fleet, Linked, links, pairwise_scores

from autopersona.identity import link_identities
from autopersona.identity.link import assign_person_ids, new_person_id
from autopersona.ingest.engine import ingest
from autopersona.store.warehouse import Warehouse


def _linked_at(wh: Warehouse) -> dict[str, datetime]:
    return dict(wh.con.execute("SELECT account_id, linked_at FROM identity_links").fetchall())


def test_same_data_same_ids(fleet: Fleet, fleet_wh: Warehouse, linked: Linked) -> None:
    with Warehouse(linked.path, read_only=True) as wh:
        first = links(wh)
    # A second warehouse, built independently from the same files: the same ids, no state
    # shared (ids derive from the cluster's smallest account id).
    rep = link_identities(fleet_wh, threshold=0.9, seed=42)
    assert links(fleet_wh) == first
    assert rep.new_persons == rep.persons
    before = _linked_at(fleet_wh)
    # Linking again in the same warehouse changes nothing and records no merge.
    again = link_identities(fleet_wh, threshold=0.9, seed=42, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert links(fleet_wh) == first
    assert (again.new_persons, again.merged_persons, again.split_persons) == (0, 0, 0)
    assert _linked_at(fleet_wh) == before  # linked_at moves only when the person id does
    assert fleet_wh.con.execute("SELECT count(*) FROM person_merges").fetchall()[0][0] == 0


def _add_accounts(wh: Warehouse) -> tuple[str, str]:
    """Add two accounts: one of an existing owner (same phone, written differently, another
    name), and one of a new person. Returns their ids."""
    phone = wh.con.execute(
        """SELECT phone FROM accounts
           WHERE source = 'owner' AND phone LIKE '+86 %' ORDER BY account_id LIMIT 1"""
    ).fetchall()[0][0]
    nsn = "".join(c for c in phone if c.isdigit())[2:]
    wh.con.execute(
        """INSERT INTO accounts (account_id, source, name, phone, email, city, created_at)
           VALUES (?, 'ecommerce', 'Someone Else', ?, NULL, 'Shanghai', TIMESTAMPTZ '2026-01-01'),
                  (?, 'ecommerce', 'Totally New', '+49 151 99999999', 'new.person@example.org',
                   'Berlin', TIMESTAMPTZ '2026-01-02')""",
        ["EC-ADDED-0001", f"{nsn[:3]}-{nsn[3:7]}-{nsn[7:]}", "EC-ADDED-0002"],
    )
    return "EC-ADDED-0001", "EC-ADDED-0002"


# adds accounts by SQL with a phone written differently (a clear phone next to pseudonyms
# would be another person): in clear (AUTOPERSONA_PSEUDONYMISE=0)
@pytest.mark.usefixtures("clear_identifiers")
def test_ids_survive_more_data(fleet: Fleet, tmp_path: Path) -> None:
    """Link the accounts that existed at a cut-off date, then all accounts plus two added ones:
    every person seen the first time keeps its id (or its retirement is recorded)."""
    accounts = pq.read_table(fleet.accounts)
    cutoff = pc.quantile(pc.cast(accounts["created_at"], pa.int64()), q=0.6)[0].as_py()
    early = accounts.filter(pc.less(pc.cast(accounts["created_at"], pa.int64()), cutoff))
    assert 0.5 * accounts.num_rows < early.num_rows < 0.7 * accounts.num_rows
    slice_path = tmp_path / "accounts.parquet"  # the file name names the target table
    pq.write_table(early, slice_path)

    with Warehouse(":memory:") as wh:
        ingest([slice_path, fleet.vehicles], wh)
        link_identities(wh)
        before = links(wh)
        assert len(before) == early.num_rows
        first_seen = dict(wh.con.execute("SELECT person_id, first_seen FROM persons").fetchall())

        ingest([fleet.accounts], wh)  # the rest of the accounts (known ones are duplicates)
        same_owner, new_person = _add_accounts(wh)
        rep = link_identities(wh)
        after = links(wh)
        merges = wh.con.execute(
            "SELECT person_id, into_person_id, kind FROM person_merges"
        ).fetchall()

    assert len(after) == accounts.num_rows + 2
    retired = {old for old, _, kind in merges if kind == "merge"}
    split = {old for old, _, kind in merges if kind == "split"}
    changed = {a for a, p in before.items() if after[a] != p}
    # Every change of id is explained by a recorded merge (the older id survives) ...
    for a in changed:
        assert before[a] in retired | split, a
        if before[a] in retired:
            survivor = after[a]
            assert survivor in first_seen and first_seen[survivor] <= first_seen[before[a]]
    print(
        f"early {len(before)} accounts, {len(set(before.values()))} persons; changed ids {len({before[a] for a in changed})}; merges {merges}"
    )
    # ... and they are rare: the early slice already holds most of each person.
    assert len({before[a] for a in changed}) <= 0.05 * len(set(before.values()))
    assert rep.new_persons >= 1 and rep.merged_persons == len(retired)
    # The added account of an existing owner joins that owner's person; the new one is new.
    truth = fleet.truth()
    assert after[same_owner] in set(before.values())
    assert after[new_person] not in set(before.values())
    truth_all = {**truth, same_owner: "?", new_person: "?"}
    p, r = pairwise_scores({a: after[a] for a in truth}, truth_all)
    assert p >= 0.95 and r >= 0.95


def test_assign_person_ids_merge_keeps_older_and_split_records() -> None:
    t0, t1 = datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC)
    prior = {"a": "P-new", "b": "P-old", "c": "P-old", "d": "P-x", "e": "P-x", "f": "P-x"}
    first_seen = {"P-new": t1, "P-old": t0, "P-x": t0}
    # a+b+c merge (P-old is older, so it survives); P-x splits into {d, e} and {f}.
    got = assign_person_ids([["a", "b", "c"], ["d", "e"], ["f"], ["g"]], prior, first_seen)
    assert got.ids[:2] == ["P-old", "P-x"]
    assert got.ids[2] == new_person_id("f") and got.ids[3] == new_person_id("g")
    assert sorted(got.merges) == [
        ("P-new", "P-old", "merge"),
        ("P-x", new_person_id("f"), "split"),
    ]
    assert got.new == 2


def test_new_person_id_avoids_collisions() -> None:
    pid = new_person_id("OWN-1")
    assert new_person_id("OWN-1", {pid}) != pid
    assert new_person_id("OWN-1", {pid}).startswith("PER-")
