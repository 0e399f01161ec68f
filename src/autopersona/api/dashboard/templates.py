"""Page templates (Jinja2, autoescaped) and the stylesheet, kept in Python so they ship with it."""

from __future__ import annotations

__all__ = ["STYLE", "TEMPLATES"]

STYLE = """
:root { --fg:#1d2433; --muted:#667085; --line:#d0d5dd; --bg:#f7f8fa; --acc:#0072B2; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color:var(--fg); background:var(--bg); }
header { background:#13294b; color:#fff; padding:10px 24px; display:flex; gap:24px;
         align-items:center; flex-wrap:wrap; }
header h1 { font-size:18px; margin:0; }
header nav a { color:#dbe7ff; margin-right:16px; text-decoration:none; }
header nav a.on, header nav a:hover { color:#fff; text-decoration:underline; }
header form { margin-left:auto; }
header input { padding:4px 6px; border-radius:4px; border:0; }
main { padding:16px 24px 40px; max-width:1200px; }
h2 { font-size:16px; margin:22px 0 8px; }
.cards { display:flex; gap:12px; flex-wrap:wrap; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px 14px;
        min-width:150px; }
.card b { display:block; font-size:22px; }
.grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(380px, 1fr)); gap:12px; }
.panel { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px 14px; }
.panel h3 { font-size:14px; margin:0 0 6px; }
table { border-collapse:collapse; background:#fff; width:100%; }
th, td { border-bottom:1px solid var(--line); padding:5px 8px; text-align:left; vertical-align:top; }
th { background:#eef2f7; font-weight:600; }
.muted, .empty { color:var(--muted); }
.empty { background:#fff; border:1px dashed var(--line); border-radius:8px; padding:14px; }
.tag { display:inline-block; background:#e8f1fb; border-radius:10px; padding:0 8px; }
.status-send { color:#067647; } .status-suppressed { color:#b42318; } .status-held { color:#b54708; }
svg.chart text { font-size:12px; fill:var(--fg); }
svg.chart text.num, svg.chart text.axis { fill:var(--muted); }
svg.chart text.band { fill:#fff; font-weight:600; }
svg.chart text.seg { fill:#fff; font-size:11px; }
svg.chart line.ref { stroke:#999; stroke-dasharray:4 3; }
code { background:#eef2f7; padding:0 3px; border-radius:3px; }
.method { display:inline-block; min-width:52px; padding:1px 6px; border-radius:4px; color:#fff;
          background:#0072B2; font-size:12px; } .method.post { background:#009E73; }
section.op { background:#fff; border:1px solid var(--line); border-radius:8px; padding:6px 14px;
             margin:10px 0; }
pre.intro { white-space:pre-wrap; background:#fff; padding:10px; border-radius:8px; }
.login { max-width:460px; background:#fff; padding:16px; border-radius:8px;
         border:1px solid var(--line); }
.login input[type=password] { width:100%; padding:6px; margin:6px 0 10px; }
.error { color:#b42318; }
"""

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · autopersona</title>
<link rel="stylesheet" href="/dashboard/static/style.css">
</head><body>
<header><h1>autopersona</h1>
<nav>
 <a href="/dashboard" class="{{ 'on' if nav == 'fleet' }}">Fleet</a>
 <a href="/dashboard/strategies" class="{{ 'on' if nav == 'strategies' }}">Strategies</a>
 <a href="/dashboard/delivery" class="{{ 'on' if nav == 'delivery' }}">Delivery log</a>
 <a href="/docs">API</a>
</nav>
<form method="get" action="/dashboard/find"><input name="q" placeholder="VIN, account or person id"
 aria-label="find a person or vehicle"> </form>
<span class="muted">{{ who }}</span>
</header>
<main>
<h2 style="font-size:20px">{{ title }}</h2>
{% block body %}{% endblock %}
</main></body></html>
"""

_FLEET = """{% extends "base.html" %}{% block body %}
<div class="cards">
{% for label, n in cards %}<div class="card"><b>{{ "{:,}".format(n) }}</b>{{ label }}</div>{% endfor %}
</div>
{% if not tiers %}
<p class="empty">No profiles yet: no data yet — ingest data, build features and run
<code>autopersona profile refresh</code>.</p>
{% endif %}
<h2>Segment sizes</h2>
{% if segments %}<div class="grid">
{% for name, svg in segments %}<div class="panel"><h3>{{ name }}</h3>{{ svg|safe }}</div>{% endfor %}
</div>{% else %}<p class="empty">No segments yet (no data yet).</p>{% endif %}
{% for tier, charts in tiers %}
<h2>Tier {{ tier }}: tag distributions</h2>
<div class="grid">
{% for tag, n, svg in charts %}<div class="panel"><h3>{{ tag }} <span class="muted">({{ n }} entities)</span></h3>{{ svg|safe }}</div>{% endfor %}
</div>
{% endfor %}
{% if sample %}<h2>Some vehicles</h2><p>{% for v in sample %}<a href="/dashboard/entity/{{ v }}">{{ v }}</a> {% endfor %}</p>{% endif %}
{% endblock %}"""

_ENTITY = """{% extends "base.html" %}{% block body %}
<p>{{ kind }} <code>{{ ident }}</code>
{% if person %} · person <a href="/dashboard/entity/{{ person }}">{{ person }}</a>{% endif %}
{% if members %} · linked: {% for m in members %}<a href="/dashboard/entity/{{ m }}">{{ m }}</a> {% endfor %}{% endif %}
</p>
<h2>Current tags</h2>
{% if tags %}
<table><tr><th>entity</th><th>tag</th><th>value</th><th>score</th><th>why</th><th>since</th></tr>
{% for t in tags %}<tr><td>{{ t.entity }}</td><td>{{ t.tag_id }}</td><td><span class="tag">{{ t.value }}</span></td>
<td>{{ t.score_text }}</td><td>{{ t.why }}</td><td>{{ t.since }}</td></tr>{% endfor %}
</table>
{% else %}<p class="empty">No tags for this entity (no data yet).</p>{% endif %}
<h2>Tag history</h2>
{% if timeline %}<div class="panel">{{ timeline|safe }}</div>
<p class="muted">{{ versions }} versions; one lane per tag, one block per value.</p>
{% else %}<p class="empty">No tag history yet.</p>{% endif %}
<h2>Recent decisions</h2>
{% if decisions %}
<table><tr><th>time</th><th>strategy</th><th>status</th><th>channel</th><th>guard</th><th>reason</th></tr>
{% for d in decisions %}<tr><td>{{ d.created_at }}</td><td>{{ d.strategy_id }}</td>
<td class="status-{{ d.status }}">{{ d.status }}</td><td>{{ d.channel or '' }}</td><td>{{ d.guard or '' }}</td><td>{{ d.reason }}</td></tr>{% endfor %}
</table>
{% else %}<p class="empty">{{ decisions_note }}</p>{% endif %}
{% endblock %}"""

_STRATEGIES = """{% extends "base.html" %}{% block body %}
{% if note %}<p class="empty">{{ note }}</p>{% endif %}
{% if sizes_svg %}<div class="panel"><h3>Audience sizes (current profiles)</h3>{{ sizes_svg|safe }}</div>{% endif %}
{% if rows %}
<table><tr><th>strategy</th><th>name</th><th>trigger</th><th>channels</th><th>audience</th><th>size</th></tr>
{% for r in rows %}<tr><td><a href="/dashboard/strategies/{{ r.id }}">{{ r.id }}</a></td><td>{{ r.name }}</td>
<td>{{ r.trigger }}</td><td>{{ r.channels }}</td><td><code>{{ r.audience }}</code></td><td>{{ r.size }}</td></tr>{% endfor %}
</table>{% endif %}
{% if campaigns %}<h2>Campaigns with feedback</h2><p>
{% for c in campaigns %}<a href="/dashboard/strategies/{{ c.campaign_id }}">{{ c.campaign_id }}</a> ({{ c.persons }} persons) {% endfor %}</p>{% endif %}
{% endblock %}"""

_STRATEGY = """{% extends "base.html" %}{% block body %}
{% if spec %}<p>{{ spec.name }} — <code>{{ spec.audience }}</code></p>{% endif %}
<div class="cards"><div class="card"><b>{{ size }}</b>audience size now</div>
{% for k, v in by_status %}<div class="card"><b>{{ v }}</b>decisions: {{ k }}</div>{% endfor %}</div>
<h2>Four-layer funnel</h2>
{% if funnels %}<div class="grid">
{% for arm, svg in funnels %}<div class="panel"><h3>arm: {{ arm }}</h3>{{ svg|safe }}</div>{% endfor %}
</div>{% else %}<p class="empty">No feedback events for this strategy yet (no data yet).</p>{% endif %}
<h2>Experiment result</h2>
{% if rates_svg %}
<div class="grid"><div class="panel"><h3>Conversion rate by arm (95% Wilson interval)</h3>{{ rates_svg|safe }}</div>
{% if diff_svg %}<div class="panel"><h3>{{ diff_label }} (95% Newcombe interval)</h3>{{ diff_svg|safe }}
<p class="muted">p = {{ p_value }}</p></div>{% endif %}</div>
{% else %}<p class="empty">No experiment result yet (no data yet).</p>{% endif %}
{% endblock %}"""

_DELIVERY = """{% extends "base.html" %}{% block body %}
{% if not decisions %}<p class="empty">{{ note }}</p>{% else %}
<div class="grid">
<div class="panel"><h3>Decisions by status</h3>{{ status_svg|safe }}</div>
<div class="panel"><h3>Suppressions and holds by guard</h3>{{ guard_svg|safe }}</div>
{% if outbox_svg %}<div class="panel"><h3>Outbox by status</h3>{{ outbox_svg|safe }}</div>{% endif %}
</div>
<h2>Latest decisions</h2>
<table><tr><th>time</th><th>person</th><th>strategy</th><th>arm</th><th>status</th><th>channel</th><th>guard</th><th>reason</th></tr>
{% for d in decisions %}<tr><td>{{ d.created_at }}</td><td><a href="/dashboard/entity/{{ d.person_id }}">{{ d.person_id }}</a></td>
<td>{{ d.strategy_id }}</td><td>{{ d.arm }}</td><td class="status-{{ d.status }}">{{ d.status }}</td><td>{{ d.channel or '' }}</td>
<td>{{ d.guard or '' }}</td><td>{{ d.reason }}</td></tr>{% endfor %}
</table>{% endif %}
{% endblock %}"""

_LOGIN = """{% extends "base.html" %}{% block body %}
<form class="login" method="post" action="/dashboard/login">
<p>Paste an API key with the <code>read:profiles</code> scope (create one with
<code>autopersona keys create --scope read:profiles</code>). It is kept in an HTTP-only cookie.</p>
{% if error %}<p class="error">{{ error }}</p>{% endif %}
<label>API key <input type="password" name="key" autocomplete="off"></label>
<button type="submit">Sign in</button>
</form>{% endblock %}"""

TEMPLATES: dict[str, str] = {
    "base.html": _BASE,
    "fleet.html": _FLEET,
    "entity.html": _ENTITY,
    "strategies.html": _STRATEGIES,
    "strategy.html": _STRATEGY,
    "delivery.html": _DELIVERY,
    "login.html": _LOGIN,
}
