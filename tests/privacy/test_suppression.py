"""Re-delivered data of an erased person is quarantined at ingest, with the reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from autopersona.ingest.engine import ingest_file
from autopersona.privacy.erase import erase_person
from autopersona.store.warehouse import Warehouse


def _accounts(path: Path, rows: list[dict[str, object]]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_erased_identifiers_are_quarantined_when_they_come_back(tmp_path: Path) -> None:
    with Warehouse(tmp_path / "wh.duckdb") as wh:
        first = _accounts(
            tmp_path / "accounts.csv",
            [
                {"account_id": "A1", "source": "owner", "vin": "V1", "email": "ann@example.org"},
                {"account_id": "A2", "source": "owner", "vin": "V2", "email": "bob@example.org"},
            ],
        )
        assert ingest_file(wh, first, table="accounts").targets[0].loaded == 2
        erase_person(wh, "A1", "REQ-1")
        assert wh.sql("SELECT account_id FROM accounts") == [("A2",)]
        # the CRM re-sends Ann under a new account id, with her e-mail and car
        again = _accounts(
            tmp_path / "accounts_again.csv",
            [
                {"account_id": "A9", "source": "owner", "vin": "V1", "email": "ann@example.org"},
                {"account_id": "A3", "source": "app", "vin": "V3", "email": "cy@example.org"},
            ],
        )
        rep = ingest_file(wh, again, table="accounts").targets[0]
        assert (rep.read, rep.loaded, rep.quarantined) == (2, 1, 1)
        assert sorted(r[0] for r in wh.sql("SELECT account_id FROM accounts")) == ["A2", "A3"]
        ((field, reason),) = wh.sql(
            "SELECT field, reason FROM _quarantine WHERE reason LIKE '%erased person%'"
        )
        assert field in ("vin", "email") and "erasure suppression list" in reason
        assert "ann@example.org" not in reason
        # the quarantine keeps no copy of the erased person's data
        raws = " ".join(str(r[0]) for r in wh.sql("SELECT raw FROM _quarantine"))
        assert "ann@example.org" not in raws
