"""JSON for the delivery hot path: orjson, with the standard library's results.

``dumps`` gives what ``json.dumps(obj, default=str, sort_keys=True)`` gives, in compact form
(a float subclass such as ``numpy.float64`` stays a number, anything else unknown becomes its
``str``); what orjson cannot encode (an integer beyond 64 bits) goes through :mod:`json`.

>>> from datetime import UTC, datetime
>>> dumps({"b": 1, "a": datetime(2026, 1, 1, tzinfo=UTC), "c": {"x": [1.5, None]}})
'{"a":"2026-01-01 00:00:00+00:00","b":1,"c":{"x":[1.5,null]}}'
>>> dumps({"n": 2**70})
'{"n":1180591620717411303424}'
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps", "dumps_bytes", "json_default"]

_OPTS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_NON_STR_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


def json_default(obj: Any) -> Any:
    """Orjson's fallback: a float subclass as a float, anything else unknown as its ``str``."""
    if isinstance(obj, float):
        return float(obj)
    return str(obj)


def dumps_bytes(obj: Any) -> bytes:
    """``obj`` as sorted, compact JSON (UTF-8 bytes)."""
    try:
        return orjson.dumps(obj, default=json_default, option=_OPTS)
    except orjson.JSONEncodeError:
        text = json.dumps(obj, default=str, sort_keys=True, separators=(",", ":"))
        return text.encode("utf-8")


def dumps(obj: Any) -> str:
    """``obj`` as sorted, compact JSON text."""
    return dumps_bytes(obj).decode("utf-8")
