"""One-row evaluation of tag-language expressions, for the live engine's per-event path.

:meth:`autopersona.tags.expr.Expr.evaluate` works column-wise over pandas; for a single live
event that costs milliseconds.  :func:`evaluate_one` walks the same parsed tree over plain
Python values with the same semantics (SQL nulls, Kleene logic, division by zero is null,
``min``/``max`` skip nulls), so a condition checked on one event agrees with the batch
evaluation of the same row (the tests compare both on generated rows).

Examples
--------
>>> from autopersona.tags.expr import parse
>>> evaluate_one(parse("route_km > remaining_range_km"), {"route_km": 420, "remaining_range_km": 150})
True
>>> evaluate_one(parse("x > 1 and y"), {"x": None, "y": False})
False
>>> evaluate_one(parse("coalesce(a, 0) / b"), {"a": None, "b": 0}) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from autopersona.tags.expr import (
    Expr,
    ExprError,
    _Bin,
    _Bool,
    _Call,
    _Cmp,
    _In,
    _Lit,
    _Name,
    _Node,
    _Unary,
)

__all__ = ["evaluate_one", "kind_of"]

_NAMES = {"num": "a number", "bool": "a condition", "str": "a string", "null": "null"}


def kind_of(v: Any) -> str:
    """``null``, ``bool``, ``num`` or ``str`` for a Python value (NaN is null)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "null" if isinstance(v, float) and math.isnan(v) else "num"
    if isinstance(v, str):
        return "str"
    try:  # numpy scalars
        import numpy as np

        if isinstance(v, np.bool_):
            return "bool"
        if isinstance(v, np.number):
            return "null" if np.isnan(v) else "num"
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"unsupported value {v!r}")


def _norm(v: Any) -> Any:
    k = kind_of(v)
    if k == "null":
        return None
    if k == "bool":
        return bool(v)
    if k == "num":
        return float(v)
    return v


class _One:
    def __init__(self, src: str, values: Mapping[str, Any]) -> None:
        self.src = src
        self.values = values

    def fail(self, node: _Node, msg: str) -> ExprError:
        return ExprError(msg, node.pos, self.src)

    def name(self, node: _Node, key: str) -> Any:
        if key not in self.values:
            raise self.fail(node, f"unknown name {key!r}")
        try:
            return _norm(self.values[key])
        except TypeError:
            raise self.fail(node, f"column {key!r} mixes value types") from None

    def num(self, node: _Node, v: Any, what: str) -> float | None:
        k = kind_of(v)
        if k == "null":
            return None
        if k != "num":
            raise self.fail(node, f"{what} needs numbers, got {_NAMES[k]}")
        return float(v)

    def cond(self, node: _Node, v: Any) -> bool | None:
        k = kind_of(v)
        if k == "null":
            return None
        if k != "bool":
            raise self.fail(node, f"and/or/not need conditions, got {_NAMES[k]}")
        return bool(v)

    def run(self, node: _Node) -> Any:
        if isinstance(node, _Lit):
            return _norm(node.value)
        if isinstance(node, _Name):
            return self.name(node, node.name)
        if isinstance(node, _Unary):
            v = self.run(node.operand)
            if node.op == "not":
                c = self.cond(node.operand, v)
                return None if c is None else not c
            x = self.num(node.operand, v, f"unary {node.op}")
            return None if x is None else (-x if node.op == "-" else x)
        if isinstance(node, _Bin):
            x1 = self.num(node.left, self.run(node.left), node.op)
            x2 = self.num(node.right, self.run(node.right), node.op)
            if x1 is None or x2 is None:
                return None
            if node.op in ("/", "%") and x2 == 0:
                return None
            if node.op == "+":
                r = x1 + x2
            elif node.op == "-":
                r = x1 - x2
            elif node.op == "*":
                r = x1 * x2
            elif node.op == "/":
                r = x1 / x2
            else:
                r = x1 % x2
            return r if math.isfinite(r) else None
        if isinstance(node, _Bool):
            vals = [self.cond(o, self.run(o)) for o in node.operands]
            if node.op == "and":
                if any(v is False for v in vals):
                    return False
                return None if any(v is None for v in vals) else True
            if any(v is True for v in vals):
                return True
            return None if any(v is None for v in vals) else False
        if isinstance(node, _Cmp):
            terms = [self.run(o) for o in node.operands]
            out: bool | None = True
            for i, op in enumerate(node.ops):
                c = self.compare(node.operands[i + 1], op, terms[i], terms[i + 1])
                if c is False or out is False:
                    out = False
                elif c is None:
                    out = None
            return out
        if isinstance(node, _In):
            v = self.run(node.operand)
            k = kind_of(v)
            if k == "null":
                return None
            opts = [o for o in node.options if o is not None]
            bad = [o for o in opts if kind_of(o) != k]
            if bad:
                raise self.fail(
                    node, f"cannot test {_NAMES[k]} against {_NAMES[kind_of(bad[0])]} {bad[0]!r}"
                )
            hit = any(_norm(o) == v for o in opts)
            return (not hit) if node.negate else hit
        if isinstance(node, _Call):
            return self.call(node)
        raise self.fail(node, "unsupported node")  # pragma: no cover

    def compare(self, node: _Node, op: str, a: Any, b: Any) -> bool | None:
        ka, kb = kind_of(a), kind_of(b)
        if ka == "null" or kb == "null":
            return None
        if ka != kb:
            raise self.fail(node, f"cannot compare {_NAMES[ka]} with {_NAMES[kb]}")
        if ka == "bool" and op not in ("==", "!="):
            raise self.fail(node, f"conditions can only be compared with == or !=, not {op}")
        if op == "<":
            return bool(a < b)
        if op == "<=":
            return bool(a <= b)
        if op == ">":
            return bool(a > b)
        if op == ">=":
            return bool(a >= b)
        if op == "==":
            return bool(a == b)
        return bool(a != b)

    def call(self, node: _Call) -> Any:
        f = node.func
        if f == "prev":
            a = node.args[0]
            assert isinstance(a, _Name)
            return self.name(a, f"prev({a.name})")
        args = [self.run(a) for a in node.args]
        if f == "isnull":
            return args[0] is None
        if f == "abs":
            x = self.num(node.args[0], args[0], "abs()")
            return None if x is None else abs(x)
        if f in ("min", "max"):
            nums = [self.num(a, v, f"{f}()") for a, v in zip(node.args, args, strict=True)]
            present = [x for x in nums if x is not None]
            if not present:
                return None
            return min(present) if f == "min" else max(present)
        kinds = {kind_of(v) for v in args} - {"null"}
        if len(kinds) > 1:
            raise self.fail(node, "coalesce() arguments must be of one type")
        return next((v for v in args if v is not None), None)


def evaluate_one(expr: Expr, values: Mapping[str, Any]) -> Any:
    """Evaluate ``expr`` on one row given as a mapping; ``prev(x)`` reads ``"prev(x)"``.

    Returns a float, bool, str or None (null).

    Raises
    ------
    ExprError
        On an unknown name or operands of the wrong type.
    """
    return _One(expr.source, values).run(expr._root)
