"""Bad and degenerate input: empty table, one account, accounts without identifiers,
placeholder keys, contradicting keys, tiny data Splink cannot train on."""

from __future__ import annotations

from typing import Any

import pytest

from autopersona.identity import link_identities
from autopersona.identity.cluster import GuardedUnionFind, within_one_edit
from autopersona.store.warehouse import Warehouse

COLS = ("account_id", "source", "name", "phone", "email", "vin", "birth_year", "city")


def _insert(wh: Warehouse, rows: list[tuple[Any, ...]]) -> None:
    wh.con.executemany(
        f"INSERT INTO accounts ({', '.join(COLS)}) VALUES ({', '.join('?' * len(COLS))})",
        [list(r) + [None] * (len(COLS) - len(r)) for r in rows],
    )


def _persons(wh: Warehouse) -> dict[str, str]:
    return dict(wh.con.execute("SELECT account_id, person_id FROM identity_links").fetchall())


def test_empty_accounts_table(wh: Warehouse) -> None:
    rep = link_identities(wh)
    assert (rep.accounts, rep.persons, rep.exact_links, rep.probabilistic_links) == (0, 0, 0, 0)
    assert not rep.probabilistic and rep.notes
    for table in ("identity_links", "persons", "person_merges"):
        assert wh.con.execute(f"SELECT count(*) FROM {table}").fetchall() == [(0,)]


def test_single_account(wh: Warehouse) -> None:
    _insert(wh, [("OWN-1", "owner", "Gao Min", "13800138000", None, "LZYP800C1LW100003")])
    rep = link_identities(wh)
    assert (rep.accounts, rep.persons, rep.singletons) == (1, 1, 1)
    (row,) = wh.con.execute("SELECT method, match_probability FROM identity_links").fetchall()
    assert row == ("singleton", None)
    assert wh.con.execute("SELECT vins, account_count FROM persons").fetchall() == [
        (["LZYP800C1LW100003"], 1)
    ]


def test_accounts_without_identifiers_stay_apart(wh: Warehouse) -> None:
    # e.g. the Hillstrom e-commerce customers: an id and nothing to link on
    _insert(wh, [(f"hillstrom-{i}", "ecommerce") for i in range(500)])
    _insert(wh, [("EC-a", "ecommerce", "", "  ", "not-an-email"), ("EC-b", "ecommerce", " ")])
    rep = link_identities(wh)
    assert rep.persons == rep.accounts == rep.singletons == 502
    assert not rep.probabilistic  # nothing to train on; said in the notes
    assert rep.notes and "too few" in rep.notes[0]


def test_exact_keys_link_across_formats(wh: Warehouse) -> None:
    _insert(
        wh,
        [
            ("OWN-1", "owner", "Gao Min", "+86 138 0013 8000", None, "LZYP800C1LW100003"),
            ("APP-1", "app", "GAO MIN", None, "Gao.Min@126.COM ", "lzyp800c1lw1ooo03"),
            ("EC-1", "ecommerce", "Min Gao", "138-0013-8000", "gao.min@126.com"),
            ("EC-2", "ecommerce", "Li Na", "+86 139 1234 5678", None),
        ],
    )
    rep = link_identities(wh)
    got = _persons(wh)
    assert got["OWN-1"] == got["APP-1"] == got["EC-1"] != got["EC-2"]
    assert rep.exact_links == 3 and rep.persons == 2


def test_placeholder_values_link_nothing(wh: Warehouse) -> None:
    # 30 customers typed the shop's hotline and a dummy address; they are not one person
    rows = [
        (
            f"EC-{i:02d}",
            "ecommerce",
            f"Person {chr(65 + i % 26)}{i}",
            "400-820-8820",
            "none@shop.cn",
        )
        for i in range(30)
    ]
    _insert(wh, rows)
    rep = link_identities(wh, max_key_group=25)
    assert rep.ignored_keys == 2
    assert rep.persons == 30


def test_ambiguous_email_links_neither_person(wh: Warehouse) -> None:
    # two people whose names make the same address; a third account has only that address
    _insert(
        wh,
        [
            ("OWN-1", "owner", "Wu Haoran", "13911112222", "haoran.wu@163.com"),
            ("OWN-2", "owner", "Wu Haoran", "13733334444", "haoran.wu@163.com"),
            ("EC-3", "ecommerce", "Wu Haoran", None, "haoran.wu@163.com"),
        ],
    )
    rep = link_identities(wh, probabilistic=False)
    got = _persons(wh)
    assert len(set(got.values())) == 3
    assert rep.ambiguous_keys == 1


def test_vin_of_a_resold_car_does_not_merge_owners(wh: Warehouse) -> None:
    vin = "LZYP800C1LW100003"
    _insert(
        wh,
        [
            ("OWN-1", "owner", "Gao Min", "13800138000", None, vin),
            ("OWN-2", "owner", "John Smith", "+1 213 555 1234", None, vin),
            ("CRM-2", "dealer_crm", "Smith, John", "213-555-1234", None, vin, None, "LA"),
        ],
    )
    link_identities(wh, probabilistic=False)
    got = _persons(wh)
    assert got["OWN-2"] == got["CRM-2"] != got["OWN-1"]


def test_small_data_trains_or_skips_without_error(wh: Warehouse) -> None:
    fam = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang")
    giv = ("Wei", "Fang", "Na", "Min", "Jing")
    names = [f"{f} {g}" for f in fam for g in giv]
    rows = [(f"APP-{i:02d}", "app", n, None, None) for i, n in enumerate(names)]  # names only
    _insert(wh, rows)
    rep = link_identities(wh)
    assert rep.probabilistic and rep.persons == 30
    assert any("no pairs" in n for n in rep.notes)


def test_threshold_is_validated(wh: Warehouse) -> None:
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            link_identities(wh, threshold=bad)


def test_guard_tolerates_one_mistyped_digit() -> None:
    assert within_one_edit("+8613800138000", "+8613800138009")
    assert within_one_edit("+8613800138000", "+861380013800")
    assert not within_one_edit("+8613800138000", "+8613800139009")
    uf = GuardedUnionFind(
        {
            "a": {"phone": "+8613800138000"},
            "b": {"phone": "+8613800138009"},
            "c": {"phone": "+8613911112222"},
        }
    )
    assert uf.union("a", "b", "probabilistic")
    assert not uf.union("a", "c", "probabilistic")
    assert uf.union("a", "c", "phone")  # a same-phone edge is never refused
    assert uf.refused == 1
