"""Pseudonymisation on the live and sending paths (on by default): events arrive with clear
VINs and are pseudonymised on arrival; clear addresses exist only inside the channel
adapters that need them, each re-identification audited in the vault."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from autopersona.delivery.channels.base import Channel
from autopersona.delivery.dispatch import Dispatcher
from autopersona.delivery.live import EventRejected, parse_event
from autopersona.delivery.outbox import DuckDBOutbox, OutboxMessage, SendResult
from autopersona.privacy.pseudo import (
    AUDIT_TABLE,
    AddressResolver,
    Pseudonymiser,
    Vault,
    VinPseudonyms,
    live_pseudonyms,
)
from autopersona.settings import Settings

KEY = "0123456789abcdef0123456789abcdef-live"
VIN = "LSVAA4182E2123456"


class Recording(Channel):
    """Records what the adapter was given."""

    def __init__(self, name: str, clear_address: bool) -> None:
        self.name = name
        self.clear_address = clear_address
        self.got: list[str] = []

    def send_batch(self, messages: Sequence[OutboxMessage]) -> list[SendResult]:
        self.got.extend(m.address for m in messages)
        return [SendResult.sent() for _ in messages]


def test_parse_event_pseudonymises_the_vin_once_per_vehicle() -> None:
    vp = VinPseudonyms(Pseudonymiser(KEY), max_size=2)
    pv = vp(VIN)
    ev = parse_event(
        f"p/vehicles/{VIN}/events",
        f'{{"event_id": "e1", "vin": "{VIN}", "type": "x"}}'.encode(),
        pseudonyms=vp,
    )
    assert ev["vin"] == pv == Pseudonymiser(KEY).pseudonym("vin", VIN)
    assert vp.topic(f"p/vehicles/{VIN}/events") == f"p/vehicles/{pv}/events"
    # a refusal names pseudonyms only
    with pytest.raises(EventRejected) as err:
        parse_event(f"p/vehicles/{VIN}/events", b'{"event_id": "e", "vin": "OTHER", "type": "x"}',
                    pseudonyms=vp)  # fmt: skip
    assert VIN not in str(err.value) and "OTHER" not in str(err.value)
    # LRU: bounded, the most recent VINs kept
    vp("A" * 17), vp("B" * 17)
    assert len(vp._cache) == 2 and VIN not in vp._cache


def test_live_pseudonyms_follow_the_setting_and_record_new_vins(tmp_path: Path) -> None:
    s = Settings(pseudonym_key=KEY, pseudonymise=False)  # type: ignore[arg-type]
    assert live_pseudonyms(s) is None
    vault = Vault(tmp_path / "vault.duckdb")
    vp = live_pseudonyms(Settings(pseudonym_key=KEY), vault)  # type: ignore[arg-type]
    assert vp is not None
    pv = vp(VIN)
    assert vault.reidentify(pv, actor="test", purpose="check") == VIN
    vault.close()


def test_dispatcher_reidentifies_only_for_clear_address_channels(tmp_path: Path) -> None:
    vault = Vault(tmp_path / "vault.duckdb")
    p = Pseudonymiser(KEY, vault)
    pv, pe = p.many("vin", [VIN])[0], p.many("email", ["ann@example.org"])[0]
    assert pv is not None and pe is not None
    ob = DuckDBOutbox(":memory:")
    msgs = [
        OutboxMessage("k1", "d1", "head_unit", f"ap/vehicles/{pv}/headunit", {"vin": pv}),
        OutboxMessage("k2", "d2", "email", pe, {}),
        OutboxMessage("k3", "d3", "sms", "pp_" + "0" * 32, {}),  # no mapping: refused
        OutboxMessage("k4", "d4", "file", pe, {}),  # a sink: stays pseudonymous
    ]
    ob.enqueue(msgs)
    chans = {
        "head_unit": Recording("head_unit", True),
        "email": Recording("email", True),
        "sms": Recording("sms", True),
        "file": Recording("file", False),
    }
    rep = Dispatcher(ob, chans, resolver=AddressResolver(vault, actor="test")).drain()
    assert (rep.sent, rep.dead) == (3, 1)
    assert chans["head_unit"].got == [f"ap/vehicles/{VIN}/headunit"]
    assert chans["email"].got == ["ann@example.org"]
    assert chans["sms"].got == [] and chans["file"].got == [pe]
    # the outbox keeps pseudonyms only; each read is audited without personal data
    stored = ob.con.execute("SELECT address FROM outbox").fetchall()
    assert VIN not in repr(stored) and "ann@" not in repr(stored)
    audit = vault.con.execute(f"SELECT actor, purpose, found FROM {AUDIT_TABLE}").fetchall()
    assert sorted(audit) == [
        ("test", "delivery:email", True),
        ("test", "delivery:head_unit", True),
        ("test", "delivery:sms", False),
    ]
    assert VIN not in repr(audit) and "ann" not in repr(audit)
    vault.close()


def test_journaled_resolver_audits_every_use_and_reads_the_vault_once() -> None:
    """With an audit sink (the live engine's journal) each use gets its audit row, written
    before the value is returned; the vault is read once per mapping until the cache ends;
    an unknown pseudonym is audited as not found."""
    vault = Vault()
    (pv,) = Pseudonymiser(b"k" * 32, vault).many("vin", ["LSVAA4182E2123456"])
    sink: list[list[tuple[object, ...]]] = []
    reads: list[int] = []
    lookup = vault.lookup_many

    def counting(ps: Sequence[str]) -> dict[str, tuple[str, str]]:
        reads.append(len(ps))
        return lookup(ps)

    vault.lookup_many = counting  # type: ignore[method-assign]
    r = AddressResolver(vault, actor="live:w1", audit_sink=sink.append, cache_s=60)
    topic = f"ap/vehicles/{pv}/headunit"
    assert (
        r.resolve_many("head_unit", [topic, topic])
        == ["ap/vehicles/LSVAA4182E2123456/headunit"] * 2
    )
    assert r.resolve("head_unit", topic) == "ap/vehicles/LSVAA4182E2123456/headunit"
    assert reads == [1]  # the second call came from the cache
    assert [len(rows) for rows in sink] == [2, 1]  # ...and was audited all the same
    _, actor, purpose, kind, _, found = sink[0][0]
    assert (actor, purpose, kind, found) == ("live:w1", "delivery:head_unit", "vin", True)
    assert r.resolve("head_unit", "pv_" + "0" * 32) is None
    assert sink[-1][0][3:] == (None, sink[-1][0][4], False)
    # nothing went to the vault's own audit table: the sink is the trail
    assert vault.con.execute("SELECT count(*) FROM reidentification_audit").fetchall() == [(0,)]
    r.cache_s = 0
    r._cache.clear()
    r.resolve("head_unit", topic)
    assert reads == [1, 1, 1]
