"""The JSON API on a demo warehouse, through Starlette's test client (ASGI, in process)."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from autopersona.api.app import create_app
from autopersona.api.config import ApiSettings
from autopersona.api.models import Profile
from autopersona.ingest.engine import ingest
from autopersona.store.profiles import DuckDBProfileStore, parse_as_of
from autopersona.store.warehouse import Warehouse
from autopersona.tags.spec import load_catalogue

from .apicheck import CAMPAIGN, hdr


def _wh(client: TestClient) -> Warehouse:
    """The warehouse the app has open (DuckDB allows one configuration per process)."""
    wh: Warehouse = client.app.state.ap.backend.warehouse()  # type: ignore[attr-defined]
    return wh


def _vins(client: TestClient, keys: dict[str, str]) -> list[str]:
    r = client.post(
        "/v1/audiences/sample",
        json={"expression": "isnull(l1_vehicle_tier) or not isnull(l1_vehicle_tier)", "limit": 100},
        headers=hdr(keys["read:profiles"]),
    )
    assert r.status_code == 200, r.text
    return list(r.json()["entities"])


def test_health_and_ping(client: TestClient, keys: dict[str, str]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    for k in keys.values():
        assert client.get("/v1/ping", headers=hdr(k)).json() == {"ok": True}
    r = client.get("/v1/ping", headers={"Authorization": f"Bearer {keys['write:events']}"})
    assert r.status_code == 200


def test_profile_matches_the_store(
    client: TestClient, keys: dict[str, str], settings: ApiSettings, demo_db: Path
) -> None:
    vins = _vins(client, keys)
    # 8 vehicles, linked to the same people with pseudonyms (the default) as in clear
    assert len(vins) == 8
    vin = vins[0]
    r = client.get(f"/v1/profiles/vin/{vin}", headers=hdr(keys["read:profiles"]))
    assert r.status_code == 200
    body = r.json()
    Profile.model_validate(body)  # the fast path's JSON has the published shape
    assert body["kind"] == "vin" and body["entities"] == [vin] and body["as_of"] is None
    got = {t["tag_id"]: (t["value"], t["reasons"]) for t in body["tags"]}
    ps = DuckDBProfileStore(_wh(client).con.cursor())
    want = ps.profile_show(vin)
    hist = ps.history(vin)
    # an as-of between the two refreshes gives the versions current then
    first = hist["valid_from"].min()
    mid = first + (hist["valid_from"].max() - first) / 2
    want_mid = ps.profile_show(vin, as_of=mid.to_pydatetime())
    assert got == {r.tag_id: (r.value, json.loads(r.reasons)) for r in want.itertuples()}
    assert all(isinstance(t["reasons"], dict) for t in body["tags"])
    r = client.get(
        f"/v1/profiles/vin/{vin}", params={"as_of": mid.isoformat()}, headers=hdr(keys["admin"])
    )
    assert r.status_code == 200
    assert {t["tag_id"]: t["value"] for t in r.json()["tags"]} == dict(
        zip(want_mid["tag_id"], want_mid["value"], strict=True)
    )
    r = client.get(f"/v1/profiles/vin/{vin}/history", headers=hdr(keys["read:profiles"]))
    assert len(r.json()) == len(hist)
    r = client.get(
        f"/v1/profiles/vin/{vin}/history",
        params={"tag_id": "l1_vehicle_tier"},
        headers=hdr(keys["read:profiles"]),
    )
    assert {t["tag_id"] for t in r.json()} == {"l1_vehicle_tier"}


def test_profile_errors(client: TestClient, keys: dict[str, str]) -> None:
    h = hdr(keys["read:profiles"])
    vin = _vins(client, keys)[0]
    r = client.get(f"/v1/profiles/vin/{vin}", params={"as_of": "2001-01-01"}, headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get(f"/v1/profiles/vin/{vin}", params={"as_of": "yesterday"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert "as_of" in r.json()["error"]["message"]
    r = client.get("/v1/profiles/vin/NO-SUCH-VIN", headers=h)
    assert r.status_code == 404 and "NO-SUCH-VIN" in r.json()["error"]["message"]
    r = client.get("/v1/profiles/truck/x", headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = client.get("/v1/profiles/person/PER-000000000000", headers=h)
    assert r.status_code == 404


def test_person_profile_joins_vins_and_accounts(
    client: TestClient, keys: dict[str, str], demo_db: Path
) -> None:
    con = _wh(client).con.cursor()
    pid, vins = con.execute(
        "SELECT person_id, vins FROM persons WHERE len(vins) > 0 LIMIT 1"
    ).fetchall()[0]
    accounts = [
        a
        for (a,) in con.execute(
            "SELECT account_id FROM identity_links WHERE person_id = ?", [pid]
        ).fetchall()
    ]
    r = client.get(f"/v1/profiles/person/{pid}", headers=hdr(keys["read:profiles"]))
    assert r.status_code == 200
    body = r.json()
    assert set(body["entities"]) == set(vins) | set(accounts)
    kinds = {t["entity_type"] for t in body["tags"]}
    assert "vin" in kinds
    assert {t["entity"] for t in body["tags"]} <= set(body["entities"])


def test_audience_count_sample_export(
    client: TestClient, keys: dict[str, str], demo_db: Path
) -> None:
    h = hdr(keys["read:profiles"])
    expr = "l1_vehicle_tier in ['luxury', 'mid'] or l1_energy_type == 'BEV'"
    cur = (
        _wh(client)
        .con.cursor()
        .execute(
            "SELECT entity, tag_id, value FROM tag_assignments "
            "WHERE entity_type = 'vin' AND valid_to IS NULL"
        )
        .df()
    )
    wide = cur.pivot(index="entity", columns="tag_id", values="value")
    want = wide[
        wide["l1_vehicle_tier"].isin(["luxury", "mid"]) | (wide["l1_energy_type"] == "BEV")
    ].index
    r = client.post("/v1/audiences/count", json={"expression": expr}, headers=h)
    assert r.status_code == 200
    assert r.json()["count"] == len(want) and r.json()["total"] == len(wide)
    q = {"expression": expr, "limit": 3, "seed": 7}
    s1 = client.post("/v1/audiences/sample", json=q, headers=h).json()
    s2 = client.post("/v1/audiences/sample", json=q, headers=h).json()
    assert s1["entities"] == s2["entities"]
    assert len(s1["entities"]) == min(3, len(want)) and set(s1["entities"]) <= set(want)
    r = client.post("/v1/audiences/export", json={"expression": expr}, headers=h)
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert sorted(x["entity"] for x in rows) == sorted(want)
    r2 = client.get("/v1/audiences/export.csv", params={"expression": expr}, headers=h)
    assert r2.text == r.text
    # customers: the commerce tags
    r = client.post(
        "/v1/audiences/count",
        json={"expression": "not isnull(lifecycle_stage)", "entity_type": "customer_id"},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["count"] > 0


@pytest.mark.parametrize(
    ("expression", "column"),
    [
        ("l1_vehicle_tier ==", 19),
        ("no_such_tag == 'x'", 1),
        ("l1_vehicle_tier == 'luxury' and bogus > 1", 33),
        ("__import__('os')", 1),
        ("prev(l1_vehicle_tier) == 'mid'", 1),
    ],
)
def test_bad_expression(
    client: TestClient, keys: dict[str, str], expression: str, column: int
) -> None:
    r = client.post(
        "/v1/audiences/count", json={"expression": expression}, headers=hdr(keys["admin"])
    )
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_expression"
    assert err["details"]["column"] == column


def test_tag_catalogue(client: TestClient, keys: dict[str, str]) -> None:
    h = hdr(keys["read:profiles"])
    cat = load_catalogue()
    r = client.get("/v1/tags", headers=h)
    assert sorted(t["id"] for t in r.json()) == sorted(cat.tags)
    r = client.get("/v1/tags", params={"tier": "L1"}, headers=h)
    assert {t["tier"] for t in r.json()} == {"L1"}
    r = client.get("/v1/tags/l1_vehicle_tier", headers=h)
    assert r.json()["values"] == ["luxury", "mid", "economy"]
    assert r.json()["catalogue_version"] == cat.version
    assert client.get("/v1/tags/nope", headers=h).json()["error"]["code"] == "not_found"


def _feedback_rows() -> list[dict[str, object]]:
    base = {"person_id": "PER-X", "campaign_id": "c-ingest", "arm": "treatment", "channel": "app"}
    return [
        {**base, "event_id": "i1", "ts": "2026-01-10T10:00:00Z", "event_type": "sent"},
        {**base, "event_id": "i2", "ts": "2026-01-10T10:05:00Z", "event_type": "clicked"},
        {**base, "event_id": "i1", "ts": "2026-01-10T10:00:00Z", "event_type": "sent"},  # dup
        {**base, "event_id": "i3", "ts": "2026-01-10T10:06:00Z", "event_type": "teleported"},
        {**base, "event_id": "i4", "ts": "not a time", "event_type": "sent"},
        {
            **base,
            "event_id": "i5",
            "ts": "2026-01-10T10:07:00Z",
            "event_type": "converted",
            "value": -5,
        },
        {**base, "event_id": "i2", "ts": "2026-01-10T10:09:00Z", "event_type": "visited"},  # key
    ]


def test_batch_events_follow_the_file_ingestion_rules(
    client: TestClient, keys: dict[str, str], tmp_path: Path
) -> None:
    rows = _feedback_rows()
    r = client.post(
        "/v1/events/marketing_feedback", json={"rows": rows}, headers=hdr(keys["write:events"])
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["read"] == len(rows) == got["loaded"] + got["duplicates"] + got["quarantined"]
    # the same rows as a file through `autopersona ingest` give the same counts and reasons
    f = tmp_path / "marketing_feedback.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in rows))
    with Warehouse(":memory:") as wh:
        rep = ingest([f], wh).by_table()["marketing_feedback"]
    assert (got["loaded"], got["duplicates"], got["quarantined"]) == (
        rep.loaded,
        rep.duplicates,
        rep.quarantined,
    )
    assert got["reasons"] == rep.reasons
    assert got["quarantined"] == 4 and got["duplicates"] == 1
    assert {q["row"] for q in got["quarantine"]} == {4, 5, 6, 7}
    assert any(q["field"] == "event_type" for q in got["quarantine"])
    assert all(q["reason"] for q in got["quarantine"])
    # posting again: everything already loaded is a duplicate, nothing new
    again = client.post(
        "/v1/events/marketing_feedback", json={"rows": rows[:2]}, headers=hdr(keys["admin"])
    ).json()
    assert (again["loaded"], again["duplicates"]) == (0, 2)


def test_batch_event_errors(
    client: TestClient, keys: dict[str, str], settings: ApiSettings
) -> None:
    h = hdr(keys["write:events"])
    r = client.post("/v1/events/no_table", json={"rows": [{"a": 1}]}, headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.post("/v1/events/pois", json={"rows": []}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = client.post("/v1/events/pois", json={"rows": [{"name": "x"}]}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_batch"
    assert "missing required column" in r.json()["error"]["message"]
    r = client.post(
        "/v1/events/pois", content=b"not json", headers={**h, "content-type": "application/json"}
    )
    assert r.status_code == 422
    big = {"rows": [{"poi_id": str(i)} for i in range(settings.api_max_rows + 1)]}
    r = client.post("/v1/events/pois", json=big, headers=h)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_body_limit(settings: ApiSettings, keys: dict[str, str]) -> None:
    small = settings.model_copy(update={"api_max_body": 1024})
    with TestClient(create_app(small)) as c:
        rows = [{"poi_id": f"p{i}", "name": "x" * 40} for i in range(50)]
        r = c.post("/v1/events/pois", json={"rows": rows}, headers=hdr(keys["write:events"]))
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"

        def chunks():  # no Content-Length: the streamed bytes are counted
            for _ in range(20):
                yield b" " * 100

        r = c.post(
            "/v1/events/pois",
            content=chunks(),
            headers={**hdr(keys["write:events"]), "content-type": "application/json"},
        )
        assert r.status_code == 413


def test_consents(client: TestClient, keys: dict[str, str], demo_db: Path) -> None:
    h = hdr(keys["write:events"])
    body = {
        "consents": [
            {
                "account_id": "EC-API-1",
                "purpose": "marketing",
                "channel": "sms",
                "granted": False,
                "ts": "2026-01-11T09:00:00Z",
            },
            {
                "account_id": "EC-API-1",
                "purpose": "ubi",
                "granted": True,
                "ts": "2026-01-11T09:00:00Z",
            },
        ]
    }
    r = client.post("/v1/consents", json=body, headers=h)
    assert r.status_code == 200 and r.json()["loaded"] == 2, r.text
    r = client.post(
        "/v1/consents",
        json={"consents": [{"account_id": "a", "purpose": "spam", "granted": True}]},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_experiment_report_matches_statsmodels(
    client: TestClient, keys: dict[str, str], feedback: dict[str, int]
) -> None:
    h = hdr(keys["read:profiles"])
    camps = {c["campaign_id"]: c for c in client.get("/v1/experiments", headers=h).json()}
    assert camps[CAMPAIGN]["arms"] == ["control", "treatment"]
    assert camps[CAMPAIGN]["persons"] == 40
    rep = client.get(f"/v1/experiments/{CAMPAIGN}", headers=h).json()
    arms = {a["arm"]: a for a in rep["arms"]}
    n = feedback["n"]
    for arm in ("treatment", "control"):
        a = arms[arm]
        assert (a["assigned"], a["reach"], a["conversion"]) == (n, n, feedback[arm])
        assert a["interaction"] == feedback[arm] + 6  # clicks and spoken replies
        assert a["value"] == pytest.approx(100.0 * feedback[arm])
        assert a["referrers"] == 1
        lo, hi = proportion_confint(feedback[arm], n, method="wilson")
        assert (a["rate_low"], a["rate_high"]) == pytest.approx((lo, hi))
    lo, hi = confint_proportions_2indep(
        feedback["treatment"], n, feedback["control"], n, method="newcomb"
    )
    assert rep["diff"] == pytest.approx((feedback["treatment"] - feedback["control"]) / n)
    assert (rep["diff_low"], rep["diff_high"]) == pytest.approx((lo, hi))
    assert 0 < rep["p_value"] < 0.05
    r = client.get("/v1/experiments/none-such", headers=h)
    assert r.status_code == 404


def test_funnel_report_or_501(
    client: TestClient, keys: dict[str, str], feedback: dict[str, int]
) -> None:
    h = hdr(keys["read:profiles"])
    q = {"by": ["strategy", "arm"], "strategy": CAMPAIGN}
    r = client.get("/v1/reports/funnel", params=q, headers=h)
    if importlib.util.find_spec("autopersona.evaluation.funnel") is None:
        assert r.status_code == 501
        return
    assert r.status_code == 200, r.text
    rows = {x["arm"]: x for x in r.json()}
    assert set(rows) == {"treatment", "control"}
    for arm in rows:
        assert rows[arm]["sent"] == feedback["n"]
        assert rows[arm]["revenue"] == pytest.approx(100.0 * feedback[arm])
    r = client.get("/v1/reports/funnel", params={"by": "colour"}, headers=h)
    assert r.status_code == 422


STRATEGY_MODULE = importlib.util.find_spec("autopersona.strategy.spec") is not None


def test_strategies_or_501(client: TestClient, keys: dict[str, str]) -> None:
    h = hdr(keys["admin"])
    r = client.get("/v1/strategies", headers=h)
    if not STRATEGY_MODULE:
        assert r.status_code == 501 and r.json()["error"]["code"] == "not_implemented"
        return
    assert r.status_code == 200 and len(r.json()) > 0
    listed = r.json()
    sid = listed[0]["id"]
    assert {"id", "audience", "channels", "trigger"} <= set(r.json()[0])
    bad = "strategies:\n  - id: x\n    name: y\n    colour: red\n"
    r = client.post("/v1/strategies/validate", json={"yaml": bad}, headers=h)
    assert r.status_code == 200 and r.json()["ok"] is False
    assert all(e["line"] >= 1 and e["message"] for e in r.json()["errors"])
    assert all("/" not in e["file"] for e in r.json()["errors"])
    r = client.post("/v1/strategies/plan", json={"as_of": "2026-01-14", "limit": 5}, headers=h)
    assert r.status_code in (200, 501), r.text
    if r.status_code == 200:
        body = r.json()
        assert body["decisions"] == sum(body["by_status"].values())
        assert {a["strategy_id"] for a in body["audiences"]} <= {x["id"] for x in listed}
        assert len(body["sample"]) <= 5
    r = client.post(
        "/v1/strategies/plan", json={"as_of": "2026-01-14", "strategy_id": sid}, headers=h
    )
    assert r.status_code in (200, 501)


def test_erasure_is_admin_only_and_501_without_privacy(
    client: TestClient, keys: dict[str, str]
) -> None:
    body = {"kind": "vin", "subject": "NO-SUCH-VIN"}
    r = client.post("/v1/erasure", json=body, headers=hdr(keys["write:events"]))
    assert r.status_code == 403
    r = client.post("/v1/erasure", json=body, headers=hdr(keys["admin"]))
    if importlib.util.find_spec("autopersona.privacy.erase") is None:
        assert r.status_code == 501 and r.json()["error"]["code"] == "not_implemented"
    else:
        assert r.status_code == 200, r.text
        assert r.json()["total"] == 0


@pytest.mark.skipif(
    importlib.util.find_spec("autopersona.privacy.erase") is None,
    reason="the privacy module's erasure is not installed",
)
def test_erasure_removes_the_person(
    client: TestClient, keys: dict[str, str], settings: ApiSettings, tmp_path: Path
) -> None:
    import shutil

    con = _wh(client).con.cursor()
    con.execute("CHECKPOINT")
    shutil.copy(settings.warehouse, tmp_path / "erase.duckdb")
    own = settings.model_copy(update={"warehouse": tmp_path / "erase.duckdb"})
    vin, pid = con.execute(
        "SELECT v.vin, p.person_id FROM vehicles v JOIN persons p ON list_contains(p.vins, v.vin) "
        "ORDER BY v.vin LIMIT 1"
    ).fetchall()[0]
    h = hdr(keys["admin"])
    with TestClient(create_app(own)) as c:
        assert c.get(f"/v1/profiles/vin/{vin}", headers=h).status_code == 200
        r = c.post("/v1/erasure", json={"kind": "vin", "subject": vin}, headers=h)
        assert r.status_code == 200, r.text
        rep = r.json()
        assert rep["total"] > 0 and all(rep["verified"].values())
        assert vin not in json.dumps(rep) and pid not in json.dumps(rep)
        assert c.get(f"/v1/profiles/vin/{vin}", headers=h).status_code == 404
        assert c.get(f"/v1/profiles/person/{pid}", headers=h).status_code == 404
    # the session's warehouse still has them
    assert client.get(f"/v1/profiles/vin/{vin}", headers=h).status_code == 200


def test_errors_are_structured(client: TestClient, keys: dict[str, str]) -> None:
    for r in (
        client.get("/v1/nothing-here"),
        client.delete("/v1/ping"),
        client.get("/v1/profiles/vin/x"),
    ):
        body = r.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert client.delete("/v1/ping").json()["error"]["code"] == "method_not_allowed"


def test_openapi_and_local_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/profiles/{kind}/{ident}" in spec["paths"]
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]
    html = client.get("/docs").text
    assert "/v1/audiences/count" in html
    assert "cdn" not in html.lower() and "<script" not in html.lower()
    for path in ("/redoc", "/docs/oauth2-redirect"):
        assert client.get(path).status_code == 404


def test_default_secret_refused_outside_demo(
    demo_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autopersona.api.config import ConfigError

    monkeypatch.delenv("AUTOPERSONA_PSEUDONYM_KEY", raising=False)  # the published default

    with pytest.raises(ConfigError, match="published default"):
        create_app(ApiSettings(warehouse=demo_db, demo=False))
    with pytest.raises(ConfigError, match="at least 16"):
        create_app(ApiSettings(warehouse=demo_db, api_secret="short"))
    assert create_app(ApiSettings(warehouse=demo_db, demo=True)) is not None
    # a good API secret is not enough: the pseudonym key must not be the published default
    with pytest.raises(ConfigError, match="AUTOPERSONA_PSEUDONYM_KEY"):
        create_app(ApiSettings(warehouse=demo_db, demo=False, api_secret="x" * 20))


def test_parse_as_of_is_the_stores(client: TestClient, keys: dict[str, str]) -> None:
    # a date means the end of that day, as in `autopersona profile show --as-of`
    vin = _vins(client, keys)[0]
    r = client.get(
        f"/v1/profiles/vin/{vin}", params={"as_of": "2030-01-01"}, headers=hdr(keys["admin"])
    )
    assert pd.Timestamp(r.json()["as_of"]) == pd.Timestamp(parse_as_of("2030-01-01"))


def test_clear_vin_in_the_path_is_looked_up_by_its_pseudonym(
    client: TestClient, keys: dict[str, str]
) -> None:
    """A CRM that knows only the VIN can ask by it: the app pseudonymises it with its key."""
    from autopersona.privacy.pseudo import Pseudonymiser

    st = client.app.state.ap  # type: ignore[attr-defined]
    if not st.settings.pseudonymise:
        pytest.skip("pseudonymisation is off in this environment")
    clear = "LSVAA4182E2123456"
    key = st.settings.pseudonym_key.get_secret_value()
    ps = Pseudonymiser(key).many("vin", [clear])[0]
    assert ps is not None and ps.startswith("pv_")
    assert st.stored_vin(clear) == ps and st.stored_vin(f" {clear.lower()} ") == ps
    assert st.stored_vin(ps) == ps  # a pseudonym stays itself
    h = hdr(keys["read:profiles"])
    vin = _vins(client, keys)[0]
    assert client.get(f"/v1/profiles/vin/{vin}", headers=h).status_code == 200
    r = client.get(f"/v1/profiles/vin/{clear}", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
