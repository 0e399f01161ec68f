"""Mapping files: validated with file:line errors; built-in mappings all load."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopersona.catalog import CatalogError
from autopersona.ingest.mapping import builtin_mappings, load_mapping, resolve_mapping


def test_builtin_mappings_load() -> None:
    names = set(builtin_mappings())
    assert {"geolife", "twizy", "carobd", "ved", "online_retail", "hillstrom"} <= names
    for n in names:
        m = resolve_mapping(n)
        assert m.description and m.licence and m.source


def _load(tmp_path: Path, text: str) -> CatalogError:
    p = tmp_path / "m.yaml"
    p.write_text(text)
    with pytest.raises(CatalogError) as ei:
        load_mapping(p)
    return ei.value


BASE = """name: x
targets:
  - table: pois
    columns:
      poi_id: {from: id}
      category: {from: cat}
      lat: {from: la}
      lon: {from: lo, unit: deg}
"""


def test_unknown_column_and_unit_errors_point_at_lines(tmp_path: Path) -> None:
    err = _load(tmp_path, BASE + "      nope: {from: z}\n      name: {from: n, unit: km/h}\n")
    got = {(e.line, e.message) for e in err.errors}
    assert (9, "pois has no column 'nope'") in got
    assert (10, "name has no unit in the contract; remove unit") in got


def test_incompatible_unit(tmp_path: Path) -> None:
    text = BASE.replace("lon: {from: lo, unit: deg}", "lon: {from: lo, unit: kg}")
    err = _load(tmp_path, text)
    assert err.errors[0].line == 8
    assert "cannot convert 'kg' to 'deg'" in err.errors[0].message


def test_required_column_not_mapped(tmp_path: Path) -> None:
    err = _load(tmp_path, BASE.replace("      lat: {from: la}\n", ""))
    assert err.errors[0].message == "required column 'lat' is not mapped"
    assert err.errors[0].line == 4


def test_spec_needs_exactly_one_source(tmp_path: Path) -> None:
    err = _load(tmp_path, BASE.replace("{from: la}", "{from: la, value: 3}"))
    assert err.errors[0].line == 7
    assert "exactly one of from / value" in err.errors[0].message


def test_unknown_template_variable(tmp_path: Path) -> None:
    err = _load(tmp_path, BASE.replace("{from: id}", '{value: "p-{nope}"}'))
    assert err.errors[0].message == "unknown template variable {nope}"


def test_unknown_mapping_name() -> None:
    with pytest.raises(FileNotFoundError, match="built-in: "):
        resolve_mapping("not-a-mapping")
