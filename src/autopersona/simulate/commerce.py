"""E-commerce behaviour: clickstream, orders, reviews and customer-service chats.

A shared product catalogue (seed-only) has ten categories with three brands each. Every
e-commerce account of a person browses from ``COMMERCE_HISTORY_DAYS`` before the window
to its end:

* sessions are a Poisson process at ``shop_sessions_per_week`` decaying as
  ``exp(-2.5 churn t / T)`` over the period (high-churn customers fade out), starting
  around the person's usual shopping hour (local time);
* a session focuses on one category drawn from the lifestyle's preferences (BEV owners
  add charging equipment, aggressive drivers performance parts), optionally starts with a
  search, views 1 + Geometric products (favourite brands 60 % of the time), favourites
  some, adds to cart with probability falling with price x price sensitivity and rising
  with aftermarket propensity for car-related categories, removes some (with a reason)
  and buys the rest with probability ``0.55 + 0.2 p``;
* a purchase is an order (lines from 1, quantity, unit price after any coupon, CNY) and
  one ``purchase`` event per line; 4–14 % of orders (more for price-sensitive people) are
  cancelled later: a ``cancel`` event per line and a cancellation order ``C<order_id>`` with
  negative quantities;
* discretionary aftermarket purchases the vehicle side placed online
  (:func:`autopersona.simulate.business.business_events`, ``online_purchases``) are bought
  on the person's main account (:func:`main_account`): 1–3 research sessions in the two
  weeks before (views of the category, sometimes an add-to-cart), then a session that
  views, adds to cart and buys the product; the order is fitted to the car (``vin`` set
  90 % of the time) and not cancelled;
* car-related browsing follows the aftermarket propensity ``p``: the weight of car-related
  categories in a session's focus is multiplied by ``0.4 + 1.2 p``, their add-to-cart
  probability by ``0.3 + 1.4 p``;
* reviews follow 20–40 % of kept purchases 3–14 days later with a rating
  ``round(3.6 + 1.6 satisfaction + quality + N(0, 0.6))`` and text composed from phrase
  pools along a per-rating clause plan (:func:`review_text`: varied wording whose sentiment
  follows the rating, mixed clauses in the middle); chats follow cancellations and bad
  reviews.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from autopersona.simulate.identity import Account
from autopersona.simulate.ids import make_id, shared_rng
from autopersona.simulate.truth import Person, VehicleSpec

__all__ = [
    "CATEGORIES",
    "Catalogue",
    "catalogue",
    "commerce_rows",
    "main_account",
    "review_text",
]

US = 1_000_000
DAY = 86400

#: category -> (brands, (min, max) price in CNY, product nouns, car-related)
CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[float, float], tuple[str, ...], bool]] = {
    "car_accessories": (
        ("Autonix", "DriveMate", "Carlife"),
        (40, 900),
        ("phone holder", "seat cover", "floor mats", "dash cam", "sunshade", "trunk organiser"),
        True,
    ),
    "tyres": (
        ("RoadMaster", "Grippa", "Tornado"),
        (450, 1800),
        (
            "all-season tyre 225/45 R18",
            "winter tyre 205/55 R16",
            "performance tyre 245/40 R19",
            "SUV tyre 235/60 R18",
        ),
        True,
    ),
    "charging_equipment": (
        ("Voltix", "ChargePro", "Ampera"),
        (300, 4500),
        ("7 kW wall box", "portable charger 3.5 kW", "Type 2 cable", "charging adapter"),
        True,
    ),
    "camping_gear": (
        ("TrailPeak", "NorthCamp", "Wildway"),
        (80, 3000),
        ("roof tent", "camping chair", "portable fridge", "car awning", "camping lantern"),
        False,
    ),
    "child_seats": (
        ("SafeNest", "KiddoRide", "Guardian"),
        (600, 3500),
        ("ISOFIX child seat", "booster seat", "infant carrier"),
        False,
    ),
    "audio": (
        ("SonicWave", "Bassline", "Clarity"),
        (200, 6000),
        ("speaker upgrade kit", "subwoofer", "amplifier", "DSP processor"),
        True,
    ),
    "cleaning": (
        ("ShineUp", "CleanPro", "Aquaclear"),
        (25, 300),
        ("car shampoo", "ceramic spray", "interior cleaner", "microfiber towels", "glass cleaner"),
        True,
    ),
    "performance_parts": (
        ("Brembix", "TrackLine", "Apex"),
        (400, 8000),
        ("performance brake pads", "brake discs", "sport air filter", "coilover kit"),
        True,
    ),
    "maintenance_parts": (
        ("OEMPlus", "FilterMax", "LubeTech"),
        (50, 800),
        ("engine oil 4L", "cabin air filter", "wiper blades", "coolant"),
        True,
    ),
    "electronics": (
        ("Navix", "ViewMax", "SmartDash"),
        (150, 2500),
        ("head-up display", "tyre pressure sensor", "wireless CarPlay adapter", "rear camera"),
        True,
    ),
}
CAT_NAMES = tuple(CATEGORIES)
CAR_RELATED = np.array([CATEGORIES[c][3] for c in CAT_NAMES])
PREFS: dict[str, dict[str, float]] = {
    "business_elite": {
        "car_accessories": 0.2,
        "audio": 0.2,
        "electronics": 0.2,
        "cleaning": 0.15,
        "tyres": 0.1,
        "performance_parts": 0.1,
        "charging_equipment": 0.05,
    },
    "family": {
        "child_seats": 0.3,
        "car_accessories": 0.2,
        "cleaning": 0.2,
        "camping_gear": 0.1,
        "maintenance_parts": 0.1,
        "tyres": 0.1,
    },
    "outdoor": {
        "camping_gear": 0.4,
        "car_accessories": 0.15,
        "tyres": 0.15,
        "charging_equipment": 0.1,
        "electronics": 0.1,
        "cleaning": 0.1,
    },
    "trend_seeker": {
        "audio": 0.25,
        "electronics": 0.25,
        "car_accessories": 0.2,
        "performance_parts": 0.15,
        "cleaning": 0.15,
    },
}
REMOVE_REASONS = ("price_too_high", "found_cheaper_elsewhere", "changed_mind", "shipping_too_slow")
CANCEL_REASONS = (
    "ordered_by_mistake",
    "found_cheaper_elsewhere",
    "delivery_too_slow",
    "changed_mind",
    "price_too_high",
)
#: Review phrase pools by polarity; :func:`review_text` composes a review from them.
REVIEW_PHRASES: dict[str, tuple[str, ...]] = {
    "strong_pos": (
        "absolutely love {it}",
        "{it} exceeded my expectations",
        "best purchase I have made for the car this year",
        "{it} is superb, perfect fit and finish",
        "outstanding quality, feels premium",
        "fantastic, works exactly as described",
        "brilliant value, I would buy {it} again in a heartbeat",
        "top notch, my partner wants one too",
    ),
    "pos": (
        "{it} works well",
        "good quality for the money",
        "easy to install, took ten minutes",
        "fits my car nicely",
        "delivery was quick and the packaging was solid",
        "does what it says",
        "solid build and nice finish",
        "happy with {it} so far",
        "instructions were clear and setup was painless",
        "seller answered my question quickly",
        "noticeably better than the one I had before",
        "looks great in the car",
    ),
    "mild_neg": (
        "delivery took a few days longer than promised",
        "the manual could be clearer",
        "a bit pricey",
        "the colour is slightly different from the photos",
        "the box arrived a little dented",
        "fitting it was fiddly",
    ),
    "neutral": (
        "{it} is okay, nothing special",
        "average, does the job",
        "it works but I expected more for the price",
        "fine for occasional use",
        "not bad, not great",
        "acceptable quality, time will tell",
        "mixed feelings about {it}",
    ),
    "neg": (
        "{it} stopped working after a week",
        "poor build quality, feels cheap",
        "does not fit my model despite the listing",
        "it rattles constantly while driving",
        "arrived with a scratch and a missing screw",
        "the app that goes with {it} keeps crashing",
        "customer service never replied to my emails",
        "far too expensive for what you get",
        "instructions are useless and installation was a nightmare",
        "it overheats on long trips",
    ),
    "strong_neg": (
        "{it} broke on the second day, total waste of money",
        "terrible, I am sending {it} back",
        "worst purchase I have made in years",
        "dangerous, it came loose on the motorway",
        "complete rubbish, avoid",
        "awful quality and a refund is taking forever",
    ),
    "pos_close": (
        "Highly recommend.",
        "Five stars from me.",
        "Will buy again.",
        "Would recommend to friends.",
        "Great value.",
        "",
    ),
    "neg_close": (
        "Would not recommend.",
        "Very disappointed.",
        "Returning it.",
        "Avoid this one.",
        "Not worth it.",
        "",
    ),
    "neutral_close": ("It will do for now.", "Three stars.", "Okay for the price.", ""),
}
#: Clause plan per star rating: pools to draw one clause each from, then the closing pool.
REVIEW_PLANS: dict[int, tuple[tuple[tuple[str, ...], str], ...]] = {
    5: (
        (("strong_pos", "pos"), "pos_close"),
        (("strong_pos",), "pos_close"),
        (("pos", "strong_pos"), "pos_close"),
    ),
    4: ((("pos",), "pos_close"), (("pos", "pos"), "pos_close"), (("pos", "mild_neg"), "")),
    3: (
        (("neutral",), "neutral_close"),
        (("pos", "neg"), "neutral_close"),
        (("neutral", "mild_neg"), ""),
    ),
    2: ((("neg",), "neg_close"), (("neg", "mild_neg"), ""), (("pos", "neg"), "neg_close")),
    1: (
        (("strong_neg",), "neg_close"),
        (("strong_neg", "neg"), "neg_close"),
        (("neg", "strong_neg"), ""),
    ),
}


def review_text(rating: int, noun: str, key: str) -> str:
    """Review text for a star ``rating`` about a product ``noun``, varied by ``key``.

    The phrasing is drawn from :data:`REVIEW_PHRASES` along one of the rating's clause plans
    (two-clause plans mix polarities, so a four-star review may grumble about delivery),
    with a generator seeded from ``key`` (the message id): the same key gives the same text
    and the vehicle's random streams are untouched.

    >>> review_text(5, "dash cam", "MSG-1") == review_text(5, "dash cam", "MSG-1")
    True
    >>> len({review_text(4, "seat cover", f"MSG-{i}") for i in range(50)}) > 30
    True
    """
    import hashlib

    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    r = np.random.default_rng(h)
    plans = REVIEW_PLANS[int(rating)]
    pools, close = plans[int(r.integers(len(plans)))]
    it = ("the " if r.random() < 0.6 else "this ") + noun
    clauses = []
    for pool in pools:
        phrases = REVIEW_PHRASES[pool]
        clauses.append(phrases[int(r.integers(len(phrases)))].format(it=it))
        it = "it"
    joiner = (
        (" but " if "neg" in pools[-1] and "pos" in pools[0] else ", ") if len(pools) > 1 else ""
    )
    text = joiner.join(clauses)
    text = text[0].upper() + text[1:] + "."
    if close:
        phrases = REVIEW_PHRASES[close]
        tail = phrases[int(r.integers(len(phrases)))]
        text = f"{text} {tail}".strip()
    if r.random() < 0.15:  # typed quickly on a phone
        text = text.lower().rstrip(".")
    return text


CHAT_TEXT = {
    "cancel": (
        "Hi, I want to cancel my order please, {reason}.",
        "Please cancel this order, {reason}. Thanks.",
    ),
    "complaint": (
        "The item I received is not working properly, what can I do?",
        "I am unhappy with this purchase, can I get a refund?",
    ),
    "question": (
        "Does this fit a {model}?",
        "When will this be back in stock?",
        "Is there a discount if I buy two?",
    ),
}


@dataclass(frozen=True)
class Catalogue:
    """Products of the shared catalogue (arrays indexed by product)."""

    product_id: list[str]
    category: list[str]
    brand: list[str]
    description: list[str]
    price: np.ndarray[Any, np.dtype[np.float64]]
    quality: np.ndarray[Any, np.dtype[np.float64]]
    cat_index: np.ndarray[Any, np.dtype[np.int64]]


@lru_cache(maxsize=4)
def catalogue(seed: int) -> Catalogue:
    """The product catalogue of ``seed`` (30 products per category)."""
    rng = shared_rng(seed, "catalogue")
    pid, cat, brand, desc, price, qual, ci = [], [], [], [], [], [], []
    for c_i, (c, (brands, (lo, hi), nouns, _)) in enumerate(CATEGORIES.items()):
        for j in range(30):
            b = brands[j % len(brands)]
            noun = nouns[int(rng.integers(len(nouns)))]
            variant = ("", " Pro", " Plus", " Lite", " Max")[int(rng.integers(5))]
            pid.append(make_id("SKU", seed, c, j, size=4))
            cat.append(c)
            brand.append(b)
            desc.append(f"{b} {noun}{variant}")
            price.append(round(float(np.exp(rng.uniform(math.log(lo), math.log(hi)))), 0) - 0.1)
            qual.append(float(rng.normal(0, 0.5)))
            ci.append(c_i)
    return Catalogue(pid, cat, brand, desc, np.array(price), np.array(qual), np.array(ci))


def _prefs(p: Person, spec: VehicleSpec) -> np.ndarray[Any, np.dtype[np.float64]]:
    w = np.array([PREFS[p.lifestyle].get(c, 0.02) for c in CAT_NAMES])
    if spec.energy_type == "BEV":
        w[CAT_NAMES.index("charging_equipment")] += 0.15
    if p.driving_style == "aggressive":
        w[CAT_NAMES.index("performance_parts")] += 0.1
    w = w * np.where(CAR_RELATED, 0.4 + 1.2 * p.aftermarket_propensity, 1.0)
    return np.asarray(w / w.sum())


def main_account(accounts: list[Account]) -> Account | None:
    """The person's main e-commerce account (the first that is not a duplicate), if any."""
    return next((a for a in accounts if a.source == "ecommerce" and not a.duplicate), None)


def _event(
    cat: Catalogue,
    event_id: str,
    customer_id: str,
    session_id: str,
    t_ev: int,
    kind: str,
    prod: int | None,
    query: str | None = None,
    reason: str | None = None,
    category: str | None = None,
) -> dict[str, Any]:
    """One ``commerce_events`` row, about product ``prod`` or none.

    Without a product, ``category`` names what the event was about (a search's category).
    """
    return {
        "event_id": event_id,
        "customer_id": customer_id,
        "session_id": session_id,
        "ts": t_ev * US,
        "event_type": kind,
        "product_id": cat.product_id[prod] if prod is not None else None,
        "category": cat.category[prod] if prod is not None else category,
        "brand": cat.brand[prod] if prod is not None else None,
        "price_cny": float(cat.price[prod]) if prod is not None else math.nan,
        "query": query,
        "cancel_reason": reason,
    }


def _order_line(
    cat: Catalogue,
    order_id: str,
    line_no: int,
    customer_id: str,
    t: int,
    prod: int,
    qty: int,
    unit: float,
    country: str,
    vin: str | None,
    *,
    category: str | None = None,
    cancellation: bool = False,
) -> dict[str, Any]:
    """One ``orders`` row for product ``prod`` (a cancellation has a negative quantity)."""
    return {
        "order_id": order_id,
        "line_no": line_no,
        "customer_id": customer_id,
        "ts": t * US,
        "product_id": cat.product_id[prod],
        "description": cat.description[prod],
        "category": category if category is not None else cat.category[prod],
        "brand": cat.brand[prod],
        "quantity": qty,
        "unit_price": unit,
        "currency": "CNY",
        "is_cancellation": cancellation,
        "country": country,
        "vin": vin,
    }


def commerce_rows(
    p: Person,
    spec: VehicleSpec,
    accounts: list[Account],
    seed: int,
    t_hist: int,
    t_end: int,
    tz_offset_s: int,
    rng: np.random.Generator,
    fitted: list[int] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Rows of ``commerce_events``, ``orders`` and ``reviews`` for the person's e-commerce accounts.

    ``fitted``: times (s) of the vehicle's discretionary purchases made online (bought on
    :func:`main_account`).
    """
    cat = catalogue(seed)
    prefs = _prefs(p, spec)
    events: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    reviews: list[dict[str, Any]] = []
    fav_brand = {c: CATEGORIES[c][0][int(rng.integers(3))] for c in CAT_NAMES}
    depth = 2 + 6 * (p.lifestyle == "trend_seeker") + float(rng.uniform(0, 4))
    country = p.city_obj.country
    main = main_account(accounts)
    for acc in (a for a in accounts if a.source == "ecommerce"):
        share = 0.3 if acc.duplicate else 1.0
        t0 = max(t_hist, acc.created_at_us // US)
        T = max(t_end - t0, DAY)
        rate_day = p.shop_sessions_per_week / 7 * share
        n_max = int(rng.poisson(rate_day * T / DAY))
        cand = np.sort(rng.uniform(t0, t_end, n_max))
        keep = rng.random(n_max) < np.exp(-2.5 * p.churn_propensity * (cand - t0) / T)
        n_ev = n_ord = n_msg = 0
        for t_day in cand[keep]:
            # move to around the shopping hour, local time
            day0 = (int(t_day) + tz_offset_s) // DAY * DAY - tz_offset_s
            t = int(day0 + (p.shop_hour + rng.normal(0, 1.2)) % 24 * 3600)
            if t >= t_end - 3600 or t < t0:
                continue
            sid = make_id("SES", seed, acc.account_id, n_ev)
            focus = int(rng.choice(len(CAT_NAMES), p=prefs))

            def ev(
                kind: str,
                t_ev: int,
                prod: int | None = None,
                query: str | None = None,
                reason: str | None = None,
                cust: str = acc.account_id,
                sid: str = sid,
                focus: int = focus,
            ) -> None:
                nonlocal n_ev
                n_ev += 1
                eid = make_id("EVT", seed, cust, n_ev, size=8)
                about = CAT_NAMES[focus] if kind == "search" else None
                events.append(_event(cat, eid, cust, sid, t_ev, kind, prod, query, reason, about))

            in_cat = np.flatnonzero(cat.cat_index == focus)
            if rng.random() < 0.5:
                nouns = CATEGORIES[CAT_NAMES[focus]][2]
                q = nouns[int(rng.integers(len(nouns)))]
                if rng.random() < 0.3:
                    q = f"{fav_brand[CAT_NAMES[focus]]} {q}"
                ev("search", t, query=q.lower())
                t += int(rng.integers(5, 40))
            n_views = 1 + int(rng.geometric(1 / depth)) - 1
            cart: list[int] = []
            for _ in range(n_views):
                if rng.random() < 0.8:
                    same = [int(i) for i in in_cat if cat.brand[i] == fav_brand[CAT_NAMES[focus]]]
                    pool = same if (same and rng.random() < 0.6) else [int(i) for i in in_cat]
                else:
                    pool = list(range(len(cat.product_id)))
                prod = int(pool[int(rng.integers(len(pool)))])
                ev("view", t, prod)
                t += int(rng.integers(10, 120))
                if rng.random() < 0.08:
                    ev("favourite", t, prod)
                    t += int(rng.integers(2, 20))
                related = CATEGORIES[cat.category[prod]][3]
                p_cart = 0.18 * (1.2 - p.price_sensitivity * min(cat.price[prod] / 1500, 1.0))
                if related:
                    p_cart *= 0.3 + 1.4 * p.aftermarket_propensity
                if prod not in cart and rng.random() < p_cart:
                    ev("add_cart", t, prod)
                    cart.append(prod)
                    t += int(rng.integers(5, 60))
            if rng.random() < 0.05:
                n_msg += 1
                model = f"{spec.brand} {spec.model}"
                txt = CHAT_TEXT["question"][int(rng.integers(3))].format(model=model)
                reviews.append(
                    _msg(
                        seed,
                        acc.account_id,
                        n_msg,
                        t,
                        "chat",
                        None,
                        None,
                        txt,
                        "app" if rng.random() < 0.6 else "web",
                    )
                )
            bought: list[int] = []
            for prod in cart:
                if rng.random() < 0.2 + 0.3 * p.price_sensitivity:
                    w = np.array(
                        [
                            0.35 + 0.5 * p.price_sensitivity,
                            0.25 * (1 + p.price_sensitivity),
                            0.3,
                            0.1,
                        ]
                    )
                    ev(
                        "remove_cart",
                        t,
                        prod,
                        reason=REMOVE_REASONS[int(rng.choice(4, p=w / w.sum()))],
                    )
                    t += int(rng.integers(5, 60))
                else:
                    bought.append(prod)
            if not bought or rng.random() >= 0.55 + 0.2 * p.aftermarket_propensity:
                continue
            n_ord += 1
            oid = make_id("ORD", seed, acc.account_id, n_ord, size=5)
            disc = (
                float(rng.choice([0.05, 0.1, 0.2]))
                if rng.random() < 0.15 + 0.5 * p.price_sensitivity
                else 0.0
            )
            lines = []
            for ln, prod in enumerate(bought, start=1):
                c = cat.category[prod]
                qty = (
                    int(rng.choice([2, 4]))
                    if c == "tyres"
                    else (int(rng.integers(1, 4)) if c in ("cleaning", "maintenance_parts") else 1)
                )
                unit = round(float(cat.price[prod]) * (1 - disc), 2)
                ev("purchase", t, prod)
                lines.append((ln, prod, qty, unit))
                vin = spec.vin if CATEGORIES[c][3] and rng.random() < 0.1 else None
                orders.append(
                    _order_line(
                        cat, oid, ln, acc.account_id, t, prod, qty, unit, country, vin, category=c
                    )
                )
            if rng.random() < 0.04 + 0.1 * p.price_sensitivity:
                tc = t + int(rng.uniform(0.5, 48) * 3600)
                if tc < t_end:
                    reason = CANCEL_REASONS[int(rng.integers(len(CANCEL_REASONS)))]
                    for ln, prod, qty, unit in lines:
                        ev("cancel", tc, prod, reason=reason)
                        orders.append(
                            _order_line(
                                cat,
                                "C" + oid,
                                ln,
                                acc.account_id,
                                tc,
                                prod,
                                -qty,
                                unit,
                                country,
                                None,
                                cancellation=True,
                            )
                        )
                    if rng.random() < 0.5:
                        n_msg += 1
                        txt = CHAT_TEXT["cancel"][int(rng.integers(2))].format(
                            reason=reason.replace("_", " ")
                        )
                        reviews.append(
                            _msg(
                                seed,
                                acc.account_id,
                                n_msg,
                                tc + 60,
                                "chat",
                                cat.product_id[lines[0][1]],
                                None,
                                txt,
                                "app",
                            )
                        )
                continue
            for _, prod, _, _ in lines:
                if rng.random() < 0.2 + 0.2 * abs(p.satisfaction):
                    tr = t + int(rng.uniform(3, 14) * DAY)
                    if tr >= t_end:
                        continue
                    rating = int(
                        np.clip(
                            round(
                                3.6 + 1.6 * p.satisfaction + cat.quality[prod] + rng.normal(0, 0.6)
                            ),
                            1,
                            5,
                        )
                    )
                    n_msg += 1
                    rng.integers(3)  # kept: the stream drew the text variant here
                    noun = cat.description[prod].split(" ", 1)[1]
                    txt = review_text(rating, noun, make_id("MSG", seed, acc.account_id, n_msg))
                    reviews.append(
                        _msg(
                            seed,
                            acc.account_id,
                            n_msg,
                            tr,
                            "review",
                            cat.product_id[prod],
                            rating,
                            txt,
                            "app" if rng.random() < 0.7 else "web",
                        )
                    )
                    if rating <= 2 and rng.random() < 0.5:
                        n_msg += 1
                        txt = CHAT_TEXT["complaint"][int(rng.integers(2))]
                        reviews.append(
                            _msg(
                                seed,
                                acc.account_id,
                                n_msg,
                                tr + 3600,
                                "chat",
                                cat.product_id[prod],
                                None,
                                txt,
                                "phone" if rng.random() < 0.3 else "app",
                            )
                        )
        if acc is main and fitted:
            _fitted_purchases(
                p,
                spec,
                acc,
                seed,
                sorted(fitted),
                t0,
                t_end,
                tz_offset_s,
                n_ev,
                n_ord,
                rng,
                prefs=prefs,
                fav_brand=fav_brand,
                events=events,
                orders=orders,
            )
    events.sort(key=lambda r: (r["ts"], r["event_id"]))
    orders.sort(key=lambda r: (r["ts"], r["order_id"], r["line_no"]))
    reviews = [r for r in reviews if r["ts"] < t_end * US]
    reviews.sort(key=lambda r: (r["ts"], r["message_id"]))
    return {"commerce_events": events, "orders": orders, "reviews": reviews}


def _fitted_purchases(
    p: Person,
    spec: VehicleSpec,
    acc: Account,
    seed: int,
    times: list[int],
    t0: int,
    t_end: int,
    tz_offset_s: int,
    n_ev: int,
    n_ord: int,
    rng: np.random.Generator,
    *,
    prefs: np.ndarray[Any, np.dtype[np.float64]],
    fav_brand: dict[str, str],
    events: list[dict[str, Any]],
    orders: list[dict[str, Any]],
) -> None:
    """Research sessions and the order of each discretionary purchase at ``times`` (s)."""
    cat = catalogue(seed)
    w = prefs * CAR_RELATED
    w = w / w.sum()
    cust = acc.account_id

    def at_shop_hour(t_day: float) -> int:
        day0 = (int(t_day) + tz_offset_s) // DAY * DAY - tz_offset_s
        return int(day0 + (p.shop_hour + rng.normal(0, 1.2)) % 24 * 3600)

    def ev(kind: str, t_ev: int, sid: str, prod: int | None, query: str | None = None) -> None:
        nonlocal n_ev
        n_ev += 1
        eid = make_id("EVT", seed, cust, n_ev, size=8)
        events.append(_event(cat, eid, cust, sid, t_ev, kind, prod, query))

    for t_buy in times:
        t_pay = at_shop_hour(t_buy)
        if t_pay < t0 or t_pay >= t_end - 3600:
            continue
        focus = int(rng.choice(len(CAT_NAMES), p=w))
        name = CAT_NAMES[focus]
        in_cat = [int(i) for i in np.flatnonzero(cat.cat_index == focus)]
        same = [i for i in in_cat if cat.brand[i] == fav_brand[name]]
        pool = same if (same and rng.random() < 0.6) else in_cat
        pick = pool[int(rng.integers(len(pool)))]
        for _ in range(int(rng.integers(1, 4))):  # research before buying
            t = at_shop_hour(t_buy - float(rng.uniform(1, 14)) * DAY)
            if t < t0:
                continue
            sid = make_id("SES", seed, cust, n_ev)
            if rng.random() < 0.6:
                nouns = CATEGORIES[name][2]
                ev("search", t, sid, None, nouns[int(rng.integers(len(nouns)))].lower())
                events[-1]["category"] = name
                t += int(rng.integers(5, 40))
            for _ in range(int(rng.integers(2, 6))):
                prod = pick if rng.random() < 0.4 else in_cat[int(rng.integers(len(in_cat)))]
                ev("view", t, sid, prod)
                t += int(rng.integers(10, 120))
            if rng.random() < 0.3:
                ev("add_cart", t, sid, pick)
        t = t_pay
        sid = make_id("SES", seed, cust, n_ev)
        ev("view", t, sid, pick)
        t += int(rng.integers(10, 120))
        ev("add_cart", t, sid, pick)
        t += int(rng.integers(5, 60))
        ev("purchase", t, sid, pick)
        n_ord += 1
        c = cat.category[pick]
        qty = (
            int(rng.choice([2, 4]))
            if c == "tyres"
            else (int(rng.integers(1, 4)) if c in ("cleaning", "maintenance_parts") else 1)
        )
        oid = make_id("ORD", seed, cust, n_ord, size=5)
        unit = round(float(cat.price[pick]), 2)
        vin = spec.vin if rng.random() < 0.9 else None
        orders.append(
            _order_line(cat, oid, 1, cust, t, pick, qty, unit, p.city_obj.country, vin, category=c)
        )


def _msg(
    seed: int,
    cust: str,
    n: int,
    t: int,
    kind: str,
    product: str | None,
    rating: int | None,
    text: str,
    channel: str,
) -> dict[str, Any]:
    return {
        "message_id": make_id("MSG", seed, cust, n, size=8),
        "customer_id": cust,
        "ts": int(t) * US,
        "kind": kind,
        "product_id": product,
        "rating": rating,
        "text": text,
        "channel": channel,
    }
