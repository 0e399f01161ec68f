"""Units of measure for contracts and mappings, backed by pint.

Contracts declare a canonical unit per column (``m/s``, ``m/s^2``, ``km``, ``%``, ``degC``…);
mapping files declare the unit a source uses.  :func:`affine` returns ``(a, b)`` so that
``canonical = a * source + b``, which ingestion applies in SQL.  Currencies and dimensionless
labels (``CNY``, ``count``, ``deg`` for angles…) are not converted: source and contract must
agree.

Examples
--------
>>> a, b = affine("km/h", "m/s")
>>> round(a * 36 + b, 6)
10.0
>>> a, b = affine("degF", "degC")
>>> round(a * 212 + b, 6)
100.0
"""

from __future__ import annotations

from functools import lru_cache

import pint

__all__ = ["UnitError", "affine", "check_unit"]

#: Units pint does not convert: they must match exactly between source and contract.
OPAQUE_UNITS = frozenset(
    {"CNY", "GBP", "USD", "EUR", "count", "ratio", "score", "level", "rpm", "kW", "kWh"}
)

# Friendly aliases accepted in catalogue files.
_ALIASES = {"%": "percent", "m/s^2": "m/s**2", "g": "g0", "deg": "degree", "degC": "degC"}


class UnitError(ValueError):
    """An unknown unit, or a conversion between incompatible units."""


@lru_cache(maxsize=1)
def _registry() -> pint.UnitRegistry[float]:
    return pint.UnitRegistry(autoconvert_offset_to_baseunit=True)


def _pint_name(unit: str) -> str:
    return _ALIASES.get(unit, unit)


def check_unit(unit: str) -> None:
    """Raise :class:`UnitError` unless ``unit`` is known.

    >>> check_unit("m/s")
    >>> check_unit("kmh")
    Traceback (most recent call last):
    ...
    autopersona.units.UnitError: unknown unit 'kmh'
    """
    if unit in OPAQUE_UNITS:
        return
    try:
        _registry().Unit(_pint_name(unit))
    except (pint.errors.UndefinedUnitError, AttributeError, TypeError, ValueError) as exc:
        raise UnitError(f"unknown unit {unit!r}") from exc
    except Exception as exc:  # pint raises assorted parser errors for garbage strings
        raise UnitError(f"unknown unit {unit!r}") from exc


@lru_cache(maxsize=256)
def affine(source: str, target: str) -> tuple[float, float]:
    """Return ``(a, b)`` with ``target_value = a * source_value + b``.

    Raises
    ------
    UnitError
        If either unit is unknown or they measure different things.
    """
    check_unit(source)
    check_unit(target)
    if source == target:
        return 1.0, 0.0
    if source in OPAQUE_UNITS or target in OPAQUE_UNITS:
        raise UnitError(f"cannot convert {source!r} to {target!r}")
    reg = _registry()
    q = reg.Quantity
    try:
        zero = q(0.0, _pint_name(source)).to(_pint_name(target)).magnitude
        one = q(1.0, _pint_name(source)).to(_pint_name(target)).magnitude
    except pint.errors.DimensionalityError as exc:
        raise UnitError(f"cannot convert {source!r} to {target!r}: {exc}") from exc
    return float(one - zero), float(zero)
