"""Pseudonymisation at ingest, followed through every later stage: no clear VIN, phone or
e-mail in any table, in the quarantine, in the outbox and delivered messages, or in the logs.

The fleet is ingested with ``AUTOPERSONA_PSEUDONYMISE=1``; then features, identity linkage,
the profile refresh, the strategy stage (batch and live route events), the transactional
outbox and a file sink run as the demo runs them, with every log record and every line the
stages print written to files.  The scan looks for the exact clear values of the source
files (and for anything shaped like one that is not a pseudonym).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from privcheck import Fleet
from rich.console import Console

from autopersona.privacy.pseudo import RAW_PATTERNS, is_pseudonym, scan_raw_identifiers
from autopersona.store.warehouse import Warehouse

KEY = "0123456789abcdef0123456789abcdef-test"


def _clear_in_file(path: Path, known: dict[str, set[str]]) -> list[str]:
    """``file: kind`` for each kind of clear identifier found in a text file."""
    text = path.read_text(encoding="utf-8", errors="replace")
    out = []
    for kind, values in known.items():
        shaped = [m for m in RAW_PATTERNS[kind].findall(text) if not is_pseudonym(m)]
        if any(v and v in text for v in values) or (kind != "phone" and shaped):
            out.append(f"{path.name}: {kind}")
    return out


def test_no_clear_identifier_in_any_table_outbox_or_log_after_the_whole_loop(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autopersona.delivery import deliver_pending, file_sink_config
    from autopersona.delivery.dispatch import WarehouseContacts, messages_for
    from autopersona.delivery.outbox import open_outbox
    from autopersona.features.build import build_features
    from autopersona.identity import link_identities
    from autopersona.ingest.engine import ingest
    from autopersona.store.profiles import open_store, refresh
    from autopersona.strategy.demo import demo_stage
    from autopersona.tags.report import data_end

    known = fleet.known_identifiers()
    assert all(known.values())
    monkeypatch.setenv("AUTOPERSONA_PSEUDONYMISE", "1")
    monkeypatch.setenv("AUTOPERSONA_PSEUDONYM_KEY", KEY)
    monkeypatch.setenv("AUTOPERSONA_VAULT", str(tmp_path / "vault.duckdb"))
    logs = tmp_path / "logs"
    logs.mkdir()
    handler = logging.FileHandler(logs / "autopersona.log", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with (logs / "console.txt").open("w", encoding="utf-8") as printed:
            console = Console(file=printed, width=200, color_system=None)
            with Warehouse(tmp_path / "wh.duckdb") as wh:
                rep = ingest([fleet.out / "tables"], wh)
                assert rep.loaded > 0 and rep.quarantined > 0
                logging.getLogger("autopersona.test").info("ingest report: %s", rep)
                build_features(wh)
                link_identities(wh, probabilistic=False)
                refresh(wh, open_store(warehouse=wh), as_of=data_end(wh), due_only=False)
                decisions = demo_stage(console, wh)
                sink = file_sink_config(str(logs / "messages.jsonl"))
                outbox = open_outbox(warehouse=wh)
                new = outbox.enqueue(messages_for(decisions, sink, WarehouseContacts(wh.con)))
                sent = deliver_pending(outbox, sink)
                for d in decisions:  # what a verbose run would log about each decision
                    logging.getLogger("autopersona.test").debug("decision %s", d)
                # every stage left rows: the scan covers them
                counts = {
                    t: wh.count(t)
                    for (t,) in wh.sql(
                        "SELECT table_name FROM information_schema.tables "
                        "WHERE table_type = 'BASE TABLE'"
                    )
                }
                for table in ("_quarantine", "tag_assignments", "strategy_decisions", "outbox"):
                    assert counts.get(table, 0) > 0, (table, counts)
                assert len(new) > 0 and sent.sent > 0
                vins = [r[0] for r in wh.sql("SELECT DISTINCT entity FROM tag_assignments")]
                assert vins and all(is_pseudonym(v) for v in vins if v.startswith("p"))
                found = scan_raw_identifiers(wh, known)
                shaped = scan_raw_identifiers(wh)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
    assert found == [], found
    # anything shaped like a VIN or e-mail that is not a pseudonym (phones: digit runs also
    # match timestamps and amounts, so they are checked by value only)
    assert [f for f in shaped if not f.endswith(": phone")] == [], shaped
    files = sorted(p for p in logs.iterdir() if p.is_file())
    assert {p.name for p in files} == {"autopersona.log", "console.txt", "messages.jsonl"}
    assert all(p.stat().st_size > 0 for p in files)
    assert [hit for p in files for hit in _clear_in_file(p, known)] == []
    # the messages name pseudonymous vehicles and persons only (a real SMS or e-mail channel
    # would re-identify its address through the audited vault at send time)
    sent_msgs = [json.loads(line) for line in (logs / "messages.jsonl").read_text().splitlines()]
    assert sent_msgs and all(m["vin"] is None or is_pseudonym(m["vin"]) for m in sent_msgs)
    # and the file scan does see a clear value when one is there
    leak = tmp_path / "leak.log"
    leak.write_text(f"sent to {sorted(known['email'])[0]} for {sorted(known['vin'])[0]}\n")
    assert _clear_in_file(leak, known) == ["leak.log: vin", "leak.log: email"]
