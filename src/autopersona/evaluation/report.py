"""A self-contained HTML report: funnel, lift with confidence intervals, and plug-in figures.

Everything is inline — figures are PNG images embedded as base64 ``data:`` URIs, styles sit
in the page — so the file can be mailed or archived and opens without any other asset.

Other evaluation modules add their figures in two ways:

* ``report.add_figure(section, fig, caption)`` on a :class:`Report` they are handed;
* a **provider** ``f(report, wh)`` listed in :data:`PROVIDERS` as ``(module, function)``;
  :func:`build_report` imports each lazily (a module that does not exist yet is skipped)
  and calls it.  The sections ``Uplift`` (Qini curves) and ``Bandits`` (allocation over
  time) are reserved for them and say so while empty.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import matplotlib.pyplot as plt
>>> r = Report("Demo")
>>> fig, ax = plt.subplots()
>>> _ = ax.plot([0, 1], [0, 1])
>>> r.add_figure("Uplift", fig, "a line")
>>> html = r.to_html()
>>> "data:image/png;base64," in html, "<script" in html, "http" in html.split("<body>")[1]
(True, False, False)
"""

from __future__ import annotations

import base64
import html
import importlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from autopersona.store.warehouse import Warehouse

__all__ = ["PROVIDERS", "SECTIONS", "Report", "build_report", "lift_table"]

#: Sections in page order; figures for other sections are appended after them.
SECTIONS = ("Funnel", "Lift", "Uplift", "Bandits", "Attribution")
_EMPTY = {
    "Uplift": "Qini curves of the uplift models appear here once they are run.",
    "Bandits": "Bandit allocation over time appears here once a bandit has run.",
    "Attribution": "Channel attribution appears here once it is computed.",
}

#: ``(module, function)`` figure providers called as ``function(report, wh)``.
PROVIDERS: list[tuple[str, str]] = [
    ("autopersona.evaluation.uplift_report", "add_figures"),
    ("autopersona.evaluation.bandit_report", "add_figures"),
    ("autopersona.evaluation.attribution_report", "add_figures"),
]

Provider = Callable[["Report", "Warehouse"], None]


@dataclass
class _Item:
    kind: str  # figure | table | text
    body: str
    caption: str = ""


@dataclass
class Report:
    """An HTML report assembled from sections of figures, tables and text."""

    title: str = "autopersona · feedback report"
    sections: dict[str, list[_Item]] = field(default_factory=dict)

    def _section(self, name: str) -> list[_Item]:
        return self.sections.setdefault(name, [])

    def add_figure(self, section: str, fig: Figure, caption: str = "", *, dpi: int = 110) -> None:
        """Embed a matplotlib figure (as a base64 PNG) in ``section`` and close it."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        alt = html.escape(caption or section)
        img = f'<img alt="{alt}" src="data:image/png;base64,{data}">'
        self._section(section).append(_Item("figure", img, caption))

    def add_table(self, section: str, df: pd.DataFrame, caption: str = "") -> None:
        """Add a table (numbers rounded for reading)."""
        body = df.to_html(index=False, float_format=lambda v: f"{v:,.4g}", na_rep="", border=0)
        self._section(section).append(_Item("table", body, caption))

    def add_text(self, section: str, text: str) -> None:
        """Add a paragraph of plain text."""
        self._section(section).append(_Item("text", f"<p>{html.escape(text)}</p>"))

    def to_html(self) -> str:
        """The whole page as one string."""
        order = [*SECTIONS, *(s for s in self.sections if s not in SECTIONS)]
        parts = []
        for name in order:
            items = self.sections.get(name, [])
            if not items and name not in _EMPTY and name not in SECTIONS:
                continue
            parts.append(f"<section><h2>{html.escape(name)}</h2>")
            if not items:
                parts.append(
                    f'<p class="empty">{html.escape(_EMPTY.get(name, "Nothing yet."))}</p>'
                )
            for it in items:
                cap = f"<figcaption>{html.escape(it.caption)}</figcaption>" if it.caption else ""
                parts.append(f"<figure>{it.body}{cap}</figure>" if it.kind != "text" else it.body)
            parts.append("</section>")
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1><p class='meta'>generated {now}</p>"
            + "".join(parts)
            + "</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        """Write the page to ``path``."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.to_html(), encoding="utf-8")
        return p


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{padding:.25em .6em;border-bottom:1px solid #eee;text-align:right}
th{background:#f4f4f4}figure{margin:1em 0}img{max-width:100%}
figcaption{font-size:.85em;color:#555}.empty,.meta{color:#888;font-style:italic}
"""


def lift_table(
    wh: Warehouse, *, control: Sequence[str] = ("holdout", "control"), alpha: float = 0.05
) -> pd.DataFrame:
    """Per campaign, every arm's conversion against its control arm (intent to treat).

    Units are persons with an event in the arm (the ``assigned`` events make the holdout
    visible); the outcome is any ``converted`` event.  Wald interval of the difference.
    A campaign with a ``precision`` and a ``baseline`` arm (the closed loop) also gets the
    headline row: precision recipients against baseline recipients (persons sent a message),
    with ``control`` = ``baseline (recipients)``.
    """
    from autopersona.evaluation import experiment as ex

    df = wh.frame(
        """SELECT campaign_id, arm, count(*) AS units, sum(conv::INT) AS converted,
                  count(*) FILTER (WHERE sent) AS recipients,
                  count(*) FILTER (WHERE sent AND conv) AS recipients_converted
           FROM (SELECT campaign_id, arm, person_id,
                        bool_or(event_type = 'converted') AS conv,
                        bool_or(event_type = 'sent') AS sent
                 FROM marketing_feedback WHERE arm IS NOT NULL GROUP BY ALL)
           GROUP BY ALL ORDER BY 1, 2"""
    )
    rows = []
    recs: list[dict[str, Any]] = [{str(k): v for k, v in r.items()} for r in df.to_dict("records")]
    for camp in sorted({r["campaign_id"] for r in recs}):
        g = [r for r in recs if r["campaign_id"] == camp]
        by_arm = {r["arm"]: r for r in g}
        pairs = []
        if "precision" in by_arm and "baseline" in by_arm:
            p, b = by_arm["precision"], by_arm["baseline"]
            if p["recipients"] > 0 and b["recipients"] > 0:
                pairs.append(
                    (
                        {**p, "units": p["recipients"], "converted": p["recipients_converted"]},
                        {
                            **b,
                            "arm": "baseline (recipients)",
                            "units": b["recipients"],
                            "converted": b["recipients_converted"],
                        },
                    )
                )
        ctl = [r for r in g if r["arm"] in control]
        if ctl:
            pairs += [(r, ctl[0]) for r in g if r["arm"] != ctl[0]["arm"]]
        for r, c in pairs:
            d = ex.diff_proportions(
                int(r["converted"]), int(r["units"]), int(c["converted"]), int(c["units"]), alpha
            )
            rows.append(
                {
                    "campaign": camp,
                    "arm": r["arm"],
                    "control": c["arm"],
                    "units": int(r["units"]),
                    "control_units": int(c["units"]),
                    "rate": d.rate_t,
                    "control_rate": d.rate_c,
                    "lift": d.diff,
                    "ci_low": d.ci_low,
                    "ci_high": d.ci_high,
                    "p_value": d.p_value,
                }
            )
    return pd.DataFrame(rows)


def _funnel_figure(f: pd.DataFrame) -> Figure:
    import matplotlib.pyplot as plt

    every = ["sent", "delivered", "exposed", "clicked", "visited", "converted", "redeemed"]
    steps = [s for s in every if f[s].sum() > 0] or ["sent", "converted"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(len(f), 1)
    for i, r in enumerate(f.itertuples(index=False)):
        vals = [getattr(r, s) for s in steps]
        xs = [k + i * width for k in range(len(steps))]
        ax.bar(xs, vals, width=width, label=f"{r.strategy} · {r.arm}")
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(steps))], steps)
    ax.set_yscale("symlog")
    ax.set_ylabel("messages")
    ax.legend(fontsize=7)
    ax.set_title("Funnel by strategy and arm")
    return fig


def _lift_figure(lt: pd.DataFrame) -> Figure:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.45 * len(lt)))
    labels = [f"{r.campaign} · {r.arm} vs {r.control}" for r in lt.itertuples(index=False)]
    y = list(range(len(lt)))
    ax.errorbar(
        lt["lift"],
        y,
        xerr=[lt["lift"] - lt["ci_low"], lt["ci_high"] - lt["lift"]],
        fmt="o",
        capsize=4,
    )
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(y, labels)
    ax.set_xlabel("conversion lift vs control (95% CI)")
    ax.set_title("Lift with confidence intervals")
    return fig


def build_report(
    wh: Warehouse,
    *,
    title: str = "autopersona · feedback report",
    control: Sequence[str] = ("holdout", "control"),
    providers: Sequence[Provider] | None = None,
) -> Report:
    """Funnel and lift from the warehouse's feedback, then every figure provider's figures."""
    import matplotlib

    matplotlib.use("Agg")
    from autopersona.evaluation.funnel import funnel_metrics

    rep = Report(title)
    f = funnel_metrics(wh, by=("strategy", "arm"))
    if f.empty:
        rep.add_text("Funnel", "marketing_feedback is empty: no campaign to report yet.")
    else:
        rep.add_figure(
            "Funnel", _funnel_figure(f), "Messages at each funnel step the data has (log scale)."
        )
        cols = ["strategy", "arm", "sent", "delivered", "exposed", "clicked", "converted"]
        rates = ["send_success", "exposure_rate", "ctr", "cvr", "order_value", "redemption_rate"]
        rep.add_table("Funnel", f[cols + rates], "Reach, interaction, conversion and value.")
        more = ["voice_replies", "voice_reply_rate", "mean_dwell_s", "buyers", "repurchase_rate"]
        more += ["referrals", "referral_rate", "persons", "ltv_change"]
        rep.add_table(
            "Funnel",
            f[["strategy", "arm", *more]],
            "Interaction (voice replies per exposure, seconds of dwell per exposed message) and "
            "value (repurchase, referrals per sent message, revenue and referral value per person).",
        )
    lt = lift_table(wh, control=control)
    if lt.empty:
        rep.add_text("Lift", f"no campaign has a control arm ({', '.join(control)}).")
    else:
        rep.add_figure("Lift", _lift_figure(lt), "Each arm against its campaign's control.")
        rep.add_table("Lift", lt)
    calls: list[Provider] = list(providers or [])
    if providers is None:
        for module, func in PROVIDERS:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
                continue
            calls.append(getattr(mod, func))
    for call in calls:
        call(rep, wh)
    return rep
