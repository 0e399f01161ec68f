"""Dashboard pages: fleet overview, person/vehicle, strategies, delivery log.

Who may look: in demo mode (``AUTOPERSONA_DEMO=1``) anyone, read-only; otherwise a key with
``read:profiles``, sent as a header or kept in the ``autopersona_key`` cookie after signing in
at ``/dashboard/login``.  Pages only read; panels whose module or table is absent say "no data
yet" instead of failing.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import DictLoader, Environment, select_autoescape

from autopersona.api.dashboard import svg
from autopersona.api.dashboard.templates import STYLE, TEMPLATES
from autopersona.api.data import Backend
from autopersona.api.deps import COOKIE, Principal, authenticate, state
from autopersona.api.errors import ApiError
from autopersona.api.queries import (
    FUNNEL,
    audience_frame,
    campaigns,
    evaluate_audience,
    experiment_report,
    history,
    person_entities,
    person_of,
    profile_rows,
)

__all__ = ["router"]

router = APIRouter(prefix="/dashboard", include_in_schema=False)
_env = Environment(loader=DictLoader(TEMPLATES), autoescape=select_autoescape(default=True))
_TIERS = ["L1", "L2", "L3", "L4", "basic", "behaviour", "interest", "value", "attitude"]


class _Login(Exception):
    pass


def _who(request: Request) -> Principal:
    st = state(request)
    try:
        return authenticate(request, "read:profiles", cookie=True)
    except ApiError as exc:
        if exc.status == 401 and st.settings.demo:
            return Principal("demo", "demo (read-only)", ["read:profiles"])
        if exc.status == 401:
            raise _Login from None
        raise


def _page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    who = ctx.pop("who", None)
    label = f"signed in: {who.name or who.key_id}" if isinstance(who, Principal) else ""
    return HTMLResponse(_env.get_template(name).render(who=label, **ctx), status_code=status)


def _login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/dashboard/login?next={quote(request.url.path)}", status_code=303)


async def _tables(be: Backend) -> set[str]:
    try:
        return await be.wh_tables()
    except ApiError:
        return set()


async def _count(be: Backend, sql: str) -> int:
    _, rows = await be.wh_rows(sql)
    return int(rows[0][0]) if rows else 0


# ------------------------------------------------------------------ static, login
@router.get("/static/style.css")
async def style() -> Response:
    """The stylesheet."""
    return Response(STYLE, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    """The sign-in form."""
    return _page(request, "login.html", title="Sign in", nav="")


@router.post("/login")
async def login(request: Request) -> Response:
    """Check a pasted key and keep it in an HTTP-only, same-site cookie."""
    body = (await request.body()).decode("utf-8", "replace")
    key = (parse_qs(body).get("key") or [""])[0].strip()
    rec = state(request).keys.verify(key) if key else None
    if rec is None or not ({"read:profiles", "admin"} & set(rec.scopes)):
        return _page(
            request,
            "login.html",
            status=401,
            title="Sign in",
            nav="",
            error="unknown, revoked or insufficient key (needs read:profiles)",
        )
    nxt = request.query_params.get("next", "/dashboard")
    if not nxt.startswith("/dashboard"):
        nxt = "/dashboard"
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(COOKIE, key, httponly=True, samesite="strict", path="/dashboard")
    return resp


@router.get("/logout")
async def logout() -> Response:
    """Forget the key cookie."""
    resp = RedirectResponse("/dashboard/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/dashboard")
    return resp


# ------------------------------------------------------------------ fleet
@router.get("", response_class=HTMLResponse)
async def fleet(request: Request) -> Response:
    """Fleet overview: counts, segment sizes and tag distributions by tier."""
    try:
        who = _who(request)
    except _Login:
        return _login_redirect(request)
    st = state(request)
    be = st.backend
    tables = await _tables(be)
    cards: list[tuple[str, int]] = []
    for label, table in (
        ("vehicles", "vehicles"),
        ("persons", "persons"),
        ("accounts", "accounts"),
    ):
        if table in tables:
            cards.append((label, await _count(be, f'SELECT count(*) FROM "{table}"')))
    _, dist = await be.store_rows(
        "SELECT tag_id, value, count(*) FROM {s}.tag_assignments WHERE valid_to IS NULL "
        "GROUP BY 1, 2"
    )
    _, ents = await be.store_rows(
        "SELECT entity_type, count(DISTINCT entity) FROM {s}.tag_assignments "
        "WHERE valid_to IS NULL GROUP BY 1 ORDER BY 1"
    )
    for et, n in ents:
        cards.append((f"profiled ({et})", int(n)))
    counts: dict[str, Counter[str]] = {}
    for tag, value, n in dist:
        counts.setdefault(str(tag), Counter())[str(value)] += int(n)
    cat = st.catalogue
    tiers: list[tuple[str, list[tuple[str, int, str]]]] = []
    for tier in _TIERS:
        charts = []
        for tid in sorted(t for t, spec in cat.tags.items() if spec.tier == tier):
            if tid not in counts:
                continue
            c = counts[tid]
            declared = cat.tags[tid].values
            if declared:
                items = [(v, float(c.get(v, 0))) for v in declared]
            else:
                items = [(v, float(n)) for v, n in c.most_common(8)]
            charts.append((tid, sum(c.values()), svg.bars(items, title=tid)))
        if charts:
            tiers.append((tier, charts))
    segments = []
    for tid in ("lifecycle_stage", "cm_rfm_tier", "l2_travel_pattern", "l1_vehicle_tier"):
        if tid in counts and tid in cat.tags:
            vals = cat.tags[tid].values or list(counts[tid])
            items = [(v, float(counts[tid].get(v, 0))) for v in vals]
            segments.append((tid, svg.bars(items, title=tid, color=svg.PALETTE[2])))
    sample: list[str] = []
    if "vehicles" in tables:
        _, rows = await be.wh_rows("SELECT vin FROM vehicles ORDER BY vin LIMIT 12")
        sample = [str(r[0]) for r in rows]
    return _page(
        request,
        "fleet.html",
        title="Fleet overview",
        nav="fleet",
        who=who,
        cards=cards,
        tiers=tiers,
        segments=segments,
        sample=sample,
    )


@router.get("/find")
async def find(request: Request, q: Annotated[str, Query(max_length=200)] = "") -> Response:
    """Jump to an entity page."""
    q = q.strip()
    return RedirectResponse(f"/dashboard/entity/{quote(q)}" if q else "/dashboard", 303)


# ------------------------------------------------------------------ person / vehicle
def _why(reasons: Any) -> str:
    if not isinstance(reasons, dict):
        return "" if reasons is None else json.dumps(reasons)[:160]
    parts = []
    for k in ("when", "grade", "case"):
        if k in reasons and k != "case":
            parts.append(f"{k}: {reasons[k]}")
    inputs = reasons.get("inputs")
    if isinstance(inputs, dict):
        shown = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in list(inputs.items())[:6]
        )
        parts.append(f"inputs: {shown}")
    return "; ".join(parts) or json.dumps(reasons)[:160]


@router.get("/entity/{ident}", response_class=HTMLResponse)
async def entity(
    request: Request, ident: Annotated[str, Path(min_length=1, max_length=200)]
) -> Response:
    """A person or vehicle (or account): current tags with reasons, history, decisions."""
    try:
        who = _who(request)
    except _Login:
        return _login_redirect(request)
    be = state(request).backend
    tables = await _tables(be)
    members: list[str] = []
    person: str | None = None
    if ident.startswith("PER-") and "persons" in tables:
        found = await person_entities(be, ident)
        members = found or []
        ents = members
        kind = "person"
    else:
        ents = [ident]
        kind = (
            "vehicle"
            if "vehicles" in tables
            and (await be.wh_rows("SELECT 1 FROM vehicles WHERE vin = ?", [ident]))[1]
            else "entity"
        )
        person = await person_of(be, ident) if tables else None
    rows = await profile_rows(be, ents, None)
    if not rows and kind != "person" and person is None:
        hist_probe = await history(be, ents, None)
        if not hist_probe:
            return _page(
                request,
                "entity.html",
                status=404,
                title=f"Not found: {ident}",
                nav="",
                who=who,
                kind=kind,
                ident=ident,
                tags=[],
                decisions=[],
                decisions_note="No decisions.",
            )
    tags = [
        {
            "entity": r["entity"],
            "tag_id": r["tag_id"],
            "value": r["value"],
            "score_text": "" if r["score"] is None else f"{r['score']:.3g}",
            "why": _why(r["reasons"]),
            "since": r["valid_from"].strftime("%Y-%m-%d") if r["valid_from"] else "",
        }
        for r in rows
    ]
    hist = await history(be, ents, None)
    lanes = [
        (
            (r["tag_id"] if len(ents) == 1 else f"{r['entity'][:8]}…{r['tag_id']}"),
            str(r["value"]),
            r["valid_from"],
            r["valid_to"],
        )
        for r in hist
        if r["valid_from"] is not None
    ]
    timeline = (
        svg.timeline(lanes, now=datetime.now(UTC), title=f"tag history of {ident}") if lanes else ""
    )
    decisions: list[dict[str, Any]] = []
    note = "No decisions yet: the strategy engine has not logged any (no data yet)."
    if "strategy_decisions" in tables:
        pid = ident if kind == "person" else person
        keys = [k for k in {ident, pid} if k]
        marks = ", ".join("?" for _ in keys)
        names, drows = await be.wh_rows(
            "SELECT created_at, strategy_id, status, channel, guard, reason "
            f"FROM strategy_decisions WHERE person_id IN ({marks}) OR vin IN ({marks}) "
            "ORDER BY created_at DESC LIMIT 50",
            [*keys, *keys],
        )
        decisions = [dict(zip(names, d, strict=True)) for d in drows]
        for d in decisions:
            d["created_at"] = f"{d['created_at']:%Y-%m-%d %H:%M}" if d["created_at"] else ""
        note = "No decisions for this person yet."
    return _page(
        request,
        "entity.html",
        title=f"{kind.capitalize()} {ident}",
        nav="",
        who=who,
        kind=kind,
        ident=ident,
        person=person,
        members=members,
        tags=tags,
        timeline=timeline,
        versions=len(hist),
        decisions=decisions,
        decisions_note=note,
    )


# ------------------------------------------------------------------ strategies
def _strategy_catalogue() -> Any:
    try:
        from autopersona.strategy.spec import load_strategies
    except ImportError:
        return None
    try:
        return load_strategies()
    except Exception:
        return None


async def _audience_size(request: Request, spec: Any) -> int | None:
    st = state(request)
    known = {t.id: t.values for t in st.catalogue.tags.values() if t.entity == spec.entity}
    frame = await audience_frame(st.backend, spec.entity, None)
    try:
        return len(evaluate_audience(frame, spec.audience, known))
    except ApiError:
        return None  # the audience reads features too: sized by the engine's plan


async def _engine_plan(request: Request) -> dict[str, dict[str, Any]]:
    """``StrategyEngine.plan`` now, by strategy id ({} when the engine is not installed)."""
    try:
        from autopersona.strategy.engine import StrategyEngine
    except ImportError:
        return {}
    be = state(request).backend

    def run() -> list[dict[str, Any]]:
        wh = be.warehouse()
        with be.write_lock:
            eng = StrategyEngine(wh)
            return list(eng.plan(datetime.now(UTC))) if hasattr(eng, "plan") else []

    try:
        rows = await anyio.to_thread.run_sync(run)
    except Exception:  # a broken plan must not take the page down; sizes fall back to tags
        return {}
    return {str(r.get("strategy_id", r.get("id", ""))): r for r in rows}


@router.get("/strategies", response_class=HTMLResponse)
async def strategies(request: Request) -> Response:
    """Strategies with their audience sizes; campaigns with feedback."""
    try:
        who = _who(request)
    except _Login:
        return _login_redirect(request)
    cat = _strategy_catalogue()
    rows = []
    note = ""
    if cat is None:
        note = "No strategies yet: the strategy module is not installed (no data yet)."
    else:
        planned = await _engine_plan(request)
        for sid, s in sorted(cat.strategies.items()):
            size = (
                int(planned[sid]["audience"])
                if sid in planned and planned[sid].get("audience") is not None
                else await _audience_size(request, s)
            )
            rows.append(
                {
                    "id": sid,
                    "name": s.name,
                    "trigger": s.trigger.kind if hasattr(s.trigger, "kind") else "",
                    "channels": ", ".join(s.channels),
                    "audience": s.audience,
                    "size": "tags + features" if size is None else size,
                    "n": size,
                }
            )
    sized = [(r["id"], float(r["n"])) for r in rows if r["n"] is not None]
    camps = await campaigns(state(request).backend) if await _tables(state(request).backend) else []
    return _page(
        request,
        "strategies.html",
        title="Strategies",
        nav="strategies",
        who=who,
        note=note,
        rows=rows,
        sizes_svg=svg.bars(sized, title="audience sizes", width=520) if sized else "",
        campaigns=camps,
    )


@router.get("/strategies/{sid}", response_class=HTMLResponse)
async def strategy(
    request: Request, sid: Annotated[str, Path(min_length=1, max_length=200)]
) -> Response:
    """One strategy: audience size, four-layer funnel per arm, experiment result."""
    try:
        who = _who(request)
    except _Login:
        return _login_redirect(request)
    be = state(request).backend
    cat = _strategy_catalogue()
    spec = cat.strategies.get(sid) if cat is not None else None
    size: Any = "—"
    if spec is not None:
        planned = (await _engine_plan(request)).get(sid, {})
        n = planned.get("audience")
        if n is None:
            n = await _audience_size(request, spec)
        size = "tags + features" if n is None else n
    tables = await _tables(be)
    rep = await experiment_report(be, sid) if "marketing_feedback" in tables else None
    if spec is None and rep is None:
        return _page(
            request,
            "strategy.html",
            status=404,
            title=f"Not found: strategy {sid}",
            nav="strategies",
            who=who,
            size="—",
            by_status=[],
        )
    by_status: list[tuple[str, int]] = []
    if "strategy_decisions" in tables:
        _, rows = await be.wh_rows(
            "SELECT status, count(*) FROM strategy_decisions WHERE strategy_id = ? "
            "GROUP BY 1 ORDER BY 1",
            [sid],
        )
        by_status = [(str(s), int(n)) for s, n in rows]
    funnels = []
    rates_svg = diff_svg = ""
    diff_label = ""
    p_value = ""
    if rep is not None:
        for a in rep["arms"]:
            layers = [("assigned", a["assigned"])] + [(k, a[k]) for k in FUNNEL]
            f = svg.funnel(layers, title=f"funnel {a['arm']}")
            funnels.append((a["arm"], f + f"<p class='muted'>value: {a['value']:,.2f}</p>"))
        pts = [
            (a["arm"], a["rate"], a["rate_low"], a["rate_high"])
            for a in rep["arms"]
            if a["rate"] is not None
        ]
        if pts:
            rates_svg = svg.intervals(pts, title="conversion rate by arm")
        if rep["diff"] is not None:
            diff_label = f"{rep['treatment']} − {rep['control']}"
            diff_svg = svg.intervals(
                [(diff_label, rep["diff"], rep["diff_low"], rep["diff_high"])],
                title="difference in conversion rate",
                zero=True,
            )
            p_value = "n/a" if rep["p_value"] is None else f"{rep['p_value']:.3g}"
    return _page(
        request,
        "strategy.html",
        title=f"Strategy {sid}",
        nav="strategies",
        who=who,
        spec=spec,
        size=size,
        by_status=by_status,
        funnels=funnels,
        rates_svg=rates_svg,
        diff_svg=diff_svg,
        diff_label=diff_label,
        p_value=p_value,
    )


# ------------------------------------------------------------------ delivery
@router.get("/delivery", response_class=HTMLResponse)
async def delivery(request: Request) -> Response:
    """The delivery log: decisions with suppressions and their reasons, outbox states."""
    try:
        who = _who(request)
    except _Login:
        return _login_redirect(request)
    be = state(request).backend
    tables = await _tables(be)
    if "strategy_decisions" not in tables:
        return _page(
            request,
            "delivery.html",
            title="Delivery log",
            nav="delivery",
            who=who,
            decisions=[],
            note="No decisions logged yet (no data yet): run the strategy engine.",
        )
    names, rows = await be.wh_rows(
        "SELECT created_at, person_id, strategy_id, arm, status, channel, guard, reason "
        "FROM strategy_decisions ORDER BY created_at DESC, decision_id LIMIT 200"
    )
    decisions = [dict(zip(names, r, strict=True)) for r in rows]
    for d in decisions:
        d["created_at"] = f"{d['created_at']:%Y-%m-%d %H:%M}" if d["created_at"] else ""
    _, st_rows = await be.wh_rows(
        "SELECT status, count(*) FROM strategy_decisions GROUP BY 1 ORDER BY 2 DESC"
    )
    _, g_rows = await be.wh_rows(
        "SELECT guard, count(*) FROM strategy_decisions WHERE guard IS NOT NULL "
        "GROUP BY 1 ORDER BY 2 DESC"
    )
    outbox_svg = ""
    if "outbox" in tables:
        _, o_rows = await be.wh_rows(
            "SELECT status, count(*) FROM outbox GROUP BY 1 ORDER BY 2 DESC"
        )
        if o_rows:
            outbox_svg = svg.bars([(str(s), float(n)) for s, n in o_rows], title="outbox")
    return _page(
        request,
        "delivery.html",
        title="Delivery log",
        nav="delivery",
        who=who,
        decisions=decisions,
        note="No decisions logged yet.",
        status_svg=svg.bars([(str(s), float(n)) for s, n in st_rows], title="status"),
        guard_svg=svg.bars(
            [(str(s), float(n)) for s, n in g_rows], title="guards", color=svg.PALETTE[5]
        )
        if g_rows
        else "<p class='muted'>no suppressions</p>",
        outbox_svg=outbox_svg,
    )
