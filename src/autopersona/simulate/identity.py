"""Accounts across channels with messy identifiers, and consent histories.

Each person has a true name, phone and e-mail (``truth/persons``). Sources hold accounts
with probabilities owner 0.95, app 0.8, ecommerce 0.75 (plus a second e-commerce account
6 % of the time), dealer_crm 0.85; everyone has at least one. Each source writes the
identity its own way:

* names: canonical, swapped order, upper/lower case, family name upper-cased, comma
  form, joined, middle initial (western names), an English given name (some Chinese app
  users), or a typo (adjacent swap, dropped or doubled letter);
* phones: ``+86 138 0013 8000``, ``13800138000``, ``138-0013-8000``, ``+8613800138000``,
  ``0086 13800138000`` … (country-specific for JP/HK/DE/US), sometimes a wrong digit;
* e-mails: case changes, a typo in the local part or domain (``gmial.com``, ``163.con``),
  or a different (work) address;
* VIN on owner accounts, most dealer records (3 % with an O/0 or I/1 typo) and some app
  accounts.

Account ids are opaque hashes, so nothing but the attributes links them;
``truth/identity.parquet`` maps every account to its person.

Consents: per account and purpose (marketing on the source's own channels, analytics and
partner_sharing and — for owner/app accounts — ubi on ``any``), given or refused when the
account was created; 2 % of granted consents are withdrawn during the window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from autopersona.simulate.geo import City, district_of
from autopersona.simulate.ids import make_id
from autopersona.simulate.truth import Person, VehicleSpec

__all__ = ["Account", "TrueIdentity", "accounts_for", "consent_rows", "true_identity"]

US = 1_000_000
CN_FAMILY = (
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Huang",
    "Zhao",
    "Wu",
    "Zhou",
    "Xu",
    "Sun",
    "Ma",
    "Zhu",
    "Hu",
    "Guo",
    "He",
    "Lin",
    "Gao",
    "Luo",
)
CN_GIVEN = (
    "Wei",
    "Fang",
    "Na",
    "Min",
    "Jing",
    "Lei",
    "Jun",
    "Yang",
    "Yong",
    "Yan",
    "Jie",
    "Tao",
    "Ming",
    "Chao",
    "Xiuying",
    "Haoran",
    "Zihan",
    "Yuxuan",
    "Xinyi",
    "Jiahao",
    "Ruoxi",
    "Zhiwei",
    "Lihua",
    "Qiang",
)
EN_GIVEN_FOR_CN = ("Kevin", "Jason", "Vivian", "Grace", "Eric", "Cindy", "Tony", "Amy")
JP_FAMILY = ("Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto", "Nakamura")
JP_GIVEN = ("Haruto", "Yui", "Sota", "Hina", "Ren", "Aoi", "Yuto", "Sakura")
W_FAMILY = (
    "Smith",
    "Mueller",
    "Johnson",
    "Schmidt",
    "Garcia",
    "Schneider",
    "Brown",
    "Fischer",
    "Miller",
    "Weber",
)
W_GIVEN = (
    "John",
    "Anna",
    "Michael",
    "Laura",
    "David",
    "Julia",
    "Thomas",
    "Sarah",
    "Daniel",
    "Emma",
)
W_MIDDLE = "ABCDEFGHJKLMRST"
DOMAINS = {
    "cn": ("qq.com", "163.com", "126.com", "gmail.com", "outlook.com", "sina.com"),
    "jp": ("gmail.com", "yahoo.co.jp", "docomo.ne.jp"),
    "west": ("gmail.com", "outlook.com", "yahoo.com", "web.de"),
}
DOMAIN_TYPOS = {
    "gmail.com": "gmial.com",
    "163.com": "163.con",
    "qq.com": "qq.co",
    "outlook.com": "outlok.com",
    "yahoo.com": "yaho.com",
    "126.com": "126.cm",
    "sina.com": "sina.cn",
    "web.de": "web.d",
    "yahoo.co.jp": "yahoo.co.pj",
    "docomo.ne.jp": "docomo.ne.pj",
}
CITY_VARIANTS = {
    "Shanghai": ("Shanghai", "shanghai", "SHANGHAI", "Shanghai Shi", "上海"),
    "Urumqi": ("Urumqi", "Ürümqi", "URUMQI", "乌鲁木齐"),
    "Hong Kong": ("Hong Kong", "HongKong", "HK", "香港"),
    "Tokyo": ("Tokyo", "TOKYO", "Tokyo-to"),
    "Berlin": ("Berlin", "BERLIN", "berlin"),
    "Los Angeles": ("Los Angeles", "LA", "Los Angeles, CA"),
}
SOURCES = (
    ("owner", "OWN", 0.95),
    ("app", "APP", 0.8),
    ("ecommerce", "EC", 0.75),
    ("dealer_crm", "CRM", 0.85),
)


@dataclass(frozen=True)
class TrueIdentity:
    """The real name, phone and e-mail of a person."""

    family: str
    given: str
    style: str  # cn / jp / west
    middle: str
    phone_digits: str  # national significant number
    phone_style: str
    email: str

    @property
    def full_name(self) -> str:
        """Canonical spelling (family first for cn/jp, given first for western names)."""
        if self.style == "west":
            return f"{self.given} {self.family}"
        return f"{self.family} {self.given}"


@dataclass(frozen=True)
class Account:
    """One source account (its row in ``accounts``) and the truth behind it."""

    account_id: str
    source: str
    created_at_us: int
    row: dict[str, Any]
    duplicate: bool


def true_identity(person: Person, city: City, rng: np.random.Generator) -> TrueIdentity:
    """Draw the person's true name, phone and e-mail."""
    style = city.name_style
    if style == "cn":
        fam, giv = (
            CN_FAMILY[int(rng.integers(len(CN_FAMILY)))],
            CN_GIVEN[int(rng.integers(len(CN_GIVEN)))],
        )
    elif style == "jp":
        fam, giv = (
            JP_FAMILY[int(rng.integers(len(JP_FAMILY)))],
            JP_GIVEN[int(rng.integers(len(JP_GIVEN)))],
        )
    else:
        fam, giv = (
            W_FAMILY[int(rng.integers(len(W_FAMILY)))],
            W_GIVEN[int(rng.integers(len(W_GIVEN)))],
        )
    middle = (
        W_MIDDLE[int(rng.integers(len(W_MIDDLE)))] if style == "west" and rng.random() < 0.5 else ""
    )
    ps = city.phone_style
    d = rng.integers(0, 10, 12)
    if ps == "cn":
        digits = "1" + str(int(rng.choice([3, 5, 8, 9]))) + "".join(map(str, d[:9]))
    elif ps == "jp":
        digits = str(int(rng.choice([70, 80, 90]))) + "".join(map(str, d[:8]))
    elif ps == "hk":
        digits = str(int(rng.choice([5, 6, 9]))) + "".join(map(str, d[:7]))
    elif ps == "de":
        digits = "15" + str(int(rng.integers(1, 8))) + "".join(map(str, d[:8]))
    else:
        digits = str(int(rng.choice([213, 310, 323, 424, 626]))) + "555" + "".join(map(str, d[:4]))
    dom_style = "west" if style == "west" else style
    domain = DOMAINS[dom_style][int(rng.integers(len(DOMAINS[dom_style])))]
    form = int(rng.integers(4))
    local = [
        f"{giv}.{fam}",
        f"{fam}{giv}{int(rng.integers(10, 99))}",
        f"{giv[0]}{fam}",
        f"{fam}.{giv}",
    ][form].lower()
    return TrueIdentity(fam, giv, style, middle, digits, ps, f"{local}@{domain}")


def _typo(s: str, rng: np.random.Generator) -> str:
    letters = [i for i, c in enumerate(s) if c.isalpha()]
    if len(letters) < 3:
        return s
    i = letters[int(rng.integers(1, len(letters) - 1))]
    kind = int(rng.integers(3))
    if kind == 0 and i + 1 < len(s) and s[i + 1].isalpha():
        return s[:i] + s[i + 1] + s[i] + s[i + 2 :]
    if kind == 1:
        return s[:i] + s[i + 1 :]
    return s[:i] + s[i] + s[i:]


def name_variant(ti: TrueIdentity, rng: np.random.Generator, source: str) -> str:
    """How a source spells the name."""
    f, g = ti.family, ti.given
    if ti.style == "west":
        forms = [
            f"{g} {f}",
            f"{g} {ti.middle}. {f}" if ti.middle else f"{g} {f}",
            f"{f}, {g}",
            f"{g[0]}. {f}",
            f"{g} {f}".upper(),
            f"{g} {f}".lower(),
        ]
        w = [0.35, 0.2, 0.15, 0.1, 0.1, 0.1]
    else:
        en = EN_GIVEN_FOR_CN[int(rng.integers(len(EN_GIVEN_FOR_CN)))]
        forms = [
            f"{f} {g}",
            f"{g} {f}",
            f"{f} {g}".upper(),
            f"{f} {g}".lower(),
            f"{f.upper()} {g}",
            f"{f}, {g}",
            f"{f}{g}",
            f"{en} {f}" if ti.style == "cn" else f"{g} {f}",
        ]
        w = [0.35, 0.15, 0.1, 0.08, 0.12, 0.05, 0.07, 0.08 if source == "app" else 0.0]
    if source == "owner":
        w = [1.0] + [0.0] * (len(forms) - 1)
    wa = np.array(w) / sum(w)
    name = forms[int(rng.choice(len(forms), p=wa))]
    if rng.random() < (0.03 if source == "owner" else 0.1):
        name = _typo(name, rng)
    return name


def phone_variant(ti: TrueIdentity, rng: np.random.Generator) -> str:
    """How a source writes the phone number."""
    d = ti.phone_digits
    if rng.random() < 0.03:  # a wrong digit
        i = int(rng.integers(3, len(d)))
        d = d[:i] + str((int(d[i]) + 1 + int(rng.integers(8))) % 10) + d[i + 1 :]
    ps = ti.phone_style
    if ps == "cn":
        forms = [
            f"+86 {d[:3]} {d[3:7]} {d[7:]}",
            d,
            f"{d[:3]}-{d[3:7]}-{d[7:]}",
            f"+86{d}",
            f"0086 {d}",
            f"(+86) {d[:3]} {d[3:7]} {d[7:]}",
        ]
    elif ps == "jp":
        forms = [f"+81 {d[:2]}-{d[2:6]}-{d[6:]}", f"0{d[:2]}-{d[2:6]}-{d[6:]}", f"0{d}", f"+81{d}"]
    elif ps == "hk":
        forms = [f"+852 {d[:4]} {d[4:]}", d, f"+852{d}", f"{d[:4]}-{d[4:]}"]
    elif ps == "de":
        forms = [f"+49 {d[:3]} {d[3:]}", f"0{d}", f"+49{d}", f"0{d[:3]} {d[3:7]} {d[7:]}"]
    else:
        forms = [f"+1 ({d[:3]}) {d[3:6]}-{d[6:]}", f"{d[:3]}-{d[3:6]}-{d[6:]}", d, f"+1{d}"]
    return forms[int(rng.integers(len(forms)))]


def email_variant(ti: TrueIdentity, rng: np.random.Generator, source: str) -> str:
    """How a source writes the e-mail."""
    local, domain = ti.email.split("@")
    u = rng.random()
    if u < 0.15:
        local = ".".join(part.capitalize() for part in local.split("."))
    elif u < 0.2:
        local, domain = local.upper(), domain.upper()
    elif u < 0.26:
        local = _typo(local, rng)
    elif u < 0.31:
        domain = DOMAIN_TYPOS.get(domain, domain)
    elif u < 0.36 and source in ("dealer_crm", "app"):
        local, domain = f"{ti.given}.{ti.family}".lower(), "corp-mail.com"
    return f"{local}@{domain}"


def _vin_typo(vin: str, rng: np.random.Generator) -> str:
    swaps = {"0": "O", "1": "I", "8": "B", "5": "S"}
    idx = [i for i, c in enumerate(vin) if c in swaps]
    if not idx:
        return vin
    i = idx[int(rng.integers(len(idx)))]
    return vin[:i] + swaps[vin[i]] + vin[i + 1 :]


def _ts_us(d: date, seconds: float) -> int:
    return int((datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() + seconds) * US)


def accounts_for(
    person: Person,
    spec: VehicleSpec,
    ti: TrueIdentity,
    seed: int,
    start: date,
    dealer_id: str,
    rng: np.random.Generator,
) -> list[Account]:
    """The person's accounts (see the module doc)."""
    city = person.city_obj
    district = district_of(city, person.home_lat, person.home_lon)
    chosen = [(src, pre) for src, pre, p in SOURCES if rng.random() < p]
    if not chosen:
        chosen = [("owner", "OWN")]
    if ("ecommerce", "EC") in chosen and rng.random() < 0.06:
        chosen.append(("ecommerce", "EC"))
    out: list[Account] = []
    reg = spec.registration_date
    seen: dict[str, int] = {}
    for src, pre in chosen:
        j = seen.get(src, 0)
        seen[src] = j + 1
        if src == "owner":
            created = reg + timedelta(days=int(rng.integers(0, 4)))
        elif src == "app":
            created = min(
                reg + timedelta(days=int(rng.integers(0, 200))), start - timedelta(days=1)
            )
        elif src == "ecommerce":
            created = start - timedelta(days=int(rng.integers(200, 2000)))
        else:
            created = reg - timedelta(days=int(rng.integers(1, 45)))
        p_email = {"owner": 0.7, "app": 0.8, "ecommerce": 1.0, "dealer_crm": 0.6}[src]
        p_phone = {"owner": 0.98, "app": 0.9, "ecommerce": 0.95, "dealer_crm": 0.97}[src]
        if src == "owner":
            vin: str | None = spec.vin
        elif src == "dealer_crm":
            vin = (
                (_vin_typo(spec.vin, rng) if rng.random() < 0.03 else spec.vin)
                if rng.random() < 0.95
                else None
            )
        elif src == "app":
            vin = spec.vin if rng.random() < 0.7 else None
        else:
            vin = None
        by = person.birth_year + (int(rng.choice([-1, 1])) if rng.random() < 0.05 else 0)
        p_by = {"owner": 0.9, "app": 0.6, "ecommerce": 0.5, "dealer_crm": 0.8}[src]
        cvar = CITY_VARIANTS[city.name]
        city_s = cvar[0] if rng.random() < 0.6 else cvar[int(rng.integers(len(cvar)))]
        if src == "owner":
            attrs: dict[str, Any] = {
                "ownership": "company lease" if rng.random() < 0.1 else "private",
                "purchase_channel": "online" if rng.random() < 0.25 else "dealer",
            }
        elif src == "app":
            attrs = {
                "app_version": f"5.{int(rng.integers(0, 9))}.{int(rng.integers(0, 20))}",
                "os": "ios" if rng.random() < 0.45 else "android",
                "push_enabled": bool(rng.random() < 0.7),
            }
        elif src == "ecommerce":
            attrs = {
                "member_level": str(
                    rng.choice(["bronze", "silver", "gold", "platinum"], p=[0.45, 0.3, 0.18, 0.07])
                ),
                "points": int(rng.integers(0, 20000)),
            }
        else:
            attrs = {
                "dealer_id": dealer_id,
                "sales_consultant": make_id("SC", seed, dealer_id, int(rng.integers(12)), size=3),
                "lead_source": str(rng.choice(["walk_in", "online", "referral", "event"])),
            }
        row: dict[str, Any] = {
            "account_id": make_id(pre, seed, person.k, src, j),
            "source": src,
            "vin": vin,
            "name": name_variant(ti, rng, src),
            "phone": phone_variant(ti, rng) if rng.random() < p_phone else None,
            "email": email_variant(ti, rng, src) if rng.random() < p_email else None,
            "birth_year": by if rng.random() < p_by else None,
            "gender": person.gender if rng.random() < 0.8 else None,
            "city": city_s,
            "district": district if rng.random() < 0.85 else None,
            "occupation": person.occupation if (src != "owner" and rng.random() < 0.5) else None,
            "timezone": person.timezone
            if rng.random() < {"owner": 0.95, "app": 0.9, "ecommerce": 0.5, "dealer_crm": 0.3}[src]
            else None,
            "created_at": None,
            "attributes": json.dumps(attrs, sort_keys=True),
        }
        created_us = _ts_us(created, 0.0) + int(float(rng.uniform(8, 21)) * 3600 * US)
        row["created_at"] = created_us
        out.append(Account(str(row["account_id"]), src, created_us, row, j > 0))
    return out


_NATIVE = {
    "owner": ("head_unit",),
    "app": ("app",),
    "ecommerce": ("sms", "email"),
    "dealer_crm": ("sms", "email"),
}
_CAPTURE = {
    "owner": "head_unit_setup",
    "app": "app_onboarding",
    "ecommerce": "web_checkout",
    "dealer_crm": "dealer_form",
}


def consent_rows(
    person: Person,
    accounts: list[Account],
    t_start_us: int,
    t_end_us: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Consent history rows (given/refused at creation, some withdrawn in the window)."""
    rows: list[dict[str, Any]] = []
    for acc in accounts:
        items: list[tuple[str, str, float]] = []
        resp = {
            "head_unit": person.resp_head_unit,
            "app": person.resp_app,
            "sms": person.resp_sms,
            "email": person.resp_email,
        }
        for ch in _NATIVE[acc.source]:
            items.append(("marketing", ch, min(0.95, 0.55 + 2.0 * resp[ch])))
        items.append(("analytics", "any", 0.9))
        items.append(("partner_sharing", "any", 0.3))
        if acc.source in ("owner", "app"):
            items.append(("ubi", "any", 0.3 + 0.35 * (1 - person.aggressiveness)))
        for purpose, ch, p in items:
            granted = bool(rng.random() < p)
            ts = acc.created_at_us + int(rng.integers(1, 600)) * US
            rows.append(
                {
                    "account_id": acc.account_id,
                    "purpose": purpose,
                    "channel": ch,
                    "granted": granted,
                    "ts": ts,
                    "source": _CAPTURE[acc.source],
                }
            )
            if granted and rng.random() < 0.02:
                wts = int(rng.integers(t_start_us, t_end_us)) // US * US
                rows.append(
                    {
                        "account_id": acc.account_id,
                        "purpose": purpose,
                        "channel": ch,
                        "granted": False,
                        "ts": wts,
                        "source": "preference_centre",
                    }
                )
    return rows
