r"""Line-aware loading of declarative catalogue files (contracts, mappings, tags, strategies).

Every catalogue in autopersona is a YAML file validated by a pydantic model with
``extra="forbid"``.  This module keeps the YAML line of every mapping key and list item so
that a validation error can say *where* in the file the problem is::

    contracts/tables/motion.yaml:14: columns -> 3 -> unit: unknown unit 'kmh'

Examples
--------
>>> import tempfile, pathlib, pydantic
>>> class Item(pydantic.BaseModel):
...     model_config = pydantic.ConfigDict(extra="forbid")
...     name: str
>>> p = pathlib.Path(tempfile.mkdtemp()) / "x.yaml"
>>> _ = p.write_text("name: a\ncolour: red\n")
>>> try:
...     load_model(p, Item)
... except CatalogError as e:
...     print(e.errors[0].line, e.errors[0].path)
2 colour
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

__all__ = ["CatalogError", "CatalogIssue", "load_folder", "load_model", "load_yaml_with_lines"]

M = TypeVar("M", bound=pydantic.BaseModel)
T = TypeVar("T")
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class CatalogIssue:
    """One problem in a catalogue file, located by line and by path inside the document."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f" {self.path}:" if self.path else ""
        return f"{self.file}:{self.line}:{where} {self.message}"


class CatalogError(ValueError):
    """A catalogue file failed to parse or validate; ``errors`` lists every problem found."""

    def __init__(self, errors: Sequence[CatalogIssue]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def _construct(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        own = [_scalar(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
        seen: set[Any] = set()
        for k in own:
            if k in seen:
                dup = next(kn for kn, _ in reversed(node.value) if _scalar(kn) == k)
                raise CatalogError(
                    [CatalogIssue("", dup.start_mark.line + 1, _fmt((*loc, k)), "duplicate key")]
                )
            seen.add(k)
        # Merge keys (<<: *anchor): merged entries first, the mapping's own keys override.
        yaml.constructor.SafeConstructor().flatten_mapping(node)
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if key in out and key in own:
                out.pop(key)
            elif key in out:
                continue  # an earlier merge source wins over a later one
            lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, (*loc, key), lines)
            lines[(*loc, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*loc, i), lines) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    # Let the safe constructor resolve the tag (int, float, bool, null, timestamp, str).
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def _fmt(loc: Loc) -> str:
    return " -> ".join(str(p) for p in loc)


def load_yaml_with_lines(path: str | Path) -> tuple[Any, dict[Loc, int]]:
    """Parse a YAML file and return ``(data, lines)``; ``lines`` maps a location tuple to a line.

    Raises
    ------
    CatalogError
        If the file cannot be read, is not valid YAML, or repeats a key in one mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError([CatalogIssue(str(path), 1, "", f"cannot read file: {exc}")]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise CatalogError(
            [CatalogIssue(str(path), line, "", f"invalid YAML: {exc.problem}")]
        ) from exc
    if node is None:
        raise CatalogError([CatalogIssue(str(path), 1, "", "file is empty")])
    lines: dict[Loc, int] = {}
    try:
        data = _construct(node, (), lines)
    except CatalogError as exc:
        raise CatalogError(
            [CatalogIssue(str(path), e.line, e.path, e.message) for e in exc.errors]
        ) from None
    return data, lines


def line_for(lines: dict[Loc, int], loc: Loc) -> int:
    """Return the line of the deepest known prefix of ``loc`` (1 if nothing is known)."""
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return 1


def issues_from_validation(
    path: str | Path, exc: pydantic.ValidationError, lines: dict[Loc, int], prefix: Loc = ()
) -> list[CatalogIssue]:
    """Turn a pydantic error into file:line issues."""
    out = []
    for err in exc.errors():
        loc = prefix + tuple(p for p in err["loc"] if not isinstance(p, str) or p[:1] != "_")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        out.append(CatalogIssue(str(path), line_for(lines, loc), _fmt(loc), msg))
    return out


def load_model(path: str | Path, model: type[M]) -> M:
    """Load ``path`` and validate it against ``model``; errors carry file and line.

    Raises
    ------
    CatalogError
        On unreadable files, YAML errors, duplicate keys or validation failures.
    """
    data, lines = load_yaml_with_lines(path)
    try:
        return model.model_validate(data, context={"lines": lines, "file": str(path)})
    except pydantic.ValidationError as exc:
        raise CatalogError(issues_from_validation(path, exc, lines)) from None


def load_folder(folder: Path, load: Callable[[Path], T], key: Callable[[T], str]) -> dict[str, T]:
    """Load every ``*.yaml`` in ``folder`` (sorted) and key the results.

    All files are read before failing, so one :class:`CatalogError` lists every problem in
    every file; a key declared by two files is an error on the second.
    """
    out: dict[str, T] = {}
    errors: list[CatalogIssue] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            item = load(path)
        except CatalogError as exc:
            errors.extend(exc.errors)
            continue
        k = key(item)
        if k in out:
            errors.append(CatalogIssue(str(path), 1, "", f"{k!r} is declared by another file too"))
            continue
        out[k] = item
    if errors:
        raise CatalogError(errors)
    return out
