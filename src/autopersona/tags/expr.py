r"""A small, safe expression language for rule tags, evaluated over pandas columns.

Expressions are written in a subset of Python syntax, parsed with :mod:`ast` and converted
into a whitelisted tree of this module's own nodes; an own interpreter evaluates that tree
column-wise.  Nothing is ever passed to ``eval``, ``exec`` or ``compile``.

Grammar (precedence from low to high)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum (cmp_op sum)*            # chained: a < b <= c  ==  a < b and b <= c
                | sum ["not"] "in" "[" literal ("," literal)* "]"
    cmp_op     := "<" | "<=" | ">" | ">=" | "==" | "!="
    sum        := term (("+" | "-") term)*
    term       := unary (("*" | "/" | "%") unary)*
    unary      := ("-" | "+") unary | atom
    atom       := NUMBER | STRING | "True" | "False" | "None" | NAME
                | FUNC "(" expr ("," expr)* ")" | "(" expr ")"
    FUNC       := "min" | "max" | "abs" | "coalesce" | "isnull" | "prev"

``NAME`` is a feature, a master-data column or another tag's id; ``prev(NAME)`` is the
feature's value in the entity's previous period.

Null semantics are SQL's: arithmetic and comparisons with a null give null, division by zero
gives null, ``and``/``or``/``not`` use three-valued (Kleene) logic, ``min``/``max`` skip
nulls, ``coalesce`` takes the first non-null argument and ``isnull`` is never null.  A rule's
``when`` fires only where it is true (null counts as not true).

Examples
--------
>>> import pandas as pd
>>> e = parse("msrp_cny > 400000 and energy_type in ['BEV', 'PHEV']")
>>> sorted(e.names())
['energy_type', 'msrp_cny']
>>> df = pd.DataFrame({"msrp_cny": [500000.0, 100000.0, None],
...                    "energy_type": ["BEV", "BEV", "BEV"]})
>>> e.evaluate(df).tolist()
[True, False, <NA>]
>>> parse("__import__('os')")
Traceback (most recent call last):
...
autopersona.tags.expr.ExprError: at column 1: function '__import__' is not allowed ...
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = ["FUNCTIONS", "MAX_LENGTH", "Expr", "ExprError", "Kind", "parse"]

#: Longest expression accepted (characters).
MAX_LENGTH = 2000
#: Deepest nesting of the converted tree.
_MAX_DEPTH = 60
#: Allowed functions and their arity (min, max or None for unbounded).
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "min": (2, None),
    "max": (2, None),
    "abs": (1, 1),
    "coalesce": (1, None),
    "isnull": (1, 1),
    "prev": (1, 1),
}

Kind = Literal["num", "bool", "str", "null"]
Scalar = float | int | str | bool | None


class ExprError(ValueError):
    """An expression that cannot be parsed or evaluated; ``pos`` is its 1-based column."""

    def __init__(self, message: str, pos: int = 1, source: str = "") -> None:
        self.pos = pos
        self.message = message
        self.source = source
        super().__init__(f"at column {pos}: {message}" + (f" in {source!r}" if source else ""))


# ----------------------------------------------------------------------------- tree
@dataclass(frozen=True)
class _Node:
    pos: int


@dataclass(frozen=True)
class _Lit(_Node):
    value: Scalar


@dataclass(frozen=True)
class _Name(_Node):
    name: str


@dataclass(frozen=True)
class _Unary(_Node):
    op: str  # "-", "+", "not"
    operand: _Node


@dataclass(frozen=True)
class _Bin(_Node):
    op: str  # + - * / %
    left: _Node
    right: _Node


@dataclass(frozen=True)
class _Cmp(_Node):
    ops: tuple[str, ...]
    operands: tuple[_Node, ...]


@dataclass(frozen=True)
class _In(_Node):
    operand: _Node
    options: tuple[Scalar, ...]
    negate: bool


@dataclass(frozen=True)
class _Bool(_Node):
    op: str  # "and", "or"
    operands: tuple[_Node, ...]


@dataclass(frozen=True)
class _Call(_Node):
    func: str
    args: tuple[_Node, ...]


_BINOPS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Mod: "%",
}
_CMPOPS: dict[type[ast.cmpop], str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}


def _col(src: str, node: ast.AST) -> int:
    """1-based character column of a node (ast offsets count UTF-8 bytes)."""
    off = getattr(node, "col_offset", 0) or 0
    return len(src.encode("utf-8")[:off].decode("utf-8", errors="ignore")) + 1


class _Converter:
    def __init__(self, src: str) -> None:
        self.src = src

    def fail(self, node: ast.AST, msg: str) -> ExprError:
        return ExprError(msg, _col(self.src, node), self.src)

    def literal(self, node: ast.AST) -> Scalar:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            v = self.literal(node.operand)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise self.fail(node, "only numbers can be negated in a list")
            return -v
        if isinstance(node, ast.Constant):
            c = node.value
            if isinstance(c, float) and not math.isfinite(c):
                raise self.fail(node, "numbers must be finite")
            if c is None or isinstance(c, bool | int | float | str):
                return c
        raise self.fail(node, "list items must be literals (numbers, strings, True/False/None)")

    def convert(self, node: ast.AST, depth: int = 0) -> _Node:
        if depth > _MAX_DEPTH:
            raise self.fail(node, "expression is nested too deeply")
        d = depth + 1
        pos = _col(self.src, node)
        if isinstance(node, ast.Constant):
            v = node.value
            if v is None or isinstance(v, bool | int | float | str):
                if isinstance(v, float) and not math.isfinite(v):
                    raise self.fail(node, "numbers must be finite")
                return _Lit(pos, v)
            raise self.fail(node, f"{type(v).__name__} literals are not allowed")
        if isinstance(node, ast.Name):
            if node.id in FUNCTIONS:
                raise self.fail(node, f"{node.id!r} is a function; call it with (...)")
            return _Name(pos, node.id)
        if isinstance(node, ast.UnaryOp):
            op = {ast.USub: "-", ast.UAdd: "+", ast.Not: "not"}.get(type(node.op))
            if op is None:
                raise self.fail(node, "operator '~' is not allowed")
            return _Unary(pos, op, self.convert(node.operand, d))
        if isinstance(node, ast.BinOp):
            bop = _BINOPS.get(type(node.op))
            if bop is None:
                raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")
            return _Bin(pos, bop, self.convert(node.left, d), self.convert(node.right, d))
        if isinstance(node, ast.BoolOp):
            name = "and" if isinstance(node.op, ast.And) else "or"
            return _Bool(pos, name, tuple(self.convert(v, d) for v in node.values))
        if isinstance(node, ast.Compare):
            if any(isinstance(o, ast.In | ast.NotIn) for o in node.ops):
                if len(node.ops) != 1:
                    raise self.fail(node, "'in' cannot be chained with other comparisons")
                right = node.comparators[0]
                if not isinstance(right, ast.List | ast.Tuple):
                    raise self.fail(right, "'in' needs a literal list, e.g. x in ['a', 'b']")
                if not right.elts:
                    raise self.fail(right, "'in' needs a non-empty list")
                opts = tuple(self.literal(e) for e in right.elts)
                return _In(
                    pos, self.convert(node.left, d), opts, isinstance(node.ops[0], ast.NotIn)
                )
            ops = []
            for o in node.ops:
                c = _CMPOPS.get(type(o))
                if c is None:
                    raise self.fail(node, f"comparison {type(o).__name__} is not allowed")
                ops.append(c)
            operands = (node.left, *node.comparators)
            return _Cmp(pos, tuple(ops), tuple(self.convert(x, d) for x in operands))
        if isinstance(node, ast.Call):
            fname = node.func.id if isinstance(node.func, ast.Name) else None
            if fname not in FUNCTIONS:
                shown = fname or ast.unparse(node.func)[:40]
                raise self.fail(
                    node, f"function {shown!r} is not allowed (allowed: {', '.join(FUNCTIONS)})"
                )
            if node.keywords:
                raise self.fail(node, f"{fname}() takes no keyword arguments")
            if any(isinstance(a, ast.Starred) for a in node.args):
                raise self.fail(node, f"{fname}() takes no *arguments")
            lo, hi = FUNCTIONS[fname]
            if len(node.args) < lo or (hi is not None and len(node.args) > hi):
                want = f"{lo}" if lo == hi else f"at least {lo}"
                raise self.fail(node, f"{fname}() takes {want} argument(s), got {len(node.args)}")
            if fname == "prev" and not isinstance(node.args[0], ast.Name):
                raise self.fail(node, "prev() takes a feature name")
            return _Call(pos, fname, tuple(self.convert(a, d) for a in node.args))
        if isinstance(node, ast.List | ast.Tuple):
            raise self.fail(node, "lists are only allowed after 'in'")
        what = type(node).__name__
        raise self.fail(node, f"{what} is not allowed in an expression")


def parse(source: str) -> Expr:
    """Parse ``source`` into an :class:`Expr`.

    Raises
    ------
    ExprError
        With the 1-based column of the problem, for any input that is not an expression of
        the language (never another exception).

    Examples
    --------
    >>> parse("1 < x <= 3").names()
    {'x'}
    >>> parse("x +")
    Traceback (most recent call last):
    ...
    autopersona.tags.expr.ExprError: at column 4: invalid syntax in 'x +'
    """
    if not isinstance(source, str):
        raise ExprError("an expression must be a string", 1)
    if len(source) > MAX_LENGTH:
        raise ExprError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH, "")
    text = source.strip()
    if not text:
        raise ExprError("empty expression", 1, source)
    if "\n" in text or "\r" in text:
        raise ExprError("an expression must be on one line", text.find("\n") + 1, source)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        msg = (exc.msg or "invalid syntax").split(" (")[0]
        off = int(exc.offset or 0)
        raise ExprError(msg, off if 0 < off <= len(text) else len(text) + 1, text) from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise ExprError(f"cannot parse: {type(exc).__name__}", 1, text) from None
    try:
        root = _Converter(text).convert(tree.body)
    except RecursionError:
        raise ExprError("expression is nested too deeply", 1, text) from None
    return Expr(text, root)


# ----------------------------------------------------------------------------- values
@dataclass(frozen=True)
class _Val:
    kind: Kind
    s: pd.Series  # num: float64 (NaN null); bool: "boolean"; str: object (None null)


def _null(n: int, index: pd.Index) -> _Val:
    return _Val("null", pd.Series([None] * n, index=index, dtype=object))


def _as_val(col: Any, index: pd.Index, pos: int, src: str, name: str) -> _Val:
    s = col if isinstance(col, pd.Series) else pd.Series(col)
    s = s.set_axis(index) if len(s) == len(index) else s
    if len(s) != len(index):
        raise ExprError(f"column {name!r} has {len(s)} rows, expected {len(index)}", pos, src)
    if s.dtype == "boolean" or pd.api.types.is_bool_dtype(s.dtype):
        return _Val("bool", s.astype("boolean"))
    if pd.api.types.is_numeric_dtype(s.dtype):
        return _Val("num", s.astype("float64"))
    obj = s.astype(object).where(s.notna(), None)
    non_null = [v for v in obj if v is not None]
    if not non_null:
        return _Val("null", obj)
    if all(isinstance(v, bool | np.bool_) for v in non_null):
        return _Val("bool", obj.astype("boolean"))
    if all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in non_null):
        return _Val("num", pd.to_numeric(obj).astype("float64"))
    if all(isinstance(v, str) for v in non_null):
        return _Val("str", obj)
    raise ExprError(f"column {name!r} mixes value types", pos, src)


def _kind_of(v: Scalar) -> Kind:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "num"
    return "str"


def _lit(v: Scalar, n: int, index: pd.Index) -> _Val:
    k = _kind_of(v)
    if k == "num":
        return _Val("num", pd.Series(np.full(n, float(v)), index=index))  # type: ignore[arg-type]
    if k == "bool":
        return _Val("bool", pd.Series([v] * n, index=index, dtype="boolean"))
    if k == "str":
        return _Val("str", pd.Series([v] * n, index=index, dtype=object))
    return _null(n, index)


def _na_bool(n: int, index: pd.Index) -> pd.Series:
    return pd.Series(pd.array([pd.NA] * n, dtype="boolean"), index=index)


class Expr:
    """A parsed expression; :meth:`evaluate` runs it over a frame.

    Parameters
    ----------
    source
        The expression text.
    root
        The converted tree (use :func:`parse`).
    """

    def __init__(self, source: str, root: _Node) -> None:
        self.source = source
        self._root = root

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"

    # -------------------------------------------------------------- introspection
    def _walk(self, node: _Node | None = None) -> Iterator[_Node]:
        node = self._root if node is None else node
        yield node
        children: tuple[_Node, ...] = ()
        if isinstance(node, _Unary):
            children = (node.operand,)
        elif isinstance(node, _Bin):
            children = (node.left, node.right)
        elif isinstance(node, _Cmp | _Bool):
            children = node.operands
        elif isinstance(node, _In):
            children = (node.operand,)
        elif isinstance(node, _Call):
            children = node.args
        for c in children:
            yield from self._walk(c)

    def names(self) -> set[str]:
        """Every name the expression reads (``prev(x)`` counts as ``x``).

        >>> sorted(parse("coalesce(a, prev(b)) > 1").names())
        ['a', 'b']
        """
        return {n.name for n in self._walk() if isinstance(n, _Name)}

    def name_positions(self) -> list[tuple[str, int]]:
        """``(name, column)`` of every name read, in order of appearance."""
        return sorted(
            ((n.name, n.pos) for n in self._walk() if isinstance(n, _Name)), key=lambda t: t[1]
        )

    def prev_names(self) -> set[str]:
        """Names read through ``prev(...)``.

        >>> parse("prev(frequency) - frequency > 3").prev_names()
        {'frequency'}
        """
        out = set()
        for n in self._walk():
            if isinstance(n, _Call) and n.func == "prev":
                a = n.args[0]
                assert isinstance(a, _Name)
                out.add(a.name)
        return out

    def compared_literals(self) -> list[tuple[str, Scalar, int]]:
        """``(name, literal, column)`` for every literal compared directly with a name.

        >>> parse("tier == 'luxury' or kind in ['BEV', 'PHEV']").compared_literals()
        [('tier', 'luxury', 1), ('kind', 'BEV', 21), ('kind', 'PHEV', 21)]
        """
        out: list[tuple[str, Scalar, int]] = []
        for n in self._walk():
            if isinstance(n, _Cmp):
                for a, b in zip(n.operands, n.operands[1:], strict=False):
                    if isinstance(a, _Name) and isinstance(b, _Lit):
                        out.append((a.name, b.value, n.pos))
                    elif isinstance(b, _Name) and isinstance(a, _Lit):
                        out.append((b.name, a.value, n.pos))
            elif isinstance(n, _In) and isinstance(n.operand, _Name):
                out.extend((n.operand.name, o, n.pos) for o in n.options)
        return out

    # -------------------------------------------------------------- evaluation
    def evaluate(self, frame: pd.DataFrame | Mapping[str, Any], n: int | None = None) -> pd.Series:
        """Evaluate over the columns of ``frame``, one result per row.

        ``prev(x)`` reads the column ``"prev(x)"``.  The result is ``float64`` for numbers
        (NaN for null), pandas ``boolean`` for conditions, ``object`` for strings.

        Raises
        ------
        ExprError
            On an unknown column or operands of the wrong type, with the column of the
            offending part of the expression.

        Examples
        --------
        >>> import pandas as pd
        >>> parse("max(a, b) / 2").evaluate(pd.DataFrame({"a": [1, None], "b": [3, None]})).tolist()
        [1.5, nan]
        """
        cols: pd.DataFrame | Mapping[str, Any] = frame
        if isinstance(frame, pd.DataFrame):
            index = frame.index
        else:
            if n is None:
                n = len(next(iter(frame.values()))) if frame else 1
            index = pd.RangeIndex(n)
        v = _Eval(self.source, cols, index).run(self._root)
        if v.kind == "null":
            return pd.Series([None] * len(index), index=index, dtype=object)
        return v.s

    def kind(self, frame: pd.DataFrame | Mapping[str, Any]) -> Kind:
        """Kind of the result over ``frame`` (``num``, ``bool``, ``str`` or ``null``)."""
        index = frame.index if isinstance(frame, pd.DataFrame) else pd.RangeIndex(1)
        return _Eval(self.source, frame, index).run(self._root).kind


class _Eval:
    def __init__(self, src: str, cols: pd.DataFrame | Mapping[str, Any], index: pd.Index) -> None:
        self.src = src
        self.cols = cols
        self.index = index
        self.n = len(index)

    def fail(self, node: _Node, msg: str) -> ExprError:
        return ExprError(msg, node.pos, self.src)

    def column(self, node: _Node, key: str) -> _Val:
        if key not in self.cols:
            raise self.fail(node, f"unknown name {key!r}")
        return _as_val(self.cols[key], self.index, node.pos, self.src, key)

    def run(self, node: _Node) -> _Val:
        if isinstance(node, _Lit):
            return _lit(node.value, self.n, self.index)
        if isinstance(node, _Name):
            return self.column(node, node.name)
        if isinstance(node, _Unary):
            v = self.run(node.operand)
            if node.op == "not":
                b = self.boolean(node.operand, v)
                return _Val("bool", ~b)
            x = self.number(node.operand, v, f"unary {node.op}")
            return _Val("num", -x if node.op == "-" else x)
        if isinstance(node, _Bin):
            a = self.number(node.left, self.run(node.left), node.op)
            b = self.number(node.right, self.run(node.right), node.op)
            return _Val("num", self.arith(node.op, a, b))
        if isinstance(node, _Bool):
            vals = [self.boolean(o, self.run(o)) for o in node.operands]
            out = vals[0]
            for v2 in vals[1:]:
                out = (out & v2) if node.op == "and" else (out | v2)
            return _Val("bool", out)
        if isinstance(node, _Cmp):
            terms = [self.run(o) for o in node.operands]
            res: pd.Series | None = None
            for i, op in enumerate(node.ops):
                c = self.compare(node.operands[i + 1], op, terms[i], terms[i + 1])
                res = c if res is None else (res & c)
            assert res is not None
            return _Val("bool", res)
        if isinstance(node, _In):
            v = self.run(node.operand)
            return _Val("bool", self.isin(node, v))
        if isinstance(node, _Call):
            return self.call(node)
        raise self.fail(node, "unsupported node")  # pragma: no cover

    # -------------------------------------------------------------- helpers
    def number(self, node: _Node, v: _Val, what: str) -> pd.Series:
        if v.kind == "null":
            return pd.Series(np.full(self.n, np.nan), index=self.index)
        if v.kind != "num":
            raise self.fail(node, f"{what} needs numbers, got {_NAMES[v.kind]}")
        return v.s

    def boolean(self, node: _Node, v: _Val) -> pd.Series:
        if v.kind == "null":
            return _na_bool(self.n, self.index)
        if v.kind != "bool":
            raise self.fail(node, f"and/or/not need conditions, got {_NAMES[v.kind]}")
        return v.s

    def arith(self, op: str, a: pd.Series, b: pd.Series) -> pd.Series:
        with np.errstate(all="ignore"):
            if op == "+":
                r = a + b
            elif op == "-":
                r = a - b
            elif op == "*":
                r = a * b
            else:
                zero = b == 0
                r = (a / b) if op == "/" else (a % b)
                r = r.mask(zero)
        r = r.astype("float64")
        return r.mask(~np.isfinite(r))

    def compare(self, node: _Node, op: str, a: _Val, b: _Val) -> pd.Series:
        if a.kind == "null" or b.kind == "null":
            return _na_bool(self.n, self.index)
        if a.kind != b.kind:
            raise self.fail(node, f"cannot compare {_NAMES[a.kind]} with {_NAMES[b.kind]}")
        if a.kind == "bool" and op not in ("==", "!="):
            raise self.fail(node, f"conditions can only be compared with == or !=, not {op}")
        nulls = a.s.isna().to_numpy() | b.s.isna().to_numpy()
        ok = ~nulls
        out = np.zeros(self.n, dtype=bool)
        if ok.any():
            x = a.s.to_numpy(dtype=object)[ok]
            y = b.s.to_numpy(dtype=object)[ok]
            if a.kind == "num":
                x, y = x.astype(float), y.astype(float)
            fn: Callable[[Any, Any], Any] = _CMP_FUNCS[op]
            out[ok] = np.asarray(fn(x, y), dtype=bool)
        arr = pd.array(out, dtype="boolean")
        arr[nulls] = pd.NA
        return pd.Series(arr, index=self.index)

    def isin(self, node: _In, v: _Val) -> pd.Series:
        if v.kind == "null":
            return _na_bool(self.n, self.index)
        opts = [o for o in node.options if o is not None]
        bad = [o for o in opts if _kind_of(o) != v.kind]
        if bad:
            raise self.fail(
                node, f"cannot test {_NAMES[v.kind]} against {_NAMES[_kind_of(bad[0])]} {bad[0]!r}"
            )
        nulls = v.s.isna().to_numpy()
        if v.kind == "num":
            hit = np.isin(v.s.to_numpy(dtype=float), np.asarray(opts, dtype=float))
        else:
            keys = set(opts)
            hit = np.array([x in keys for x in v.s.to_numpy(dtype=object)], dtype=bool)
        if node.negate:
            hit = ~hit
        arr = pd.array(hit, dtype="boolean")
        arr[nulls] = pd.NA
        return pd.Series(arr, index=self.index)

    def call(self, node: _Call) -> _Val:
        f = node.func
        if f == "prev":
            a = node.args[0]
            assert isinstance(a, _Name)
            return self.column(a, f"prev({a.name})")
        args = [self.run(a) for a in node.args]
        if f == "isnull":
            return _Val("bool", args[0].s.isna().astype("boolean"))
        if f == "abs":
            return _Val("num", self.number(node.args[0], args[0], "abs()").abs())
        if f in ("min", "max"):
            nums = [self.number(a, v, f"{f}()") for a, v in zip(node.args, args, strict=True)]
            frame = pd.concat(nums, axis=1)
            r = frame.min(axis=1, skipna=True) if f == "min" else frame.max(axis=1, skipna=True)
            return _Val("num", r.astype("float64"))
        # coalesce
        kinds = {v.kind for v in args} - {"null"}
        if len(kinds) > 1:
            raise self.fail(node, "coalesce() arguments must be of one type")
        kind = next(iter(kinds)) if kinds else "null"
        out = args[0].s
        for v in args[1:]:
            out = out.where(out.notna(), v.s)
        if kind == "num":
            out = out.astype("float64")
        elif kind == "bool":
            out = out.astype("boolean")
        return _Val(kind, out)


_NAMES: dict[str, str] = {
    "num": "a number",
    "bool": "a condition",
    "str": "a string",
    "null": "null",
}
_CMP_FUNCS: dict[str, Callable[[Any, Any], Any]] = {
    "<": lambda x, y: x < y,
    "<=": lambda x, y: x <= y,
    ">": lambda x, y: x > y,
    ">=": lambda x, y: x >= y,
    "==": lambda x, y: x == y,
    "!=": lambda x, y: x != y,
}
