"""Property tests (hypothesis) for the parsers and the conversions."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pint
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopersona.ingest.engine import ingest
from autopersona.ingest.readers import blank_lines
from autopersona.store.warehouse import Warehouse
from autopersona.units import affine

CATS = ["park", "office", "restaurant", "nonsense"]
cell = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda x: f"{x:.6g}"),
    st.sampled_from(["", "abc", " 12 ", "1e3", "-0"]),
)
row = st.tuples(
    st.text("abcdef", min_size=1, max_size=3),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8),
    st.sampled_from(CATS),
    cell,
    cell,
)


def _expected_ok(r: tuple[str, str, str, str, str]) -> bool:
    def num(s: str, lo: float, hi: float) -> bool:
        try:
            v = float(s.strip())
        except ValueError:
            return False
        return lo <= v <= hi

    return r[2] != "nonsense" and num(r[3], -90, 90) and num(r[4], -180, 180)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(row, max_size=25))
def test_csv_every_row_is_accounted_for(rows: list[tuple[str, str, str, str, str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["poi_id", "name", "category", "lat", "lon"])
    w.writerows(rows)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "pois.csv"
        p.write_text(buf.getvalue(), encoding="utf-8")
        with Warehouse(":memory:") as wh:
            rep = ingest([p], wh)
            assert rep.read == len(rows)
            assert rep.read == rep.loaded + rep.duplicates + rep.quarantined
            # which rows are valid is decided exactly as a plain reading would
            valid = [r for r in rows if _expected_ok(r)]
            first_by_key: dict[str, tuple[str, ...]] = {}
            exp_loaded = 0
            for r in valid:
                key = r[0]
                norm = (r[0], r[1].strip(), r[2], float(r[3]), float(r[4]))
                if key not in first_by_key:
                    first_by_key[key] = norm  # type: ignore[assignment]
                    exp_loaded += 1
            assert rep.loaded == exp_loaded
            lines = wh.sql("SELECT row_number FROM _quarantine")
            assert all(2 <= n <= len(rows) + 1 for (n,) in lines)


@settings(max_examples=100, deadline=None)
@given(
    lines=st.lists(st.sampled_from(["a,b", "", "   ", "\r", "x", "1,2,3"]), max_size=40),
    crlf=st.booleans(),
    final_newline=st.booleans(),
)
def test_blank_lines_matches_a_naive_scan(
    lines: list[str], crlf: bool, final_newline: bool
) -> None:
    nl = "\r\n" if crlf else "\n"
    text = nl.join(lines) + (nl if final_newline and lines else "")
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.csv"
        p.write_bytes(text.encode())
        pieces = text.encode().split(b"\n") if text else []
        naive = [i + 1 for i, ln in enumerate(pieces) if not ln.strip(b" \t\r")]
        # a final newline does not start a further line
        if text.endswith("\n") and naive and naive[-1] == len(text.encode().split(b"\n")):
            naive = naive[:-1]
        assert blank_lines(p) == naive


UNITS = [
    ("km/h", "m/s"),
    ("mph", "m/s"),
    ("ft", "m"),
    ("lb", "kg"),
    ("degF", "degC"),
    ("g", "m/s^2"),
    ("mi", "km"),
    ("%", "%"),
]


UREG = pint.UnitRegistry()


@settings(deadline=None)
@given(pair=st.sampled_from(UNITS), x=st.floats(-1e6, 1e6, allow_nan=False))
def test_affine_agrees_with_pint(pair: tuple[str, str], x: float) -> None:
    src, dst = pair
    a, b = affine(src, dst)
    ureg = UREG
    alias = {"%": "percent", "g": "g0", "m/s^2": "m/s**2"}
    expect = ureg.Quantity(x, alias.get(src, src)).to(alias.get(dst, dst)).magnitude
    assert a * x + b == pytest.approx(expect, rel=1e-9, abs=1e-6)


def test_incompatible_units_are_refused() -> None:
    from autopersona.units import UnitError

    with pytest.raises(UnitError, match="cannot convert 'km/h' to 'kg'"):
        affine("km/h", "kg")
    with pytest.raises(UnitError, match="cannot convert 'GBP' to 'CNY'"):
        affine("GBP", "CNY")
